"""Device profiles: loading, the errors an installer sees, and decoding every type and order."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.decode import DecodeProblem, decode_value, numeric_raw, registers_to_raw
from edge.fastdecode import ProfileDecoder
from edge.profile import (
    ORDER_NAMES,
    SHIPPED_PROFILES,
    TYPE_REGISTERS,
    ProfileError,
    RegisterValue,
    load_profile,
    load_profiles,
    parse_profile,
)
from edge.readplan import Block, decode_reading, plan_reads
from jiayuan.catalogue import Kind

PROFILES = SHIPPED_PROFILES

HEAD = """\
[profile]
name = "t"
family = "water_tank"
source = "example"

[modbus]
poll_s = 5
"""


def test_every_shipped_profile_loads_and_names_its_source() -> None:
    profiles = load_profiles(PROFILES)
    assert len(profiles) >= 6
    families = {p.kind for p in profiles.values()}
    assert families == set(Kind)
    for profile in profiles.values():
        assert profile.source.startswith("example") or "manual" in profile.source
        assert plan_reads(profile)


# ---- errors name file, line and field ----------------------------------------------------


def _error(text: str, tmp_path: Path) -> str:
    path = tmp_path / "device.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    return str(caught.value)


def test_unknown_signal_names_file_line_field_and_the_known_signals(tmp_path: Path) -> None:
    text = HEAD + '\n[[value]]\nsignal = "ph"\naddress = 0\ntype = "int16"\n\n'
    text += '[[value]]\nsignal = "chlorine"\naddress = 1\ntype = "int16"\n'
    message = _error(text, tmp_path)
    line = text.splitlines().index('signal = "chlorine"') + 1
    assert message.startswith(f"{tmp_path / 'device.toml'}:{line}: value[1].signal: ")
    assert "'chlorine' is not a signal of water_tank" in message
    assert "free_chlorine" in message


def test_unknown_event_code_is_refused(tmp_path: Path) -> None:
    text = HEAD + '\n[[status]]\naddress = 3\nbits = [{ bit = 0, event = "water_tank.fire" }]\n'
    message = _error(text, tmp_path)
    assert ":11: status[0].bits[0].event: 'water_tank.fire' is not an event code" in message
    assert "water_tank.lid_open" in message


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ('signal = "ph"\naddress = 0\ntype = "float"', "value[0].type", "must be one of bits"),
        ('signal = "ph"\naddress = 0\ntype = "int16"\norder = "ACBD"', "value[0].order", "ABCD"),
        ('signal = "ph"\naddress = 70000\ntype = "int16"', "value[0].address", "0 to 65535"),
        ('signal = "ph"\ntype = "int16"', "value[0].address", "missing"),
        ('signal = "ph"\naddress = 0\ntype = "string"\ncount = 2', "value[0].type", "is float"),
        ('signal = "ph"\naddress = 0\ntype = "bits"', "value[0].bit", "needs bit"),
        ('signal = "ph"\naddress = 0\ntype = "int16"\nscal = 2', "value[0].scal", "unknown field"),
        ('signal = "ph"\naddress = 0\ntype = "int16"\nscale = 0', "value[0].scale", "not be 0"),
        (
            'signal = "ph"\naddress = 0\ntype = "int16"\nmap_from = [4, 20]',
            "value[0].map_to",
            "give both",
        ),
        (
            'signal = "ph"\nfunction = 1\naddress = 0\ntype = "int16"',
            "value[0].type",
            "must be 'bits'",
        ),
    ],
)
def test_a_bad_value_field_is_named(tmp_path: Path, value: str, field: str, words: str) -> None:
    message = _error(HEAD + "\n[[value]]\n" + value + "\n", tmp_path)
    assert f": {field}: " in message
    assert words in message


def test_per_port_signal_needs_its_port(tmp_path: Path) -> None:
    text = HEAD.replace("water_tank", "ebike_charger")
    message = _error(text + '\n[[value]]\nsignal = "temp"\naddress = 0\ntype = "int16"\n', tmp_path)
    assert "value[0].port: 'temp' is per port: give port = N or ports = N" in message


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    message = _error(HEAD + "\n[[value]\n", tmp_path)
    assert "device.toml: not valid TOML" in message
    assert "line 9" in message


def test_missing_source_and_unknown_family(tmp_path: Path) -> None:
    assert "profile.source: missing" in _error(HEAD.replace('source = "example"\n', ""), tmp_path)
    message = _error(HEAD.replace("water_tank", "boiler"), tmp_path)
    assert "profile.family: unknown kind 'boiler'" in message


def test_a_signal_read_twice_is_refused(tmp_path: Path) -> None:
    text = HEAD + '\n[[value]]\nsignal = "ph"\naddress = 0\ntype = "int16"\n'
    text += '\n[[value]]\nsignal = "ph"\naddress = 1\ntype = "int16"\n'
    assert "signal 'ph' is read twice" in _error(text, tmp_path)


def test_directory_check_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(HEAD.replace('"t"', '"a"') + "\n[[value]]\n", "utf-8")
    (tmp_path / "b.toml").write_text("[profile\n", "utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    assert "a.toml" in str(caught.value)
    assert "b.toml" in str(caught.value)


# ---- decoding: every type in every order -------------------------------------------------

_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def wire_words(value: float, value_type: str, order: str) -> list[int]:
    """How a device lays ``value`` out in registers, written from the orders' definitions:
    big-endian bytes A B C D …; word order "little" puts the last register first; byte
    order "little" swaps the two bytes inside each register."""
    data = struct.pack(">" + _STRUCT[value_type], value)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    byte_order, word_order = ORDER_NAMES[order]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def _numbers(value_type: str) -> st.SearchStrategy[float]:
    if value_type == "float32":
        return st.floats(width=32, allow_nan=False)
    if value_type == "float64":
        return st.floats(allow_nan=False)
    bits = 16 * TYPE_REGISTERS[value_type]
    if value_type.startswith("u"):
        return st.integers(0, 2**bits - 1)
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[str, str, float]:
    value_type = draw(st.sampled_from(sorted(_STRUCT)))
    return value_type, draw(st.sampled_from(sorted(ORDER_NAMES))), draw(_numbers(value_type))


@given(typed_values())
def test_every_type_in_every_order_round_trips(case: tuple[str, str, float]) -> None:
    value_type, order, value = case
    byte_order, word_order = ORDER_NAMES[order]
    words = wire_words(value, value_type, order)
    assert len(words) == TYPE_REGISTERS[value_type]
    raw = registers_to_raw(words, value_type, byte_order, word_order)
    assert raw == value
    assert type(raw) is (float if value_type.startswith("float") else int)


def test_float32_layouts_of_a_manual() -> None:
    # 1.0 = 0x3F800000: ABCD 3F80 0000, CDAB 0000 3F80, BADC 803F 0000, DCBA 0000 803F.
    assert wire_words(1.0, "float32", "ABCD") == [0x3F80, 0x0000]
    assert wire_words(1.0, "float32", "CDAB") == [0x0000, 0x3F80]
    assert wire_words(1.0, "float32", "BADC") == [0x803F, 0x0000]
    assert wire_words(1.0, "float32", "DCBA") == [0x0000, 0x803F]


@given(st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=12), st.booleans())
def test_strings_round_trip_in_both_byte_orders(text: str, swapped: bool) -> None:
    data = text.encode("ascii")
    data += b"\x00" * (len(data) % 2)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if swapped:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    assert registers_to_raw(words, "string", "little" if swapped else "big") == text


def _spec(**changes: object) -> RegisterValue:
    base: dict[str, object] = {
        "field": "ph",
        "function": 3,
        "address": 0,
        "type": "int16",
        "count": 1,
    }
    base.update(changes)
    return RegisterValue(**base)  # type: ignore[arg-type]


def test_decimals_scale_offset_and_sentinels() -> None:
    assert decode_value(_spec(decimals=2), [712]).value == pytest.approx(7.12)
    assert decode_value(_spec(), [712], decimals=1).value == pytest.approx(71.2)
    assert decode_value(_spec(scale=0.5, offset=1.0), [10]).value == pytest.approx(6.0)
    with pytest.raises(DecodeProblem) as caught:
        decode_value(_spec(no_value=(32767.0,)), [32767])
    assert caught.value.reason == "no_value"
    with pytest.raises(DecodeProblem) as caught:
        decode_value(_spec(), [1], decimals=12)
    assert caught.value.reason == "bad_decimals"
    nan = wire_words(math.nan, "float32", "ABCD")
    with pytest.raises(DecodeProblem) as caught:
        decode_value(_spec(type="float32", count=2), nan)
    assert caught.value.reason == "no_value"


def test_four_to_twenty_milliamps_maps_onto_full_scale_and_catches_a_wire_break() -> None:
    spec = _spec(
        field="sprinkler_pressure",
        type="uint16",
        scale=0.001,
        valid=(3.6, 21.0),
        map_from=(4.0, 20.0),
        map_to=(0.0, 1.6),
    )
    assert decode_value(spec, [4000]).value == pytest.approx(0.0)
    assert decode_value(spec, [12000]).value == pytest.approx(0.8)
    assert decode_value(spec, [20000]).value == pytest.approx(1.6)
    with pytest.raises(DecodeProblem) as caught:
        decode_value(spec, [0])  # 0 mA: the loop is open
    assert caught.value.reason == "sensor_fault"


def test_a_reading_leaves_out_implausible_values_and_keeps_the_rest() -> None:
    profile = load_profiles(PROFILES)["water-quality-transmitter"]
    table: dict[tuple[int, int], int] = {}
    for address, value in ((0, 0.42), (2, 0.3), (4, 17.5)):  # pH 17.5 is impossible
        for offset, word in enumerate(wire_words(value, "float32", "CDAB")):
            table[(3, address + offset)] = word
    reading = decode_reading(profile, table)
    assert reading.values == {
        "free_chlorine": pytest.approx(0.42),
        "turbidity": pytest.approx(0.3),
    }
    assert [p.reason for p in reading.problems] == ["out_of_range"]
    assert "ph=17.5 outside the plausible range 0..14 pH" in str(reading.problems[0])


def test_status_bits_fill_signals_and_raise_events() -> None:
    profile = load_profiles(PROFILES)["lift-monitor-status-block"]
    table = {(3, a): 0 for a in range(12)}
    table.update({(3, 2): 1, (3, 5): 2, (3, 6): 1, (3, 7): 1, (3, 10): 100})
    table[(3, 11)] = 0b101  # top limit hit, mains lost
    reading = decode_reading(profile, table)
    assert reading.values["up_limit"] == 1
    assert reading.values["down_limit"] == 0
    assert reading.values["rated_speed"] == pytest.approx(1.0)
    assert reading.active_events == {"lift.overtravel_top", "lift.power_loss"}


def test_contiguous_registers_are_read_in_one_request() -> None:
    pile = load_profiles(PROFILES)["ebike-pile-10-ports"]
    # 4 registers of the pile, then 10 ports × 4 registers: two requests, not 43.
    assert plan_reads(pile) == (Block(3, 0, 4), Block(3, 10, 40))
    level = load_profiles(PROFILES)["level-gauge-decimals-register"]
    assert plan_reads(level) == (Block(3, 3, 2),)


def test_reads_are_split_at_the_profiles_limit() -> None:
    text = HEAD.replace("poll_s = 5", "poll_s = 5\nmax_read_registers = 3")
    for address, signal in enumerate(("ph", "turbidity", "free_chlorine", "level_pct")):
        text += f'\n[[value]]\nsignal = "{signal}"\naddress = {address}\ntype = "uint16"\n'
    assert plan_reads(parse_profile(text)) == (Block(3, 0, 3), Block(3, 3, 1))


def test_docs_devices_tables_are_current() -> None:
    from edge import devices_doc

    path = Path(__file__).resolve().parents[2] / "docs" / "devices.md"
    document = path.read_text(encoding="utf-8")
    assert devices_doc.replace_section(document, devices_doc.render()) == document, (
        "docs/devices.md is stale: run python -m edge.devices_doc --write docs/devices.md"
    )


@given(typed_values())
def test_the_poll_paths_decoder_equals_pymodbus_convert_from_registers(
    case: tuple[str, str, float],
) -> None:
    value_type, order, value = case
    byte_order, word_order = ORDER_NAMES[order]
    words = wire_words(value, value_type, order)
    assert numeric_raw(words, value_type, byte_order, word_order) == registers_to_raw(
        words, value_type, byte_order, word_order
    )


_SHIPPED = load_profiles(PROFILES)


@given(st.sampled_from(sorted(_SHIPPED)), st.data())
def test_the_poll_paths_profile_decoder_equals_the_reference(
    name: str, data: st.DataObject
) -> None:
    profile = _SHIPPED[name]
    blocks = plan_reads(profile)
    block_words = [
        data.draw(
            st.lists(
                st.integers(0, 1) if block.function in (1, 2) else st.integers(0, 0xFFFF),
                min_size=block.count,
                max_size=block.count,
            )
        )
        for block in blocks
    ]
    table = {
        (block.function, block.address + offset): word
        for block, words in zip(blocks, block_words, strict=True)
        for offset, word in enumerate(words)
    }
    reference = decode_reading(profile, table)
    fast = ProfileDecoder(profile, blocks).decode(block_words)
    assert fast.values == reference.values
    assert fast.active_events == reference.active_events
    assert [str(p) for p in fast.problems] == [str(p) for p in reference.problems]
