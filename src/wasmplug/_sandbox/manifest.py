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
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs

from wasmplug._errors import ManifestError
from wasmplug._semver import SEMVER_RE, semver_compatible

from .limits import Limits
from .urlpattern import PatternError, parse_pattern

__all__ = ["FilesystemRequest", "Manifest"]

NAME_RE = re.compile(r"^(?:[a-z][a-z0-9]*(?:-[a-z0-9]+)*:)?[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_ID = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
INTERFACE_RE = re.compile(rf"^(?:{_ID}:{_ID}/{_ID}(?:@[0-9A-Za-z.+-]+)?|{_ID})$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

HTTP_INTERFACE = "wasmplug:host/http@0.1.0"
"""The built-in outbound HTTP interface (``src/wasmplug/wit/http.wit``)."""

SIDECAR_NAME = "wasmplug.toml"
"""File name of a development-time manifest next to an unpacked ``.wasm``."""

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
    return Limits(timeout_ms=None, memory_bytes=None, table_elements=None)


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
    host_interfaces: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    filesystem: tuple[FilesystemRequest, ...] = ()
    allowed_outbound_hosts: tuple[str, ...] = ()
    stdio: Literal["log", "discard"] = "log"
    limits: Limits = attrs.field(factory=_default_limits)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<manifest>") -> Manifest:
        """Parse and validate manifest text.

        Raises:
            ManifestError: listing every problem (TOML syntax, unknown keys,
                wrong types, invalid names/paths/patterns).
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ManifestError(source, [f"not valid TOML: {e}"]) from None
        return _Validator(source).manifest(data)

    @classmethod
    def from_path(cls, path: str | Path) -> Manifest:
        """Read and validate a manifest file.

        Raises:
            ManifestError: if the file is unreadable or invalid.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
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
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
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
        if pattern is not None and not pattern.match(value):
            self.problem(f"{path}.{key}", f"{value!r} is not valid{hint}")
            return default
        return value

    def strings(
        self, data: dict[str, Any], key: str, path: str, check: Callable[[str], str | None]
    ) -> tuple[str, ...]:
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
            error = check(item)
            if error:
                self.problem(f"{path}.{key}[{i}]", error)
            else:
                out.append(item)
        if len(set(out)) != len(out):
            self.problem(f"{path}.{key}", "contains duplicates")
        return tuple(out)

    def manifest(self, data: dict[str, Any]) -> Manifest:
        self.table(data, "", {"plugin", "capabilities", "limits"})
        if "plugin" not in data:
            self.problem("plugin", "the [plugin] table is required")
        plugin = self.table(
            data.get("plugin", {}), "plugin", {"name", "version", "description", "world"}
        )
        name = self.string(
            plugin,
            "name",
            "plugin",
            pattern=NAME_RE,
            required=True,
            hint=" (use lowercase kebab-case, optionally 'namespace:name')",
        )
        version = self.string(
            plugin,
            "version",
            "plugin",
            pattern=SEMVER_RE,
            required=True,
            hint=" (use a semantic version such as 1.2.3)",
        )
        description = self.string(plugin, "description", "plugin", default="")
        world = self.string(plugin, "world", "plugin")
        caps = self.table(
            data.get("capabilities", {}),
            "capabilities",
            {"host-interfaces", "env", "filesystem", "allowed-outbound-hosts", "stdio"},
        )
        host_ifaces = self.strings(
            caps,
            "host-interfaces",
            "capabilities",
            lambda s: (
                None
                if INTERFACE_RE.match(s)
                else f"{s!r} is not a WIT interface name like 'ns:pkg/iface@1.0.0'"
            ),
        )
        env = self.strings(
            caps,
            "env",
            "capabilities",
            lambda s: None if ENV_KEY_RE.match(s) else f"{s!r} is not an environment variable name",
        )
        hosts = self.strings(caps, "allowed-outbound-hosts", "capabilities", _check_host_pattern)
        stdio = self.string(caps, "stdio", "capabilities", default="log")
        if stdio not in ("log", "discard"):
            self.problem("capabilities.stdio", f"must be 'log' or 'discard', got {stdio!r}")
            stdio = "log"
        filesystem = self.filesystem(caps.get("filesystem", []))
        limits = self.limits(data.get("limits", {}))
        if self.problems:
            raise ManifestError(self.source, self.problems)
        assert name is not None
        assert version is not None
        return Manifest(
            name=name,
            version=version,
            description=description or "",
            world=world,
            host_interfaces=host_ifaces,
            env=env,
            filesystem=filesystem,
            allowed_outbound_hosts=hosts,
            stdio=stdio,  # type: ignore[arg-type]
            limits=limits,
        )

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
            if mode not in ("ro", "rw"):
                self.problem(f"{where}.mode", f"must be 'ro' or 'rw', got {mode!r}")
                continue
            if guest is None:
                continue
            error = check_guest_path(guest)
            if error:
                self.problem(f"{where}.guest-path", error)
                continue
            if any(r.guest_path == guest for r in out):
                self.problem(f"{where}.guest-path", f"{guest!r} is requested twice")
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
                self.problem(f"limits.{key}", f"must be a positive integer, got {v!r}")
            else:
                values[attr] = v
        base = {"timeout_ms": None, "memory_bytes": None, "table_elements": None}
        return Limits(**{**base, **values})


def declares_import(manifest: Manifest, name: str) -> bool:
    """Whether ``manifest`` declares the (non-WASI) import ``name``.

    An import is declared when a semver-compatible name is listed in
    ``host-interfaces``; declaring ``allowed-outbound-hosts`` also declares
    the built-in ``wasmplug:host/http`` interface that uses them.
    """
    if any(semver_compatible(name, d) for d in manifest.host_interfaces):
        return True
    return semver_compatible(name, HTTP_INTERFACE) and bool(manifest.allowed_outbound_hosts)


def check_guest_path(path: str) -> str | None:
    """Return why ``path`` is not an acceptable guest path, or ``None`` if it is."""
    if "\0" in path:
        return "contains a NUL byte"
    if not path.startswith("/"):
        return f"{path!r} must be absolute (start with '/')"
    if ".." in path.split("/"):
        return f"{path!r} must not contain '..'"
    if posixpath.normpath(path) != path and path != "/":
        return f"{path!r} is not normalised (use {posixpath.normpath(path)!r})"
    return None


def _check_host_pattern(pattern: str) -> str | None:
    try:
        parse_pattern(pattern)
    except PatternError as e:
        return (
            f"{pattern!r} is not a host pattern like 'https://api.example.com' "
            f"or 'https://*.example.org:8443' ({e})"
        )
    return None
