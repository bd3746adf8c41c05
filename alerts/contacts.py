"""Property-manager contacts per estate, street or company, from a YAML file.

    # contacts.yaml: estate id (or street:ID, company:ID) → the people and groups to tell
    sj-fangsong-001:
      - name: 王经理
        email: wang@example.com
        webhook_url: https://pm.example.com/hooks/jiayuan
        phone: "13800000000"
      - name: 芳松物业群
        wecom_key: 693a91f6-7xxx          # WeCom group robot (webhook key)
        phone: "13800000000"              # @-mentioned in the group
    street:sj-fangsong:
      - name: 方松街道值班群
        dingtalk_token: 1a2b3c...         # DingTalk custom robot, signed mode
        dingtalk_secret: SEC0123...
    company:sj-wuye-01:
      - name: 物业公司总部
        feishu_token: 0f1e2d...           # Feishu custom bot (the hook's last segment)
        feishu_secret: abc123...

An alert reaches the contacts of its estate, of its street and of its estate's property
company.  Each contact needs a name and at least one of an e-mail address, a webhook URL
or a group robot (``wecom_key``, ``dingtalk_token``, ``feishu_token``; the secrets are
for the robots' signed mode).  Anything else is refused with the file and the entry named.
The estate registry (issue 5) can
stand in for the file by offering the same ``for_estate`` method (``ContactSource``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml


class ContactsError(ValueError):
    """A contacts file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    email: str = ""
    webhook_url: str = ""
    phone: str = ""
    wecom_key: str = ""
    dingtalk_token: str = ""
    dingtalk_secret: str = ""
    feishu_token: str = ""
    feishu_secret: str = ""

    def robots(self) -> list[tuple[str, str, str]]:
        """The group robots of this contact: (channel, token, secret)."""
        found = [
            ("wecom", self.wecom_key, ""),
            ("dingtalk", self.dingtalk_token, self.dingtalk_secret),
            ("feishu", self.feishu_token, self.feishu_secret),
        ]
        return [robot for robot in found if robot[1]]


class ContactSource(Protocol):
    def for_estate(self, estate: str) -> list[Contact]: ...


_FIELDS = (
    "name",
    "email",
    "webhook_url",
    "phone",
    "wecom_key",
    "dingtalk_token",
    "dingtalk_secret",
    "feishu_token",
    "feishu_secret",
)
STREET_PREFIX = "street:"
COMPANY_PREFIX = "company:"


class ContactBook:
    """Contacts per estate id; an estate nobody listed has none."""

    def __init__(self, contacts: Mapping[str, list[Contact]]) -> None:
        self._contacts = {estate: list(people) for estate, people in contacts.items()}

    def for_estate(self, estate: str) -> list[Contact]:
        return list(self._contacts.get(estate, []))

    @property
    def estates(self) -> list[str]:
        """Every key of the file: estate ids, ``street:…`` and ``company:…``."""
        return sorted(self._contacts)

    def robot_secrets(self) -> dict[str, str]:
        """``"{channel}:{token}"`` → signing secret, for every robot listed."""
        return {
            f"{channel}:{token}": secret
            for people in self._contacts.values()
            for person in people
            for channel, token, secret in person.robots()
            if secret
        }

    @classmethod
    def load(cls, path: str | Path) -> ContactBook:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ContactsError(f"{path}: contacts file not found") from None
        except UnicodeDecodeError as error:
            raise ContactsError(f"{path}: not UTF-8 text: {error.reason}") from None
        except OSError as error:
            raise ContactsError(f"{path}: cannot read: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ContactsError(f"{path}: not valid YAML: {error}") from None
        if data is None:
            return cls({})
        if not isinstance(data, dict):
            raise ContactsError(f"{path}: expected a mapping of estate id → list of contacts")
        book: dict[str, list[Contact]] = {}
        for estate, people in data.items():
            where = f"{path}: estate {estate!r}"
            if not isinstance(estate, str) or not estate:
                raise ContactsError(f"{where}: an estate id must be a non-empty string")
            if not isinstance(people, list):
                raise ContactsError(f"{where}: expected a list of contacts")
            book[estate] = [
                _contact(entry, f"{where} contact #{number}")
                for number, entry in enumerate(people, start=1)
            ]
            _no_duplicates(book[estate], where)
        return cls(book)


def _contact(entry: Any, where: str) -> Contact:
    if not isinstance(entry, dict):
        raise ContactsError(f"{where}: expected a mapping with {', '.join(_FIELDS)}")
    unknown = sorted(str(key) for key in entry if key not in _FIELDS)
    if unknown:
        raise ContactsError(f"{where}: unknown key(s) {unknown}; known: {list(_FIELDS)}")
    for key, value in entry.items():
        if not isinstance(value, str):
            hint = " (quote phone numbers)" if key == "phone" else ""
            raise ContactsError(f"{where}: {key} {value!r} is not a string{hint}")
    if not str(entry.get("name", "")).strip():
        raise ContactsError(f"{where}: name is missing")
    contact = Contact(**{key: value.strip() for key, value in entry.items()})
    where = f"{where} ({contact.name})"
    for secret, token in (("dingtalk_secret", "dingtalk_token"), ("feishu_secret", "feishu_token")):
        if getattr(contact, secret) and not getattr(contact, token):
            raise ContactsError(f"{where}: {secret} without {token}")
    if not contact.email and not contact.webhook_url and not contact.robots():
        raise ContactsError(
            f"{where}: give an email or a webhook_url (or a group robot: wecom_key, "
            "dingtalk_token, feishu_token)"
        )
    for key in ("wecom_key", "dingtalk_token", "feishu_token"):
        value = getattr(contact, key)
        if value and not all(c.isalnum() or c in "-_." for c in value):
            raise ContactsError(
                f"{where}: {key} {value!r} is the credential only (letters, digits, - _ .), "
                "not a URL"
            )
    if contact.email and ("@" not in contact.email or " " in contact.email):
        raise ContactsError(f"{where}: email {contact.email!r} is not an address")
    if contact.webhook_url:
        parts = urlsplit(contact.webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ContactsError(f"{where}: webhook_url {contact.webhook_url!r} is not http(s)")
    return contact


def _no_duplicates(people: list[Contact], where: str) -> None:
    # Notification keys are per address: two entries with one address would be one message.
    seen: set[str] = set()
    for contact in people:
        robots = [f"{channel}:{token}" for channel, token, _ in contact.robots()]
        for address in (contact.email.lower(), contact.webhook_url, *robots):
            if address and address in seen:
                raise ContactsError(f"{where}: {address} is listed twice")
            if address:
                seen.add(address)
