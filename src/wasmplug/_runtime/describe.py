"""What a component is, without running it: the result of ``PluginHost.inspect()``.

:class:`ComponentDescription` holds what ``wasmplug inspect`` shows: sizes and digests,
the manifest and where it came from, the signatures' key ids, and the WIT signature of
every imported and exported function.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import attrs

from wasmplug._bridge.wit import ComponentShape, FuncSig, InterfaceShape
from wasmplug._errors import SignatureError
from wasmplug._sandbox.capabilities import declared_capabilities
from wasmplug._sandbox.manifest import Manifest
from wasmplug._trust import signing as _signing
from wasmplug._trust.store import content_sha256

__all__ = ["ComponentDescription", "FunctionDescription", "InterfaceDescription", "describe"]

ManifestSource = Literal["embedded", "sidecar", "default"]


@attrs.frozen
class FunctionDescription:
    """One imported or exported function.

    Attributes:
        name: Its WIT name (``greet``, ``[method]counter.get``...).
        params: ``(name, WIT type)`` pairs in order, types as WIT text (``list<u8>``).
        result: The result type as WIT text, or ``None`` for a function without one.
    """

    name: str
    params: tuple[tuple[str, str], ...]
    result: str | None

    @property
    def signature(self) -> str:
        """The WIT signature, e.g. ``func(name: string) -> string``."""
        params = ", ".join(f"{n}: {t}" for n, t in self.params)
        return f"func({params})" + ("" if self.result is None else f" -> {self.result}")

    def __str__(self) -> str:
        return f"{self.name}: {self.signature}"


@attrs.frozen
class InterfaceDescription:
    """One imported or exported interface.

    Attributes:
        name: Its full name (``wasi:cli/environment@0.2.0``, ``demo:plugin/api@0.1.0``).
        functions: Its functions.
        resources: The names of the resource types it defines.
    """

    name: str
    functions: tuple[FunctionDescription, ...]
    resources: tuple[str, ...]


@attrs.frozen
class ComponentDescription:
    """What ``wasmplug inspect`` shows about a component.

    Attributes:
        path: The file, or ``None`` for bytes.
        size: Size in bytes.
        sha256: SHA-256 of the file, 64 lowercase hex digits (what revocations by
            digest and the compile cache use).
        content_sha256: SHA-256 of the file without its ``signature`` section: the same
            before and after signing.
        manifest: The manifest a load would use.
        manifest_source: ``"embedded"`` (the ``wasmplug-manifest`` section),
            ``"sidecar"`` (a ``wasmplug.toml`` next to the file) or ``"default"``
            (none: no capabilities, named after the file).
        signatures: The key id (lowercase hex) of each embedded signature, ``None``
            for an anonymous one. Nothing here is verified: that needs a key.
        imports: Imported interfaces.
        import_functions: Functions the world imports directly.
        exports: Exported interfaces.
        export_functions: Functions the world exports directly.
    """

    path: Path | None
    size: int
    sha256: str
    content_sha256: str
    manifest: Manifest
    manifest_source: Literal["embedded", "sidecar", "default"]
    signatures: tuple[str | None, ...]
    imports: tuple[InterfaceDescription, ...]
    import_functions: tuple[FunctionDescription, ...]
    exports: tuple[InterfaceDescription, ...]
    export_functions: tuple[FunctionDescription, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by ``wasmplug inspect --json`` (documented in docs/cli.md)."""
        m = self.manifest

        def ifaces(items: tuple[InterfaceDescription, ...]) -> dict[str, list[str]]:
            return {
                i.name: [str(f) for f in i.functions] + [f"resource {r}" for r in i.resources]
                for i in items
            }

        return {
            "path": None if self.path is None else str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "content-sha256": self.content_sha256,
            "manifest": {
                "source": self.manifest_source,
                "name": m.name,
                "version": m.version,
                **declared_capabilities(m),
            },
            "signatures": [k or "(anonymous)" for k in self.signatures],
            "imports": ifaces(self.imports),
            "import-functions": [str(f) for f in self.import_functions],
            "exports": ifaces(self.exports),
            "export-functions": [str(f) for f in self.export_functions],
        }


def _function(sig: FuncSig) -> FunctionDescription:
    params = tuple((name, str(t)) for name, t in sig.params)
    return FunctionDescription(sig.name, params, None if sig.result is None else str(sig.result))


def _interface(shape: InterfaceShape) -> InterfaceDescription:
    return InterfaceDescription(
        shape.name,
        tuple(_function(s) for s in shape.functions),
        tuple(r.name for r in shape.resources),
    )


def describe(
    data: bytes,
    path: Path | None,
    shape: ComponentShape,
    manifest: Manifest,
    manifest_source: ManifestSource,
) -> ComponentDescription:
    """Describe a component from its bytes, its shape (read from the compiled component)
    and the manifest a load would use."""
    try:
        sigs = _signing.signatures(data)
    except SignatureError:
        sigs = []
    return ComponentDescription(
        path=path,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_sha256=content_sha256(data),
        manifest=manifest,
        manifest_source=manifest_source,
        signatures=tuple((s.key_id or b"").hex() or None for s in sigs),
        imports=tuple(_interface(i) for i in shape.imports.values()),
        import_functions=tuple(_function(s) for s in shape.import_functions),
        exports=tuple(_interface(i) for i in shape.exports.values()),
        export_functions=tuple(_function(s) for s in shape.export_functions),
    )
