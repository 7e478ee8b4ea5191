"""Tiny packed (and signed) components and helpers for the registry tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import wasmtime

from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws

HOST_IFACE = "demo:plugin/host@0.1.0"


def component(n: int = 1, imports: tuple[str, ...] = ()) -> bytes:
    decls = "\n".join(f'(import "{name}" (instance))' for name in imports)
    return bytes(
        wasmtime.wat2wasm(f"""
(component
  {decls}
  (core module $m (func (export "one") (result i32) i32.const {n}))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)""")
    )


def manifest_toml(name: str, version: str, host_interfaces: tuple[str, ...] = ()) -> str:
    ifaces = ", ".join(f'"{i}"' for i in host_interfaces)
    return (
        f'[plugin]\nname = "{name}"\nversion = "{version}"\ndescription = "test {name}"\n'
        f"[capabilities]\nhost-interfaces = [{ifaces}]\n"
    )


def packed(
    name: str,
    version: str = "1.0.0",
    *,
    n: int = 1,
    imports: tuple[str, ...] = (),
    host_interfaces: tuple[str, ...] = (),
) -> bytes:
    text = manifest_toml(name, version, host_interfaces).encode()
    return ws.with_custom_section(component(n, imports), MANIFEST_SECTION, text)


def signed(data: bytes, pair: _signing.KeyPair) -> bytes:
    return _signing.sign(data, pair.secret_key, key_id=pair.key_id)


def snapshot(root: Path) -> tuple[list[tuple[str, str]], bytes | None]:
    """A recursive listing (with file digests) and the index bytes."""
    listing = sorted(
        (
            p.relative_to(root).as_posix(),
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
        )
        for p in root.rglob("*")
    )
    index = root / "index.json"
    return listing, index.read_bytes() if index.exists() else None


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path
