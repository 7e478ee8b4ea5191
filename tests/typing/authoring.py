"""A publisher's build script and an inspector, as user code that must type-check under
``mypy --strict`` (see tests/test_typing.py). It is never run.
"""

from __future__ import annotations

from pathlib import Path

import wasmplug
from wasmplug import ComponentDescription, FunctionDescription, PluginHost, TrustedKey
from wasmplug.authoring import (
    BuiltComponent,
    KeyFiles,
    PackedComponent,
    ProgressBoard,
    ProgressEvent,
    SignedComponent,
    bindgen,
    build_project,
    build_python,
    keygen,
    pack,
    sign,
)


def publish(project: Path, out: Path) -> tuple[str, int]:
    keys: KeyFiles = keygen(out / "acme.pub", out / "acme.key")
    trusted = TrustedKey(keys.public_key, scopes=("acme:*",), name="Acme")
    with ProgressBoard(title="plugins") as board:
        packed: PackedComponent = build_project(project, output=out / "p.wasm", progress=board)
        with board.task("hello", "compiling (first time ~10 s)..."):
            with PluginHost(trusted_keys=[trusted]) as host:
                host.precompile([packed.path])
    built: BuiltComponent | None = packed.built
    seconds: float = built.seconds if built is not None else 0.0
    signed: SignedComponent = sign(packed.path, keys.secret_key_path, output=out / "s.wasm")
    assert signed.path is not None
    return signed.sha256, int(seconds)


def raw_build(app: Path) -> str:
    events: list[ProgressEvent] = []
    built = build_python(app, wit=app / "wit", world="w", progress=events.append)
    repacked = pack(built.path, app / "wasmplug.toml", output=app / "dist" / "w.wasm")
    return bindgen(repacked.path).code + "".join(e.message for e in events)


def describe(path: Path) -> list[str]:
    info: ComponentDescription = wasmplug.inspect(path)
    funcs: list[FunctionDescription] = list(info.export_functions)
    for iface in info.exports:
        funcs += iface.functions
    source: str = info.manifest_source
    return [source, *(f"{f.name}: {f.signature}" for f in funcs)]
