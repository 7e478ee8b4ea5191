"""Property-based fuzzing of the parsers that read outside input (issue 9 §8).

Every parser of a plugin file must turn every failure (``RecursionError``
included) into its typed :class:`~wasmplug.WasmplugError`: the manifest parser
(:class:`ManifestError`), the Wasm section reader (:class:`InvalidComponentError`),
the component import/export reader, the wasmsign2 signature-section parser
(:class:`SignatureError`) and the key
readers (:class:`KeyFormatError`). Each is fuzzed over raw bytes, over structure
(documents and sections generated field by field), and over mutations of a small
seed corpus of real files built here: a component with an embedded manifest,
signed twice, plus its detached signature and key files.

The runs are derandomized and bounded (``max_examples``), so the suite stays
deterministic and takes a few seconds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wat
from wasmplug import (
    InvalidComponentError,
    KeyFormatError,
    Manifest,
    ManifestError,
    SignatureError,
    WasmplugError,
)
from wasmplug._sandbox.manifest import MANIFEST_SECTION, _Validator
from wasmplug._trust import signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.component_info import read_component_info

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MANIFEST = """\
[plugin]
name = "acme:greeter"
version = "1.2.3"
description = "Says hello"

[capabilities]
host-interfaces = ["demo:plugin/host@0.1.0"]
env = ["GREETING"]
allowed-outbound-hosts = ["https://api.example.com"]
stdio = "log"

[[capabilities.filesystem]]
guest-path = "/data"
mode = "ro"

[limits]
memory-bytes = 67108864
timeout-ms = 100
"""


@functools.cache
def corpus() -> dict[str, bytes]:
    """Real files: a component with an embedded manifest, signed by two keys."""
    component = bytes(
        wasmtime.wat2wasm(
            wat.component([wat.Func("echo", (("x", wat.P("string")),), wat.P("string"))])
        )
    )
    packed = ws.with_custom_section(component, MANIFEST_SECTION, MANIFEST.encode())
    first, second = signing.generate_keypair(), signing.generate_keypair()
    signed = signing.sign(packed, first, key_id=first.key_id)
    signed = signing.sign(signed, second)
    stripped, detached = signing.detach_signature(signed)
    return {
        "component": component,
        "packed": packed,
        "signed": signed,
        "stripped": stripped,
        "detached": detached,
        "public-key": first.public_key.to_wasmsign2_bytes(),
        "secret-key": first.secret_key.to_wasmsign2_bytes(),
    }


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply ``(kind, position, byte)`` edits: 0 replace, 1 insert, 2 delete, 3 truncate."""
    out = bytearray(data)
    for kind, pos, byte in edits:
        if not out:
            out.append(byte)
            continue
        pos %= len(out)
        if kind == 0:
            out[pos] = byte
        elif kind == 1:
            out.insert(pos, byte)
        elif kind == 2:
            del out[pos]
        else:
            del out[pos:]
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2**31), st.integers(0, 255)), max_size=8
)


def mutants(*names: str) -> st.SearchStrategy[bytes]:
    """A seed file from the corpus with a few random edits."""
    return st.builds(
        lambda name, edits: _mutate(corpus()[name], edits), st.sampled_from(names), EDITS
    )


def only(
    expected: type[WasmplugError] | tuple[type[WasmplugError], ...], fn: Callable[[], Any]
) -> Any:
    """Run ``fn``; it may succeed or raise ``expected``, nothing else."""
    try:
        return fn()
    except expected:
        return None


# -- the manifest parser -------------------------------------------------------------

SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "guest-path", "mode"]), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.sampled_from(
    ["name", "version", "description", "world", "host-interfaces", "env", "filesystem",
     "allowed-outbound-hosts", "stdio", "guest-path", "mode", "memory-bytes", "timeout-ms",
     "fuel", "table-elements", "unknown"]
)  # fmt: skip
TABLES = st.dictionaries(
    st.sampled_from(["plugin", "capabilities", "limits", "other"]),
    st.dictionaries(KEYS, VALUES, max_size=5) | SCALARS,
    max_size=4,
)


def _toml_value(v: Any) -> str:
    """A minimal TOML writer for generated documents (inline arrays and tables)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(v), repr(v))
    if isinstance(v, str):
        return (
            '"'
            + "".join(c if c.isalnum() or c in " -_.:/@*" else f"\\u{ord(c):04x}" for c in v)
            + '"'
        )
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict[str, Any]) -> str:
    lines = []
    for table, body in doc.items():
        if isinstance(body, dict):
            lines.append(f"[{table}]")
            lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{table} = {_toml_value(body)}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(st.text(max_size=400))
def test_manifest_text(text: str) -> None:
    only(ManifestError, lambda: Manifest.from_toml(text))


@FUZZ
@given(st.binary(max_size=400) | mutants("packed").map(lambda b: b[-len(MANIFEST) - 50 :]))
def test_manifest_bytes(data: bytes) -> None:
    only(ManifestError, lambda: Manifest.from_toml(data.decode("utf-8", "replace")))


@FUZZ
@given(TABLES)
def test_manifest_structure(doc: dict[str, Any]) -> None:
    """Generated documents, through TOML text and straight into the validator."""
    only(ManifestError, lambda: Manifest.from_toml(_toml(doc)))
    only(ManifestError, lambda: _Validator("<generated>").manifest(doc))


@FUZZ
@given(st.text(alphabet="abc", max_size=40), EDITS)
def test_manifest_mutations(insert: str, edits: list[tuple[int, int, int]]) -> None:
    text = _mutate(MANIFEST.encode(), edits).decode("utf-8", "replace")
    only(ManifestError, lambda: Manifest.from_toml(text + insert))


@pytest.mark.parametrize("depth", [100, 1000, 5000, 100_000])
@pytest.mark.parametrize(
    "shape",
    ["fuel = {open}{close}", "fuel = {open_table}1{close_table}", "x = {open}{close}"],
    ids=["arrays", "inline-tables", "unknown-key"],
)
def test_deeply_nested_manifest(depth: int, shape: str) -> None:
    """TOML nested thousands deep (a RecursionError inside tomllib before)."""
    body = shape.format(
        open="[" * depth,
        close="]" * depth,
        open_table="{a = " * depth,
        close_table="}" * depth,
    )
    text = f'[plugin]\nname = "deep"\nversion = "1.0.0"\n[limits]\n{body}\n'
    with pytest.raises(ManifestError):
        Manifest.from_toml(text)


def test_huge_manifest_is_refused_before_parsing() -> None:
    text = MANIFEST + "# " + "x" * (1 << 21) + "\n"
    with pytest.raises(ManifestError, match="characters long"):
        Manifest.from_toml(text)


def test_messages_about_outside_values_are_bounded() -> None:
    text = MANIFEST.replace('"acme:greeter"', '"' + "X" * 100_000 + '"')
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(text)
    assert len(str(info.value)) < 1000


# -- the Wasm section reader -----------------------------------------------------------


def _reader_calls(data: bytes) -> None:
    for fn in (
        lambda: ws.parse(data),
        lambda: ws.custom_sections(data),
        lambda: ws.get_custom_section(data, MANIFEST_SECTION),
        lambda: ws.with_custom_section(data, "x", b"payload", first=True),
        lambda: ws.without_custom_section(data, "signature"),
        lambda: read_component_info(data),
    ):
        only(InvalidComponentError, fn)


def _leb(n: int, pad: int) -> bytes:
    """``n`` as LEB128, padded with ``pad`` extra continuation bytes (possibly too long)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n or pad:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
        if not n:
            pad -= 1
            if pad == 0:
                out.append(0)
                return bytes(out)


SECTIONS = st.lists(
    st.tuples(
        st.integers(0, 255),  # id (> 0x7f is invalid)
        st.binary(max_size=40),  # payload
        st.integers(-3, 3),  # declared size minus the real one
        st.integers(0, 5),  # LEB128 padding
    ),
    max_size=6,
)


def _assemble(header: bytes, sections: list[tuple[int, bytes, int, int]]) -> bytes:
    out = bytearray(header)
    for sid, payload, skew, pad in sections:
        out += bytes([sid]) + _leb(max(0, len(payload) + skew), pad) + payload
    return bytes(out)


@FUZZ
@given(st.binary(max_size=300))
def test_section_reader_bytes(data: bytes) -> None:
    _reader_calls(data)
    _reader_calls(ws.COMPONENT_HEADER + data)


@FUZZ
@given(st.sampled_from([ws.COMPONENT_HEADER, ws.MODULE_HEADER, b"\0asm\x02\0\0\0"]), SECTIONS)
def test_section_reader_structure(
    header: bytes, sections: list[tuple[int, bytes, int, int]]
) -> None:
    data = _assemble(header, sections)
    _reader_calls(data)
    parsed = only(InvalidComponentError, lambda: ws.parse(data))
    if parsed is not None:  # what parses, rebuilds to the canonical form and parses the same
        rebuilt = ws.build(*parsed)
        assert ws.parse(rebuilt) == parsed


@FUZZ
@given(mutants("component", "packed", "signed"))
def test_section_reader_mutations(data: bytes) -> None:
    _reader_calls(data)


# -- the signature-section parser ----------------------------------------------------------


def _signature_calls(data: bytes, detached: bytes | None = None) -> None:
    key = signing.load_public_key(corpus()["public-key"])
    for fn in (
        lambda: signing.signatures(data, detached_signature=detached),
        lambda: signing.verify(data, key, detached_signature=detached),
        lambda: signing.signed_by(data, [key]),
        lambda: signing.detach_signature(data),
        lambda: signing.strip_signature(data),
    ):
        only((SignatureError, InvalidComponentError), fn)


def _signed_with_payload(payload: bytes) -> bytes:
    return ws.with_custom_section(
        corpus()["packed"], signing.SIGNATURE_SECTION, payload, first=True
    )


@FUZZ
@given(st.binary(max_size=300))
def test_signature_payload_bytes(payload: bytes) -> None:
    _signature_calls(_signed_with_payload(payload))
    _signature_calls(corpus()["stripped"], detached=payload)


RECORD = st.tuples(st.binary(max_size=16), st.integers(0, 3), st.binary(max_size=70))
SIGNED_SET = st.tuples(
    st.lists(st.binary(min_size=30, max_size=34), max_size=3),
    st.lists(RECORD, max_size=3),
    st.integers(-2, 2),  # skew of the set's declared length
)


def _payload(header: bytes, sets: list[Any], count_skew: int) -> bytes:
    def leb(n: int) -> bytes:
        return ws.encode_u32_leb(max(0, n))

    body = bytearray(header) + leb(len(sets) + count_skew)
    for hashes, records, skew in sets:
        enc = bytearray(leb(len(hashes)) + b"".join(hashes) + leb(len(records)))
        for kid, alg, sig in records:
            raw = leb(len(kid)) + kid + bytes([alg]) + leb(len(sig)) + sig
            enc += leb(len(raw)) + raw
        body += leb(len(enc) + skew) + enc
    return bytes(body)


@FUZZ
@given(
    st.sampled_from([b"\x01\x01\x01", b"\x01\x01\x02", b"\x02\x01\x01", b"\x01"]),
    st.lists(SIGNED_SET, max_size=3),
    st.integers(-1, 2),
)
def test_signature_payload_structure(header: bytes, sets: list[Any], count_skew: int) -> None:
    payload = _payload(header, sets, count_skew)
    _signature_calls(_signed_with_payload(payload))
    _signature_calls(corpus()["stripped"], detached=payload)


@FUZZ
@given(mutants("signed", "detached"))
def test_signature_mutations(data: bytes) -> None:
    _signature_calls(data)
    _signature_calls(corpus()["stripped"], detached=data)


# -- key files ---------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200) | mutants("public-key", "secret-key"))
def test_key_readers(data: bytes) -> None:
    only(KeyFormatError, lambda: signing.load_public_key(data))
    only(KeyFormatError, lambda: signing.load_secret_key(data))


def test_seed_corpus_is_real() -> None:
    """The corpus files are what they claim: the mutations start from valid input."""
    files = corpus()
    assert Manifest.from_toml(ws.get_custom_section(files["packed"], MANIFEST_SECTION).decode())
    assert len(signing.signatures(files["signed"])) == 2
    key = signing.load_public_key(files["public-key"])
    signing.verify(files["signed"], key)
    signing.verify(files["stripped"], key, detached_signature=files["detached"])


def test_deep_sidecar_manifest_is_refused_at_load(tmp_path: Any) -> None:
    """The sidecar ``wasmplug.toml`` next to an unpacked component goes through the
    same parser: ``load`` raises ManifestError, not RecursionError."""
    from wasmplug import PluginHost

    (tmp_path / "plugin.wasm").write_bytes(corpus()["component"])
    deep = '[plugin]\nname = "deep"\nversion = "1.0.0"\n[limits]\nfuel = '
    (tmp_path / "wasmplug.toml").write_text(deep + "[" * 5000 + "]" * 5000 + "\n")
    with PluginHost(cache_dir=tmp_path / "cache") as host, pytest.raises(ManifestError):
        host.load(tmp_path / "plugin.wasm", allow_unsigned=True)
