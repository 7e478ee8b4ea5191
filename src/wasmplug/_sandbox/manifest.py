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
    application = ["acme:db-write"]  # capabilities the application defines
    stdio = "log"                  # or "discard"

    [[capabilities.filesystem]]
    guest-path = "/data"
    mode = "ro"                    # or "rw"

    [limits]
    memory-bytes = 67108864
    timeout-ms = 100
    fuel = 10000000

Validation reports every problem at once and treats unknown keys as errors.
Each key under ``[capabilities]`` (but ``stdio``) belongs to one capability
definition (:mod:`~wasmplug._sandbox.capabilities`), which reads its TOML value
and owns its value rules (interface names, env keys, guest paths, host
patterns, modes...); :func:`_value_problems` applies those rules, and the
plugin's own (name, version...), both to ``Manifest(...)`` built in code and to
parsed TOML, so a manifest that works in code can always be packed, and the
other way round. The declarations are kept keyed by manifest key
(:attr:`Manifest.declarations`); ``manifest.env`` and the like are views.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from wasmplug._errors import ManifestError
from wasmplug._semver import SEMVER_RE

from .capabilities import (
    HTTP_INTERFACE,
    FilesystemRequest,
    check_guest_path,
    declares_import,
)
from .capability import declared_kind, declared_kinds
from .capability import show_value as _show
from .grants import FrozenMap, by_keyword
from .limits import Limits

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


def _declarations(owner: str, given: Mapping[str, Any], by_attr: Mapping[str, Any]) -> FrozenMap:
    """The declarations keyed by manifest key, each normalised by its kind; empty
    ones are dropped (declaring nothing is not declaring)."""
    keys = {cap.manifest_attr: cap.manifest_key for cap in declared_kinds() if cap.manifest_key}
    values = {**given, **by_keyword(owner, by_attr, keys)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        cap = declared_kind(key)
        normalised = value if cap is None else cap.normalise_declared(value)
        if not (isinstance(normalised, tuple) and not normalised):
            out[key] = normalised
    return FrozenMap(out)


@attrs.frozen(init=False)
class Manifest:
    """A parsed, validated plugin manifest.

    Args:
        name: ``[namespace:]kebab-name``, e.g. ``"acme:greeter"``.
        version: Semantic version string.
        description: One line for listings.
        world: The WIT world the component targets, if stated.
        stdio: ``"log"`` sends guest stdout/stderr to
            ``logging.getLogger("wasmplug.plugin.<name>")``; ``"discard"`` drops it.
        limits: Limits the plugin asks for; ``None`` kinds defer to the application.
        host_interfaces: WIT interface names the plugin imports from the host
            (``"demo:plugin/host@0.1.0"``), or plain names of world-level
            function imports.
        env: Environment variable names the plugin asks for (values come from grants).
        filesystem: Directories the plugin asks for (:class:`FilesystemRequest`).
        allowed_outbound_hosts: Outbound URL patterns (Spin syntax).
        application: Ids of application-defined capabilities the plugin asks for
            (``"acme:db-write"``; see :class:`~wasmplug.Capability`).
        declarations: The same declarations keyed by manifest key
            (``{"env": ("HOME",)}``); the keyword arguments above win over it.

    Every declaration keyword is the manifest key of one
    :class:`~wasmplug.Capability` definition, with ``-`` written ``_`` (a kind
    an application defines adds its own), and is checked by that definition's
    rules, the same ones ``wasmplug.toml`` is checked with.

    Raises:
        ManifestError: listing every problem, keyed as in ``wasmplug.toml``.
        TypeError: an unknown keyword.
    """

    name: str
    version: str
    description: str
    world: str | None
    declarations: Mapping[str, tuple[Any, ...]]
    """Manifest key (``"env"``, ``"filesystem"``...) → what is declared under it."""
    stdio: Literal["log", "discard"]
    limits: Limits

    def __init__(
        self,
        *,
        name: str,
        version: str = "0.0.0",
        description: str = "",
        world: str | None = None,
        stdio: Literal["log", "discard"] = "log",
        limits: Limits | None = None,
        declarations: Mapping[str, Any] | None = None,
        **declared: Any,
    ) -> None:
        self.__attrs_init__(
            name,
            version,
            description,
            world,
            _declarations("Manifest", declarations or {}, declared),
            stdio,
            Limits.unlimited() if limits is None else limits,  # every kind defers to the app
        )
        core = {"name": name, "version": version, "description": description, "world": world}
        problems = _value_problems(
            {**core, "stdio": stdio, "limits": self.limits}, self.declarations
        )
        if problems:
            raise ManifestError(f"Manifest(name={_show(self.name)})", problems)

    # Views of the built-in declarations (a kind an application defines is read
    # with ``manifest.declarations[key]`` or ``capability.declared_in(manifest)``).

    @property
    def host_interfaces(self) -> tuple[str, ...]:
        """Host interfaces declared (``host-interfaces``)."""
        return self.declarations.get("host-interfaces", ())

    @property
    def env(self) -> tuple[str, ...]:
        """Environment variable names declared (``env``)."""
        return self.declarations.get("env", ())

    @property
    def filesystem(self) -> tuple[FilesystemRequest, ...]:
        """Directories declared (``[[capabilities.filesystem]]``)."""
        return self.declarations.get("filesystem", ())

    @property
    def allowed_outbound_hosts(self) -> tuple[str, ...]:
        """Outbound URL patterns declared (``allowed-outbound-hosts``)."""
        return self.declarations.get("allowed-outbound-hosts", ())

    @property
    def application(self) -> tuple[str, ...]:
        """Application capability ids declared (``application``)."""
        return self.declarations.get("application", ())

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
        except ManifestError:
            raise
        except Exception as e:  # a kind's parser that failed some other way
            raise ManifestError(source, [f"cannot be read: {type(e).__name__}: {e}"]) from None

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

    def manifest(self, data: dict[str, Any]) -> Manifest:
        self.table(data, "", {"plugin", "capabilities", "limits"})
        if "plugin" not in data:
            self.problem("plugin", "the [plugin] table is required")
        plugin = self.table(
            data.get("plugin", {}), "plugin", {"name", "version", "description", "world"}
        )
        kinds = {cap.manifest_key: cap for cap in declared_kinds() if cap.manifest_key}
        caps = self.table(data.get("capabilities", {}), "capabilities", {*kinds, "stdio"})
        core: dict[str, Any] = {
            "name": self.string(plugin, "name", "plugin", required=True),
            "version": self.string(plugin, "version", "plugin", required=True),
            "description": self.string(plugin, "description", "plugin", default="") or "",
            "world": self.string(plugin, "world", "plugin"),
            "stdio": self.string(caps, "stdio", "capabilities", default="log"),
            "limits": self.limits(data.get("limits", {})),
        }
        declarations = {  # each kind reads its own key
            key: cap.parse_declared(caps[key], f"capabilities.{key}", self.problem)
            for key, cap in kinds.items()
            if key in caps
        }
        # Fields that were missing or of the wrong TOML type were reported above;
        # the value rules run on the rest, the same rules as for Manifest(...).
        self.problems.extend(
            _value_problems({k: v for k, v in core.items() if v is not None}, declarations)
        )
        if self.problems:
            raise ManifestError(self.source, self.problems)
        return Manifest(**core, declarations=declarations)

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


def _value_problems(values: dict[str, Any], declarations: Mapping[str, Any]) -> list[str]:
    """Every rule a manifest's values must follow, keyed as in ``wasmplug.toml``.

    ``values`` maps the :class:`Manifest` attributes that are not declarations to
    values; absent ones are not checked (the TOML parser has already reported them).
    Each declaration is checked by the kind that owns its manifest key.
    """
    out: list[str] = []

    def single(attr: str, key: str, check: Callable[[Any], str | None]) -> None:
        if attr in values:
            error = check(values[attr])
            if error:
                out.append(f"{key}: {error}")

    single("name", "plugin.name", _check_name)
    single("version", "plugin.version", _check_version)
    single("description", "plugin.description", _check_text)
    single("world", "plugin.world", lambda v: None if v is None else _check_text(v))
    for key, value in declarations.items():
        cap = declared_kind(key)
        if cap is None:
            out.append(f"capabilities.{key}: unknown key")
        else:
            out.extend(cap.declared_problems(value, f"capabilities.{key}"))
    single("stdio", "capabilities.stdio", _check_stdio)
    single("limits", "limits", _check_limits)
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
