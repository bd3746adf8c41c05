"""The alert page in a real browser: Debian's headless chromium driven by Selenium through
Debian's chromium-driver (scripts/bootstrap.sh installs both; nothing is downloaded).

The running gateway (real Mosquitto and InfluxDB) raises an alert; the WeCom stand-in
receives the robot's message; the browser opens the link in it at phone size,
acknowledges, marks the alert handled with a note; the history in SQLite (the API) and
in InfluxDB names who did what.  Tampered and expired links get the refusal page.
Screenshots at phone and desktop size go to $JIAYUAN_SCREENSHOTS (default: the test's
temporary directory).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml

from alerts.links import LinkSigner
from gateway.service import Gateway
from jiayuan.api_auth import token_hash
from jiayuan.config import Config
from simulators.robot_platforms import RobotPlatforms
from tests.gateway.test_gateway import now_ms, query, wait_for
from tests.support.lift_readings import lift_reading
from tests.support.mqtt_publisher import PLACE, Publisher

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed "
    "(scripts/bootstrap.sh installs them as root: apt-get install chromium chromium-driver)",
)

WECOM_KEY = "browser-test-key"
LINK_SECRET = "browser-link-secret"
PHONE = (390, 844)
DESKTOP = (1280, 900)

if CHROMIUM is not None and DRIVER is not None:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait


def browser(size: tuple[int, int], mobile: bool) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    # Headless windows have a minimum width; the device metrics make it a phone.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile},
    )
    return driver


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("JIAYUAN_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def standin() -> Iterator[RobotPlatforms]:
    with RobotPlatforms() as server:
        server.add("wecom", WECOM_KEY)
        yield server


@pytest.fixture
def page_config(config: Config, standin: RobotPlatforms, tmp_path: Path) -> Config:
    contacts = tmp_path / "contacts.yaml"
    # The readings' estate (tests/mqtt_publisher.py): its property managers' WeCom group.
    contacts.write_text(
        f"{PLACE[2]}:\n"
        f"  - name: 芳松物业群\n    wecom_key: {WECOM_KEY}\n    phone: '13800000000'\n",
        encoding="utf-8",
    )
    # Unacknowledged for 3 s, a trapped passenger escalates to the street: the board shows it.
    policy = tmp_path / "policy.yaml"
    policy.write_text("codes:\n  lift.trapped: {ack_deadline_s: 3}\n", encoding="utf-8")
    return replace(
        config,
        alerts=replace(
            config.alerts,
            policy_file=str(policy),
            contacts_file=str(contacts),
            wecom_url=standin.urls()["wecom"],
            page_url=f"http://127.0.0.1:{config.gateway.api_port}",
            link_secret=LINK_SECRET,
            link_ttl_s=3600,
            retry_initial_s=0.1,
        ),
    )


def full_shot(driver: WebDriver, path: Path, size: tuple[int, int], mobile: bool) -> None:
    """The whole page, top to bottom (what a person scrolls through), then back."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": size[0], "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": size[1]})


def click(driver: WebDriver, text: str) -> None:
    """Click the button labelled ``text``, again if the page redrew it meanwhile."""
    for _ in range(5):
        try:
            (button,) = [b for b in driver.find_elements(By.TAG_NAME, "button") if text in b.text]
            button.click()
            return
        except WebDriverException:
            time.sleep(0.2)
    raise AssertionError(f"could not click {text!r}")


def shown(driver: WebDriver, text: str, timeout_s: float = 10) -> None:
    """Wait for ``text`` on the page (a page being replaced reads as not yet)."""

    def present(d: WebDriver) -> bool:
        try:
            return text in d.find_element(By.TAG_NAME, "body").text
        except WebDriverException:
            return False

    WebDriverWait(driver, timeout_s).until(present)


def test_phone_page_from_the_robots_link_acknowledge_and_handle(
    page_config: Config, standin: RobotPlatforms, publisher: Publisher, shots: Path
) -> None:
    start = now_ms() - 120_000
    trapped = [lift_reading(seq, start + seq * 5000, passenger_status=1) for seq in range(1, 7)]
    gateway = Gateway(page_config)
    gateway.start()
    assert gateway.wait_ready(10)
    phone = browser(PHONE, mobile=True)
    try:
        publisher.readings(trapped)
        wait_for(lambda: bool(standin.texts("wecom")), timeout_s=20)
        message = standin.texts("wecom")[0]
        link = re.search(r"http://127\.0\.0\.1:\d+/m/alerts/(al-[0-9a-f]+)\?t=\S+", message)
        assert link is not None, message
        alert_id = link.group(1)

        # The operations board, a second browser session, follows the alert live.
        board = browser(DESKTOP, mobile=False)
        board.get(f"{gateway.api_url}/board")
        card = f'[data-alert="{alert_id}"]'
        WebDriverWait(board, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, card))
        shown(board, "实时 live")
        board.execute_script("window.notReloaded = true")
        shown(board, "已升级至街道")  # over the stream, 3 s unacknowledged
        board.save_screenshot(str(shots / "board-desktop.png"))
        phone.get(f"{gateway.api_url}/board")
        shown(phone, "已升级至街道")
        phone.save_screenshot(str(shots / "board-phone.png"))

        phone.get(link.group(0))
        shown(phone, "困人")
        body = phone.find_element(By.TAG_NAME, "body").text
        for words in ("紧急", "小区", "楼栋", "设备", "开始", "确认期限", "处置建议", "确认收到"):
            assert words in body
        phone.save_screenshot(str(shots / "alert-page-phone.png"))
        full_shot(phone, shots / "alert-page-phone-full.png", PHONE, mobile=True)

        phone.find_element(By.ID, "name").send_keys("王师傅")
        click(phone, "确认收到")
        shown(phone, "已确认收到")
        phone.save_screenshot(str(shots / "alert-page-phone-acknowledged.png"))

        def state_of(driver: WebDriver) -> str:
            # One read in the page: the board redraws its cards on every event.
            script = "var c = document.querySelector(arguments[0]);"
            script += " return c ? c.dataset.state : 'gone';"
            return str(driver.execute_script(script, card))

        WebDriverWait(board, 10).until(lambda d: state_of(d) == "acknowledged")
        # The board dispatches (its role allows it): a prompt asks for the work order id.
        click(board, "派单")
        WebDriverWait(board, 5).until(lambda d: d.switch_to.alert)
        board.switch_to.alert.send_keys("WO-2026-0001")
        board.switch_to.alert.accept()
        WebDriverWait(board, 10).until(lambda d: state_of(d) == "dispatched")
        board.save_screenshot(str(shots / "board-desktop-dispatched.png"))

        # Marked handled without a note: the page asks for one and sends nothing.
        click(phone, "已处理")
        shown(phone, "请先填写备注")
        assert phone.switch_to.active_element.get_attribute("id") == "note"
        phone.save_screenshot(str(shots / "alert-page-phone-note-needed.png"))
        phone.find_element(By.ID, "name").send_keys("王师傅")
        phone.find_element(By.ID, "note").send_keys("已放出被困人员，电梯停用待修")
        click(phone, "已处理")
        shown(phone, "已标记为处理完毕")
        WebDriverWait(board, 10).until(lambda d: state_of(d) == "gone")
        assert board.execute_script("return window.notReloaded") is True
        board.quit()
        full_shot(phone, shots / "alert-page-phone-handled.png", PHONE, mobile=True)

        detail = httpx.get(f"{gateway.api_url}/alerts/{alert_id}", timeout=5).json()
        assert detail["alert"]["state"] == "resolved"
        steps = [(h["action"], h["actor"], h["note"]) for h in detail["history"]]
        assert [a for a, _, _ in steps].count("resolved") == 1
        assert ("acknowledged", "王师傅 [链接 link: 芳松物业群]", "") in steps
        assert steps[-2][:2] == ("dispatched", "值班员 duty officer")
        assert (
            "resolved",
            "王师傅 [链接 link: 芳松物业群]",
            "已放出被困人员，电梯停用待修",
        ) in steps

        desktop = browser(DESKTOP, mobile=False)
        try:
            desktop.get(link.group(0))
            shown(desktop, "经过")
            desktop.save_screenshot(str(shots / "alert-page-desktop.png"))
            tampered = link.group(0)[:-4] + "AAAA"
            desktop.get(tampered)
            shown(desktop, "无法打开告警页面")
            assert "改动" in desktop.find_element(By.TAG_NAME, "body").text
            desktop.save_screenshot(str(shots / "refusal-desktop.png"))
        finally:
            desktop.quit()

        signer = LinkSigner(LINK_SECRET, page_config.alerts.page_url, 1)
        expired = signer.link(alert_id, "芳松物业群", time.time() - 10)
        phone.get(expired)
        shown(phone, "链接已过期")
        phone.save_screenshot(str(shots / "refusal-expired-phone.png"))
        gateway.wait_idle()
    finally:
        phone.quit()
        gateway.stop()

    rows = query(page_config, f"SELECT * FROM alert WHERE alert_id = '{alert_id}'")
    by_action = {row["action"]: row for row in rows}
    assert by_action["acknowledged"]["actor"] == "王师傅 [链接 link: 芳松物业群]"
    assert by_action["resolved"]["actor"] == "王师傅 [链接 link: 芳松物业群]"
    assert by_action["acknowledged"]["time"] < by_action["resolved"]["time"]


def test_board_with_tokens_shows_each_role_its_buttons(
    page_config: Config, publisher: Publisher, tmp_path: Path, shots: Path
) -> None:
    """With the API's tokens on, the board asks for a token: a viewer's board has no
    buttons and follows what an operations centre's board does."""
    tokens = tmp_path / "api-tokens.yaml"
    entries = [
        {
            "name": "大屏 wall screen",
            "sha256": token_hash("viewer-token"),
            "role": "viewer",
            "streets": ["*"],
        },
        {
            "name": "方松运营中心",
            "sha256": token_hash("ops-token"),
            "role": "ops_centre",
            "streets": [PLACE[1]],
        },
    ]
    tokens.write_text(yaml.safe_dump({"tokens": entries}, allow_unicode=True), encoding="utf-8")
    tokens.chmod(0o600)
    config = replace(page_config, api=replace(page_config.api, auth="on", tokens_file=str(tokens)))
    start = now_ms() - 120_000
    trapped = [lift_reading(seq, start + seq * 5000, passenger_status=1) for seq in range(1, 7)]
    gateway = Gateway(config)
    gateway.start()
    assert gateway.wait_ready(10)
    wall, desk = browser(DESKTOP, mobile=False), browser(PHONE, mobile=True)
    try:
        publisher.readings(trapped)
        for driver, token, name in ((wall, "viewer-token", ""), (desk, "ops-token", "李值班")):
            driver.get(f"{gateway.api_url}/board")
            shown(driver, "访问令牌")  # the sign-in form: the page itself holds no data
            if driver is wall:  # a mistyped token is refused in words
                driver.find_element(By.ID, "token").send_keys("no-such-token")
                click(driver, "进入")
                shown(driver, "令牌无效")
                driver.find_element(By.ID, "token").clear()
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "actor").send_keys(name)
            click(driver, "进入")
            WebDriverWait(driver, 15).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".card[data-state='open']")
            )
        desk.save_screenshot(str(shots / "board-phone-signed-in.png"))
        assert wall.find_elements(By.CSS_SELECTOR, ".card button[data-do]") == []
        assert "viewer" in wall.find_element(By.ID, "who").text
        click(desk, "确认")
        WebDriverWait(wall, 10).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".card[data-state='acknowledged']")
        )
        wall.save_screenshot(str(shots / "board-desktop-viewer.png"))
        headers = {"Authorization": "Bearer ops-token"}
        (alert,) = httpx.get(f"{gateway.api_url}/alerts", headers=headers, timeout=5).json()
        detail = httpx.get(f"{gateway.api_url}/alerts/{alert['id']}", headers=headers).json()
        acks = [h for h in detail["history"] if h["action"] == "acknowledged"]
        assert [h["actor"] for h in acks] == ["李值班 [方松运营中心]"]
    finally:
        wall.quit()
        desk.quit()
        gateway.stop()
