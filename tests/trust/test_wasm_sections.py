"""Tests for wasmplug._trust.wasm_sections: the strict section reader/writer."""

from __future__ import annotations

import itertools

import pytest
import wasmtime
import wasmtime.component
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmplug._errors import InvalidComponentError
from wasmplug._trust.wasm_sections import (
    COMPONENT_HEADER,
    MODULE_HEADER,
    ByteReader,
    Section,
    build,
    custom_sections,
    decode_u32_leb,
    encode_u32_leb,
    get_custom_section,
    is_component,
    iter_section_spans,
    iter_sections,
    parse,
    parse_header,
    with_custom_section,
    without_custom_section,
)

MODULE = bytes(
    wasmtime.wat2wasm(
        '(module (memory 1) (func (export "f") (result i32) i32.const 7) (data (i32.const 0) "hi"))'
    )
)
COMPONENT = bytes(
    wasmtime.wat2wasm(
        '(component (core module $m (func (export "f"))) (core instance (instantiate $m)))'
    )
)


# -- LEB128 ------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_leb_roundtrip_is_minimal(value: int) -> None:
    encoded = encode_u32_leb(value)
    assert decode_u32_leb(encoded + b"\xaa", 0) == (value, len(encoded))
    assert len(encoded) == max(1, -(-value.bit_length() // 7))


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x00", 0),
        (b"\x7f", 127),
        (b"\x80\x01", 128),
        (b"\x80\x00", 0),  # non-minimal (padded) encodings are valid wasm
        (b"\x85\x80\x80\x80\x00", 5),
        (b"\xff\xff\xff\xff\x0f", 2**32 - 1),
    ],
)
def test_leb_decode_accepts(data: bytes, value: int) -> None:
    assert decode_u32_leb(data, 0) == (value, len(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        b"\xff\xff\xff\xff",
        b"\xff\xff\xff\xff\x1f",  # bit 32 set
        b"\x80\x80\x80\x80\x80\x00",  # six bytes
        b"\x80\x80\x80\x80\x40",  # unused high bit of the fifth byte
    ],
)
def test_leb_decode_rejects(data: bytes) -> None:
    with pytest.raises(InvalidComponentError):
        decode_u32_leb(data, 0)


@pytest.mark.parametrize("value", [-1, 2**32])
def test_leb_encode_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="32-bit"):
        encode_u32_leb(value)


def test_byte_reader() -> None:
    r = ByteReader(b"\x02ab\x01")
    assert r.slice("name") == b"ab"
    with pytest.raises(InvalidComponentError, match="trailing"):
        r.done("thing")
    assert r.take(1, "x") == b"\x01"
    r.done("thing")
    with pytest.raises(InvalidComponentError, match="truncated"):
        r.take(1, "x")


# -- headers and sections ----------------------------------------------------------------


def test_headers() -> None:
    assert parse_header(MODULE) == MODULE_HEADER
    assert parse_header(COMPONENT) == COMPONENT_HEADER
    assert is_component(COMPONENT)
    assert not is_component(MODULE)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "shorter"),
        (b"\x00asm\x01\x00\x00", "shorter"),
        (b"\x7fELF\x01\x00\x00\x00", "magic"),
        (b"\x00asm\x02\x00\x00\x00", "version"),
        (b"\x00asm\x0d\x00\x02\x00", "version"),
    ],
)
def test_bad_headers(data: bytes, match: str) -> None:
    with pytest.raises(InvalidComponentError, match=match):
        parse(data)


@pytest.mark.parametrize("binary", [MODULE, COMPONENT], ids=["module", "component"])
def test_parse_build_roundtrip(binary: bytes) -> None:
    header, sections = parse(binary)
    assert sections
    assert build(header, sections) == binary
    spans = list(iter_section_spans(binary))
    assert spans[0][1] == 8
    assert spans[-1][2] == len(binary)
    assert all(a[2] == b[1] for a, b in itertools.pairwise(spans))


def test_non_minimal_sizes_are_normalized() -> None:
    # custom section "a" with data "xy", its size padded to 5 bytes, name length padded to 2
    padded = MODULE_HEADER + b"\x00\x85\x80\x80\x80\x00" + b"\x81\x00a" + b"xy"
    assert custom_sections(padded) == [("a", b"xy")]
    assert build(*parse(padded)) == MODULE_HEADER + b"\x00\x04\x01axy"


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        (b"\x01\x05abc", "remain"),  # section runs past the end
        (b"\x01", "truncated"),  # size missing
        (b"\x00\x02\x05a", "name runs past"),  # custom name longer than the section
        (b"\x00\x03\x02\xff\xfe", "UTF-8"),
        (b"\x00\x00", "truncated"),  # custom section without a name
        (b"\x80\x00", "section id"),
    ],
)
def test_malformed_sections(tail: bytes, match: str) -> None:
    with pytest.raises(InvalidComponentError, match=match):
        parse(MODULE_HEADER + tail)


def test_section_id_range() -> None:
    with pytest.raises(ValueError, match=r"127|0x7f"):
        Section(0x80, b"")


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_truncation_never_crashes(data: st.DataObject) -> None:
    binary = data.draw(st.sampled_from([MODULE, COMPONENT]))
    cut = data.draw(st.integers(min_value=0, max_value=len(binary) - 1))
    boundaries = {8} | {end for _, _, end in iter_section_spans(binary)}
    if cut in boundaries:
        assert build(*parse(binary[:cut])) == binary[:cut]
    else:
        with pytest.raises(InvalidComponentError):
            parse(binary[:cut])


@given(st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_random_sections_parse_or_raise_invalid(tail: bytes) -> None:
    try:
        header, sections = parse(MODULE_HEADER + tail)
    except InvalidComponentError:
        return
    # whatever parsed re-parses to the same sections after normalization
    assert parse(build(header, sections))[1] == sections


# -- custom sections ---------------------------------------------------------------------


def test_custom_section_helpers() -> None:
    assert get_custom_section(MODULE, "wasmplug-manifest") is None
    with_manifest = with_custom_section(MODULE, "wasmplug-manifest", b"name = 'x'")
    assert get_custom_section(with_manifest, "wasmplug-manifest") == b"name = 'x'"
    assert custom_sections(with_manifest)[-1] == ("wasmplug-manifest", b"name = 'x'")
    assert with_manifest.startswith(MODULE)  # appended at the end

    replaced = with_custom_section(with_manifest, "wasmplug-manifest", b"v2")
    assert [n for n, _ in custom_sections(replaced)].count("wasmplug-manifest") == 1
    assert get_custom_section(replaced, "wasmplug-manifest") == b"v2"
    assert len(replaced) == len(with_manifest) - len(b"name = 'x'") + 2

    first = with_custom_section(replaced, "wasmplug-manifest", b"v3", first=True)
    assert next(iter_sections(first)) == Section.custom("wasmplug-manifest", b"v3")
    assert [n for n, _ in custom_sections(first)].count("wasmplug-manifest") == 1
    assert without_custom_section(first, "wasmplug-manifest") == MODULE


def test_duplicates_collapse_in_place() -> None:
    dup = build(
        MODULE_HEADER,
        [Section.custom("m", b"1"), Section(1, b"\x00"), Section.custom("m", b"2")],
    )
    assert get_custom_section(dup, "m") == b"1"
    out = with_custom_section(dup, "m", b"3")
    assert parse(out)[1] == [Section.custom("m", b"3"), Section(1, b"\x00")]


def test_component_with_custom_sections_still_compiles() -> None:
    edited = with_custom_section(COMPONENT, "wasmplug-manifest", b"x", first=True)
    edited = with_custom_section(edited, "other", b"\x00" * 300)
    wasmtime.component.Component(wasmtime.Engine(), edited)
    wasmtime.Module(wasmtime.Engine(), with_custom_section(MODULE, "a", b"b", first=True))
