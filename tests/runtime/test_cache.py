"""The on-disk compile cache: entries, reuse across hosts, corruption, permissions."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime
from wasmtime.component import Component

from wasmplug import CacheError, InvalidComponentError, Manifest, PluginHost
from wasmplug._runtime import compiler
from wasmplug._runtime.cache import CompileCache, code_digest
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import signing
from wasmplug._trust import wasm_sections as ws

CACHED_WAT = r"""
(component
  (core module $m (func (export "seven") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func (export "seven") (result u32) (canon lift (core func $i "seven")))
)
"""

OTHER_WAT = r"""
(component
  (core module $m (func (export "eight") (result i32) i32.const 8))
  (core instance $i (instantiate $m))
  (func (export "eight") (result u32) (canon lift (core func $i "eight")))
)
"""

WASM = bytes(wasmtime.wat2wasm(CACHED_WAT))
SHA = hashlib.sha256(WASM).hexdigest()


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.cwasm"))


def load_and_call(host: PluginHost, wasm: bytes = WASM) -> int:
    plugin = host.load(wasm, allow_unsigned=True, manifest=Manifest(name="cached"))
    try:
        return int(plugin.call("seven"))
    finally:
        plugin.close()


def compiled_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wasmplug" and r.getMessage().startswith("compiled ")
    ]


@pytest.fixture
def deserialize_inputs(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every payload handed to Component.deserialize."""
    seen: list[bytes] = []
    original = Component.deserialize

    def record(cls: type[Component], engine: wasmtime.Engine, encoded: bytes) -> Component:
        seen.append(bytes(encoded))
        return original(engine, encoded)

    monkeypatch.setattr(Component, "deserialize", classmethod(record))
    return seen


def test_entry_is_written_in_a_private_directory(tmp_path: Path) -> None:
    cache_dir = tmp_path / "nested" / "cache"
    with PluginHost(cache_dir=cache_dir) as host:
        assert load_and_call(host) == 7
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    [entry] = entries(cache_dir)
    data = entry.read_bytes()
    assert data[:8] == b"WPLGCACH"
    payload = data[44:]
    assert hashlib.sha256(payload).digest() == data[12:44]
    assert not list(cache_dir.glob(".tmp-*")), "no temporary files left behind"


def test_second_host_loads_from_cache_without_compiling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, deserialize_inputs: list[bytes]
) -> None:
    cache_dir = tmp_path / "cache"
    caplog.set_level(logging.INFO, logger="wasmplug")
    with PluginHost(cache_dir=cache_dir) as host:
        assert load_and_call(host) == 7
    assert len(compiled_messages(caplog)) == 1
    assert deserialize_inputs == []
    [entry] = entries(cache_dir)
    caplog.clear()

    with PluginHost(cache_dir=cache_dir) as host:
        assert load_and_call(host) == 7
        assert load_and_call(host) == 7, "the second load uses the in-memory component"
    assert compiled_messages(caplog) == []
    assert deserialize_inputs == [entry.read_bytes()[44:]]


def test_different_engine_settings_use_different_entries(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with PluginHost(cache_dir=cache_dir) as host:
        load_and_call(host)
    with PluginHost(cache_dir=cache_dir, consume_fuel=True) as host:
        load_and_call(host)
    assert len(entries(cache_dir)) == 2


def truncate_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def truncate_header(data: bytes) -> bytes:
    return data[:20]


def flip_payload_bit(data: bytes) -> bytes:
    mid = 44 + (len(data) - 44) // 2
    return data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1 :]


def flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x80])


def flip_digest_bit(data: bytes) -> bytes:
    return data[:20] + bytes([data[20] ^ 0x04]) + data[21:]


def bad_magic(data: bytes) -> bytes:
    return b"XPLGCACH" + data[8:]


def bad_version(data: bytes) -> bytes:
    return data[:8] + (99).to_bytes(4, "little") + data[12:]


def empty(_data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    "corrupt",
    [
        truncate_half,
        truncate_header,
        flip_payload_bit,
        flip_last_bit,
        flip_digest_bit,
        bad_magic,
        bad_version,
        empty,
    ],
    ids=[
        "truncated-half",
        "truncated-header",
        "bit-flip-payload",
        "bit-flip-last-byte",
        "bit-flip-digest",
        "bad-magic",
        "bad-version",
        "empty",
    ],
)
def test_corrupt_entry_is_discarded_and_recompiled(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    deserialize_inputs: list[bytes],
    corrupt: Callable[[bytes], bytes],
) -> None:
    cache_dir = tmp_path / "cache"
    with PluginHost(cache_dir=cache_dir) as host:
        load_and_call(host)
    [entry] = entries(cache_dir)
    good = entry.read_bytes()
    bad = corrupt(good)
    assert bad != good
    entry.write_bytes(bad)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="wasmplug")

    with PluginHost(cache_dir=cache_dir) as host:
        assert load_and_call(host) == 7

    assert deserialize_inputs == [], "a corrupt entry reached Component.deserialize"
    warnings = [r for r in caplog.records if r.name == "wasmplug.cache"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "corrupt compile-cache entry" in warnings[0].getMessage()
    assert str(entry) in warnings[0].getMessage()
    assert len(compiled_messages(caplog)) == 1, "recompiled"
    # The entry was deleted and written again, valid this time.
    assert entry.read_bytes()[:12] == good[:12]

    caplog.clear()
    with PluginHost(cache_dir=cache_dir) as host:
        assert load_and_call(host) == 7
    assert compiled_messages(caplog) == []
    assert len(deserialize_inputs) == 1


def test_cache_get_deletes_a_corrupt_entry(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path / "cache", "settings")
    cache.put(SHA, b"payload")
    assert cache.get(SHA) == b"payload"
    path = cache.path_for(SHA)
    path.write_bytes(flip_last_bit(path.read_bytes()))
    assert cache.get(SHA) is None
    assert not path.exists()
    assert cache.get(SHA) is None


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777], ids=["group", "other", "both"])
def test_group_or_world_writable_cache_dir_is_refused(tmp_path: Path, mode: int) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    os.chmod(cache_dir, mode)
    with pytest.raises(CacheError, match="writable by group or others"):
        PluginHost(cache_dir=cache_dir)
    os.chmod(cache_dir, 0o700)
    with PluginHost(cache_dir=cache_dir) as host:
        assert load_and_call(host) == 7


def test_cache_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(CacheError, match="cannot create cache directory"):
        PluginHost(cache_dir=not_a_dir)


def test_cache_disabled_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with PluginHost(cache_dir=False) as host:
        assert load_and_call(host) == 7
    assert not (tmp_path / "xdg").exists()


def test_precompile_fills_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, deserialize_inputs: list[bytes]
) -> None:
    cache_dir = tmp_path / "cache"
    other_path = tmp_path / "other.wasm"
    other_path.write_bytes(bytes(wasmtime.wat2wasm(OTHER_WAT)))
    sources: list[str | os.PathLike[str] | bytes] = [WASM, other_path, CACHED_WAT.encode()]
    with PluginHost(cache_dir=cache_dir) as host:
        shas = host.precompile(sources)
    assert shas == [SHA, hashlib.sha256(other_path.read_bytes()).hexdigest(), SHA]
    assert len(entries(cache_dir)) == 2

    caplog.set_level(logging.INFO, logger="wasmplug")
    with PluginHost(cache_dir=cache_dir) as host:
        assert load_and_call(host) == 7
        plugin = host.load(other_path, allow_unsigned=True)
        assert plugin.call("eight") == 8
    assert compiled_messages(caplog) == []
    assert len(deserialize_inputs) == 2


def test_the_same_component_is_compiled_once_however_many_ask_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deserialize_inputs: list[bytes]
) -> None:
    """Four threads ask for the same code while its (slow) compile runs: one compiles,
    the others wait for it. They each compiled it, or read the first one's disk entry,
    depending on timing (which made ``test_precompile_fills_the_cache`` flaky)."""
    compiles: list[bytes] = []

    class SlowCompile(Component):
        def __init__(self, engine: wasmtime.Engine, data: bytes) -> None:
            compiles.append(data)
            time.sleep(0.3)  # a large component's compile: widens the window, not a timing
            super().__init__(engine, data)

    monkeypatch.setattr(compiler, "Component", SlowCompile)
    with PluginHost(cache_dir=tmp_path / "cache", max_workers=4) as host:
        assert host.precompile([WASM] * 4) == [SHA] * 4
    assert len(compiles) == 1
    assert deserialize_inputs == []
    assert len(entries(tmp_path / "cache")) == 1


def test_precompile_rejects_invalid_sources(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache") as host:
        with pytest.raises(InvalidComponentError):
            host.precompile([WASM, b"\0asm not really"])
        with pytest.raises(InvalidComponentError):
            host.precompile([b"(component (oops"])


def packed(wasm: bytes, name: str, version: str = "1.0.0") -> bytes:
    text = f'[plugin]\nname = "{name}"\nversion = "{version}"\n'
    return ws.with_custom_section(wasm, MANIFEST_SECTION, text.encode())


def test_code_digest_ignores_signatures_and_the_manifest_only() -> None:
    base = code_digest(WASM)
    first, second = signing.generate_keypair(), signing.generate_keypair()
    signed = signing.sign(packed(WASM, "cached"), first, key_id=first.key_id)
    resigned = signing.sign(packed(WASM, "cached"), second)
    twice = signing.sign(signed, second, key_id=second.key_id)
    repacked = packed(WASM, "cached", version="2.0.0")
    assert {code_digest(x) for x in (signed, resigned, twice, repacked)} == {base}
    assert len({hashlib.sha256(x).digest() for x in (signed, resigned, twice, repacked)}) == 4
    # Any other section changes the digest: other code, or another custom
    # section (a name section, producers, DWARF all reach the compiled code).
    assert code_digest(bytes(wasmtime.wat2wasm(OTHER_WAT))) != base
    assert code_digest(ws.with_custom_section(WASM, "name", b"\x00\x01x")) != base
    assert code_digest(ws.with_custom_section(WASM, "signature-ish", b"")) != base


def test_code_digest_of_a_malformed_binary_hashes_every_byte() -> None:
    bad = b"\0asm\x0d\x00\x01\x00\x01\xff"
    assert code_digest(bad) != code_digest(bad[:-1] + b"\xfe")
    assert code_digest(b"not wasm") != code_digest(b"not wasm!")


def test_re_signed_and_re_packed_code_loads_from_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, deserialize_inputs: list[bytes]
) -> None:
    cache_dir = tmp_path / "cache"
    old_key, new_key = signing.generate_keypair(), signing.generate_keypair()
    old = signing.sign(packed(WASM, "cached"), old_key, key_id=old_key.key_id)
    new = signing.sign(packed(WASM, "cached", "1.0.1"), new_key, key_id=new_key.key_id)
    caplog.set_level(logging.INFO, logger="wasmplug")
    with PluginHost(cache_dir=cache_dir, trusted_keys=[old_key.public_key]) as host:
        plugin = host.load(old)
        assert plugin.call("seven") == 7
    assert len(compiled_messages(caplog)) == 1
    caplog.clear()

    with PluginHost(cache_dir=cache_dir, trusted_keys=[new_key.public_key]) as host:
        plugin = host.load(new)
        assert plugin.call("seven") == 7
        # The identity is still the whole file: grants and revocation see the new bytes.
        assert plugin.sha256 == hashlib.sha256(new).hexdigest()
        assert plugin.manifest.version == "1.0.1"
        # The old signature is not trusted by this host, cache or not.
        with pytest.raises(signing.SignatureError):
            host.load(old)
    assert compiled_messages(caplog) == [], "re-signing unchanged code recompiled it"
    assert len(deserialize_inputs) == 1
    assert len(entries(cache_dir)) == 1


def test_re_signed_code_hits_the_in_memory_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = signing.generate_keypair()
    caplog.set_level(logging.INFO, logger="wasmplug")
    with PluginHost(cache_dir=False, trusted_keys=[key.public_key]) as host:
        for version in ("1.0.0", "1.0.1"):
            plugin = host.load(signing.sign(packed(WASM, "cached", version), key))
            assert plugin.call("seven") == 7
    assert len(compiled_messages(caplog)) == 1
