"""The plugin manifest (``wasmplug.toml``): what a plugin is and what it asks for.

The manifest *declares*; the application *grants* (see :mod:`wasmplug._sandbox.grants`).
WIT already says which interfaces a component imports, so the manifest only
adds what WIT cannot express: directories, environment keys, outbound hosts
and limits. The layout borrows from Spin's ``spin.toml`` (``files``,
``environment``, ``allowed_outbound_hosts``) and Extism's manifest
(``memory.max_pages``, ``timeout_ms``). Example::

    [plugin]
    name = "acme:greeter"          # [namespace:]kebab-name
    version = "0.1.0"              # semver
    description = "Says hello"
    world = "demo:plugin/greeter"  # optional, informational

    [capabilities]
    host-interfaces = ["demo:plugin/host@0.1.0"]
    env = ["GREETING"]
    allowed-outbound-hosts = ["https://api.example.com"]
    stdio = "log"                  # or "discard"

    [[capabilities.filesystem]]
    guest-path = "/data"
    mode = "ro"                    # or "rw"

    [limits]
    memory-bytes = 67108864
    timeout-ms = 100
    fuel = 10000000

Validation reports every problem at once and treats unknown keys as errors.
The value rules (names, versions, interface names, env keys, guest paths, host
patterns, modes) live in one place, :func:`_value_problems`, applied both to
``Manifest(...)`` built in code and to parsed TOML, so a manifest that works in
code can always be packed, and the other way round.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import attrs

from wasmplug._errors import ManifestError
from wasmplug._semver import SEMVER_RE

from .capabilities import (
    DECLARABLE,
    HTTP_INTERFACE,
    Capability,
    check_guest_path,
    check_host_pattern,
    declares_import,
)
from .capabilities import show_value as _show
from .limits import Limits

# Re-exported: their home is the capability definitions.
_check_host_pattern = check_host_pattern

__all__ = [
    "HTTP_INTERFACE",
    "FilesystemRequest",
    "Manifest",
    "check_guest_path",
    "declares_import",
    "undeclared_imports",
]

# Every pattern is used with fullmatch (``$`` would accept a trailing newline).
_ID = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
NAME_RE = re.compile(rf"(?:{_ID}:)?{_ID}")

SIDECAR_NAME = "wasmplug.toml"
"""File name of a development-time manifest next to an unpacked ``.wasm``."""

MAX_MANIFEST_CHARS = 1 << 20
"""Longest manifest text accepted, in characters (a real one is a few hundred)."""

MANIFEST_SECTION = "wasmplug-manifest"
"""Name of the custom section that carries an embedded manifest (TOML text)."""


@attrs.frozen
class FilesystemRequest:
    """A directory the plugin asks to see, at ``guest_path`` inside the sandbox.

    The host directory is never named by the plugin: it comes from the
    application's grant.

    Attributes:
        guest_path: Absolute POSIX path inside the guest, e.g. ``"/data"``.
        mode: ``"ro"`` (read-only) or ``"rw"`` (read-write).
        description: Why the plugin needs it, shown in permission prompts.
    """

    guest_path: str
    mode: Literal["ro", "rw"] = "ro"
    description: str = ""


def _default_limits() -> Limits:
    return Limits.unlimited()  # every kind defers to the application


def _as_tuple(value: Any) -> Any:
    """Lists (and other iterables) become tuples; a string is kept, for the validator
    to report (``env="HOME"`` would otherwise become four one-letter keys)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value
    return tuple(value)


@attrs.frozen(kw_only=True)
class Manifest:
    """A parsed, validated plugin manifest.

    Attributes:
        name: ``[namespace:]kebab-name``, e.g. ``"acme:greeter"``.
        version: Semantic version string.
        description: One line for listings.
        world: The WIT world the component targets, if stated.
        host_interfaces: WIT interface names the plugin imports from the host
            (``"demo:plugin/host@0.1.0"``), or plain names of world-level
            function imports.
        env: Environment variable names the plugin asks for (values come from grants).
        filesystem: Directories the plugin asks for.
        allowed_outbound_hosts: Outbound URL patterns (Spin syntax).
        stdio: ``"log"`` sends guest stdout/stderr to
            ``logging.getLogger("wasmplug.plugin.<name>")``; ``"discard"`` drops it.
        limits: Limits the plugin asks for; ``None`` kinds defer to the application.
    """

    name: str
    version: str = "0.0.0"
    description: str = ""
    world: str | None = None
    host_interfaces: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    env: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    filesystem: tuple[FilesystemRequest, ...] = attrs.field(default=(), converter=_as_tuple)
    allowed_outbound_hosts: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    stdio: Literal["log", "discard"] = "log"
    limits: Limits = attrs.field(factory=_default_limits)

    def __attrs_post_init__(self) -> None:
        """Apply the manifest rules to a manifest built in code.

        Raises:
            ManifestError: listing every problem, keyed as in ``wasmplug.toml``.
        """
        problems = _value_problems(attrs.asdict(self, recurse=False))
        if problems:
            raise ManifestError(f"Manifest(name={_show(self.name)})", problems)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<manifest>") -> Manifest:
        """Parse and validate manifest text.

        Raises:
            ManifestError: listing every problem (TOML syntax, nesting too deep,
                text longer than 1 Mi characters, unknown keys, wrong
                types, invalid names/paths/patterns). Nothing else escapes.
        """
        if len(text) > MAX_MANIFEST_CHARS:
            raise ManifestError(
                source, [f"is {len(text)} characters long; the limit is {MAX_MANIFEST_CHARS}"]
            )
        try:
            data = tomllib.loads(text)
        except RecursionError:
            raise ManifestError(source, ["not valid TOML: nested too deeply"]) from None
        except ValueError as e:  # TOMLDecodeError, and values tomllib cannot represent
            raise ManifestError(source, [f"not valid TOML: {e}"]) from None
        try:
            return _Validator(source).manifest(data)
        except RecursionError:  # pragma: no cover - the validator does not recurse
            raise ManifestError(source, ["nested too deeply"]) from None

    @classmethod
    def from_path(cls, path: str | Path) -> Manifest:
        """Read and validate a manifest file.

        Raises:
            ManifestError: if the file is unreadable or invalid.
        """
        p = Path(path)
        try:
            with p.open("rb") as f:
                raw = f.read(4 * MAX_MANIFEST_CHARS + 1)  # UTF-8: at most 4 bytes a character
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ManifestError(str(p), [f"cannot read: {e}"]) from None
        return cls.from_toml(text, source=str(p))


class _Validator:
    """Collects every problem in one pass (pypa/packaging's error-collector pattern)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def table(self, data: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.problem(key, f"must be a table, got {type(data).__name__}")
            return {}
        for unknown in sorted(set(data) - allowed):
            known = ", ".join(sorted(allowed))
            self.problem(f"{key}.{unknown}" if key else unknown, f"unknown key (known: {known})")
        return data

    def string(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: str | None = None,
    ) -> str | None:
        if key not in data:
            if required:
                self.problem(f"{path}.{key}", "is required")
            return default
        value = data[key]
        if not isinstance(value, str):
            self.problem(f"{path}.{key}", f"must be a string, got {type(value).__name__}")
            return default
        return value

    def strings(self, data: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list):
            self.problem(
                f"{path}.{key}", f"must be an array of strings, got {type(value).__name__}"
            )
            return ()
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(f"{path}.{key}[{i}]", f"must be a string, got {type(item).__name__}")
                continue
            out.append(item)
        return tuple(out)

    def manifest(self, data: dict[str, Any]) -> Manifest:
        self.table(data, "", {"plugin", "capabilities", "limits"})
        if "plugin" not in data:
            self.problem("plugin", "the [plugin] table is required")
        plugin = self.table(
            data.get("plugin", {}), "plugin", {"name", "version", "description", "world"}
        )
        name = self.string(plugin, "name", "plugin", required=True)
        version = self.string(plugin, "version", "plugin", required=True)
        description = self.string(plugin, "description", "plugin", default="")
        world = self.string(plugin, "world", "plugin")
        caps = self.table(
            data.get("capabilities", {}),
            "capabilities",
            {*(cap.manifest_key for cap in DECLARABLE if cap.manifest_key), "stdio"},
        )
        values: dict[str, Any] = {
            "name": name,
            "version": version,
            "description": description or "",
            "world": world,
            **{
                _attr(cap): self.strings(caps, cap.manifest_key, "capabilities")
                for cap in DECLARABLE
                if cap.manifest_key and cap.manifest_key != "filesystem"
            },
            "stdio": self.string(caps, "stdio", "capabilities", default="log"),
            "filesystem": self.filesystem(caps.get("filesystem", [])),
            "limits": self.limits(data.get("limits", {})),
        }
        # Fields that were missing or of the wrong TOML type were reported above;
        # the value rules run on the rest, the same rules as for Manifest(...).
        self.problems.extend(_value_problems({k: v for k, v in values.items() if v is not None}))
        if self.problems:
            raise ManifestError(self.source, self.problems)
        return Manifest(**values)

    def filesystem(self, value: Any) -> tuple[FilesystemRequest, ...]:
        path = "capabilities.filesystem"
        if not isinstance(value, list):
            self.problem(path, "must be an array of tables ([[capabilities.filesystem]])")
            return ()
        out: list[FilesystemRequest] = []
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            entry = self.table(item, where, {"guest-path", "mode", "description"})
            guest = self.string(entry, "guest-path", where, required=True)
            mode = self.string(entry, "mode", where, default="ro")
            description = self.string(entry, "description", where, default="") or ""
            if guest is None or mode is None:
                continue
            out.append(FilesystemRequest(guest, mode, description))  # type: ignore[arg-type]
        return tuple(out)

    def limits(self, value: Any) -> Limits:
        keys = {
            "memory-bytes": "memory_bytes",
            "timeout-ms": "timeout_ms",
            "fuel": "fuel",
            "table-elements": "table_elements",
        }
        table = self.table(value, "limits", set(keys))
        values: dict[str, Any] = {}
        for key, attr in keys.items():
            if key not in table:
                continue
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                self.problem(f"limits.{key}", f"must be a positive integer, got {_show(v)}")
            else:
                values[attr] = v
        return attrs.evolve(Limits.unlimited(), **values)


def _value_problems(values: dict[str, Any]) -> list[str]:
    """Every rule a manifest's values must follow, keyed as in ``wasmplug.toml``.

    ``values`` maps :class:`Manifest` attribute names to values; absent ones are
    not checked (the TOML parser has already reported them).
    """
    out: list[str] = []

    def single(attr: str, key: str, check: Callable[[Any], str | None]) -> None:
        if attr in values:
            error = check(values[attr])
            if error:
                out.append(f"{key}: {error}")

    def each(attr: str, key: str, check: Callable[[str], str | None]) -> None:
        if attr not in values:
            return
        items = values[attr]
        if isinstance(items, str) or not isinstance(items, tuple):
            out.append(f"{key}: must be an array of strings, got {type(items).__name__}")
            return
        for i, item in enumerate(items):
            error = f"must be a string, got {type(item).__name__}"
            if isinstance(item, str):
                error = check(item) or ""
            if error:
                out.append(f"{key}[{i}]: {error}")
        if len(set(items)) != len(items):
            out.append(f"{key}: contains duplicates")

    single("name", "plugin.name", _check_name)
    single("version", "plugin.version", _check_version)
    single("description", "plugin.description", _check_text)
    single("world", "plugin.world", lambda v: None if v is None else _check_text(v))
    for cap in DECLARABLE:  # each capability's own rule for what a manifest declares
        if cap.manifest_key and cap.manifest_key != "filesystem":
            each(_attr(cap), f"capabilities.{cap.manifest_key}", cap.check_declared)
    single("stdio", "capabilities.stdio", _check_stdio)
    single("limits", "limits", _check_limits)
    if "filesystem" in values:
        out.extend(_filesystem_problems(values["filesystem"]))
    return out


def _check_name(value: Any) -> str | None:
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return None
    return f"{_show(value)} is not valid (use lowercase kebab-case, optionally 'namespace:name')"


def _check_version(value: Any) -> str | None:
    if isinstance(value, str) and SEMVER_RE.fullmatch(value):
        return None
    return f"{_show(value)} is not valid (use a semantic version such as 1.2.3)"


def _check_text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {type(value).__name__}"


def _check_stdio(value: Any) -> str | None:
    return (
        None if value in ("log", "discard") else f"must be 'log' or 'discard', got {_show(value)}"
    )


def _check_limits(value: Any) -> str | None:
    return None if isinstance(value, Limits) else f"must be a Limits, got {type(value).__name__}"


def _filesystem_problems(requests: Any) -> list[str]:
    key = "capabilities.filesystem"
    if isinstance(requests, str) or not isinstance(requests, tuple):
        return [f"{key}: must be an array of tables, got {type(requests).__name__}"]
    out: list[str] = []
    seen: set[str] = set()
    for i, req in enumerate(requests):
        where = f"{key}[{i}]"
        if not isinstance(req, FilesystemRequest):
            out.append(f"{where}: must be a FilesystemRequest, got {type(req).__name__}")
            continue
        if req.mode not in ("ro", "rw"):
            out.append(f"{where}.mode: must be 'ro' or 'rw', got {_show(req.mode)}")
        if not isinstance(req.description, str):
            out.append(f"{where}.description: must be a string")
        error = (
            Capability.FILESYSTEM_READ.check_declared(req.guest_path)
            if isinstance(req.guest_path, str)
            else f"must be a string, got {type(req.guest_path).__name__}"
        )
        if error:
            out.append(f"{where}.guest-path: {error}")
        elif req.guest_path in seen:
            out.append(f"{where}.guest-path: {_show(req.guest_path)} is requested twice")
        else:
            seen.add(req.guest_path)
    return out


def _attr(cap: Capability) -> str:
    """The :class:`Manifest` attribute of a capability's manifest key."""
    assert cap.manifest_key is not None
    return cap.manifest_key.replace("-", "_")


def undeclared_imports(manifest: Manifest, imports: Iterable[str]) -> list[str]:
    """The one import-declaration rule, for load and install alike: every
    non-``wasi:`` import must be declared (:func:`declares_import`).

    Returns:
        One problem message per undeclared import (empty if all are declared).
    """
    # A world-level resource's functions ([constructor]r, [method]r.m, [static]r.s)
    # are declared by the resource's name, r.
    names = dict.fromkeys(_RESOURCE_FUNC.sub(r"\1", name) for name in imports)
    return [
        f"{name}: imported but not declared in the manifest ([capabilities] host-interfaces)"
        for name in names
        if not name.startswith("wasi:") and not declares_import(manifest, name)
    ]


_RESOURCE_FUNC = re.compile(r"^\[(?:constructor|method|static)\]([^.]+)(?:\..*)?$", re.S)
