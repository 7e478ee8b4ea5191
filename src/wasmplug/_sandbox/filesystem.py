"""The filesystem capabilities: directories a plugin declares and the application grants.

``[[capabilities.filesystem]]`` declares a guest path and a mode
(:class:`FilesystemRequest`); ``Grants.filesystem`` maps each guest path to a host
directory (:class:`~wasmplug.DirGrant`). At load, each granted directory is bound
to its identity (:class:`~wasmplug._sandbox.bound_dir.BoundDir`), and overlapping
writable grants are refused; for each instance, the bound directories are
preopened (read-only unless both sides say ``rw``). ``filesystem-write`` is the
write half, asked for next to the read permission it extends.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
from wasmtime import WasiConfig

from wasmplug._jsonstore import Invalid, as_dict, as_list, as_str

from .bound_dir import BoundDir
from .capability import MALFORMED, Capability, Declarations, Permission, Problem, show_value
from .grants import DirGrant, EffectiveSandbox, Grants, Preopen, check_overlaps

__all__ = ["FilesystemRequest", "check_guest_path"]


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


def check_guest_path(path: str) -> str | None:
    """Return why ``path`` is not an acceptable guest path, or ``None`` if it is."""
    if "\0" in path:
        return "contains a NUL byte"
    if not path.startswith("/"):
        return f"{show_value(path)} must be absolute (start with '/')"
    if ".." in path.split("/"):
        return f"{show_value(path)} must not contain '..'"
    if posixpath.normpath(path) != path and path != "/":
        return f"{show_value(path)} is not normalised (use {show_value(posixpath.normpath(path))})"
    return None


def _toml_string(
    table: dict[str, Any], key: str, where: str, problem: Problem, default: str | None
) -> str | None:
    value = table.get(key, default)
    if value is None:
        problem(f"{where}.{key}", "is required")
    elif not isinstance(value, str):
        problem(f"{where}.{key}", f"must be a string, got {type(value).__name__}")
        return None
    return value


class _FilesystemRead(Capability):
    """Directories: ``[[capabilities.filesystem]]`` (guest path, mode), granted as
    ``Grants.filesystem`` (guest path → :class:`DirGrant`), preopened per instance."""

    __slots__ = ()
    manifest_key = "filesystem"
    grant_key = "filesystem"
    cli_prefix = "fs"
    cli_usage = "fs:/guest=/host[:rw]"

    @property
    def effective_attr(self) -> str:
        return "preopens"

    def parse_declared(self, value: Any, where: str, problem: Problem) -> tuple[Any, ...]:
        if not isinstance(value, list):
            problem(where, "must be an array of tables ([[capabilities.filesystem]])")
            return ()
        out: list[FilesystemRequest] = []
        keys = {"guest-path", "mode", "description"}
        for i, entry in enumerate(value):
            at = f"{where}[{i}]"
            if not isinstance(entry, dict):
                problem(at, f"must be a table, got {type(entry).__name__}")
                out.append(MALFORMED)
                continue
            for unknown in sorted(set(entry) - keys):
                problem(f"{at}.{unknown}", f"unknown key (known: {', '.join(sorted(keys))})")
            guest = _toml_string(entry, "guest-path", at, problem, None)
            mode = _toml_string(entry, "mode", at, problem, "ro")
            description = _toml_string(entry, "description", at, problem, "") or ""
            if guest is not None and mode is not None:
                out.append(FilesystemRequest(guest, mode, description))  # type: ignore[arg-type]
            else:  # reported by _toml_string
                out.append(MALFORMED)
        return tuple(out)

    def check_declared(self, item: str) -> str | None:
        return check_guest_path(item)

    def declared_problems(self, value: Any, where: str) -> list[str]:
        if isinstance(value, str) or not isinstance(value, tuple):
            return [f"{where}: must be an array of tables, got {type(value).__name__}"]
        out: list[str] = []
        seen: set[str] = set()
        for i, req in enumerate(value):
            at = f"{where}[{i}]"
            if req is MALFORMED:  # reported by parse_declared
                continue
            if not isinstance(req, FilesystemRequest):
                out.append(f"{at}: must be a FilesystemRequest, got {type(req).__name__}")
                continue
            if req.mode not in ("ro", "rw"):
                out.append(f"{at}.mode: must be 'ro' or 'rw', got {show_value(req.mode)}")
            if not isinstance(req.description, str):
                out.append(f"{at}.description: must be a string")
            error = (
                self.check_declared(req.guest_path)
                if isinstance(req.guest_path, str)
                else f"must be a string, got {type(req.guest_path).__name__}"
            )
            if error:
                out.append(f"{at}.guest-path: {error}")
            elif req.guest_path in seen:
                out.append(f"{at}.guest-path: {show_value(req.guest_path)} is requested twice")
            else:
                seen.add(req.guest_path)
        return out

    def show_declared(self, declared: tuple[Any, ...]) -> list[str]:
        return [f"{r.guest_path} ({r.mode})" for r in declared]

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        out: list[Permission] = []
        for req in self.declared_in(manifest):
            out.append(Permission(self, req.guest_path, req.description))
            if req.mode == "rw":
                out.append(Permission(Capability.FILESYSTEM_WRITE, req.guest_path, req.description))
        return out

    def convert_grant(self, value: Mapping[str, DirGrant | str | os.PathLike[str]]) -> Any:
        return {
            guest: v if isinstance(v, DirGrant) else DirGrant(Path(v), "ro")
            for guest, v in value.items()
        }

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> dict[str, DirGrant]:
        out: dict[str, DirGrant] = {}
        for guest, spec in as_dict(value, where).items():
            at = f"{where}.{guest}"
            if toml:  # grants file: "/srv/data" or "/srv/data:rw"
                spec = as_str(spec, at)
                host, _, mode = spec.rpartition(":")
                if mode not in ("ro", "rw") or not host:
                    host, mode = spec, "ro"
            else:  # grant store: [host path, mode]
                pair = as_list(spec, at)
                if len(pair) != 2:
                    raise Invalid(f"{at}: expected [host path, mode], got {len(pair)} items")
                host, mode = as_str(pair[0], f"{at}[0]"), as_str(pair[1], f"{at}[1]")
            if mode not in ("ro", "rw"):
                raise Invalid(f"{at}: mode must be 'ro' or 'rw', got {mode!r}")
            out[guest] = DirGrant(Path(host), mode)  # type: ignore[arg-type]
        return out

    def grant_to_data(self, value: Mapping[str, DirGrant]) -> Any:
        return {k: [str(v.host_path), v.mode] for k, v in value.items()}

    def merge(self, earlier: Mapping[str, DirGrant], answer: Mapping[str, DirGrant]) -> Any:
        return {**earlier, **answer}

    def show_grant(self, value: Mapping[str, DirGrant], *, show_values: bool = False) -> list[str]:
        return [f"filesystem {k} -> {v.host_path} ({v.mode})" for k, v in value.items()]

    def parse_cli_grant(self, text: str, current: Any) -> Any:
        guest, eq, host = text.partition("=")
        if not eq or not guest or not host:
            raise ValueError("expected /guest=/host")
        mode = "ro"
        if host.endswith((":rw", ":ro")):
            host, mode = host[:-3], host[-2:]
        return {**(current or {}), guest: DirGrant(Path(host), mode)}  # type: ignore[arg-type]

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> Any:
        preopens: list[Preopen] = []
        try:
            for req in self.declared_in(manifest):
                grant = grants.filesystem.get(req.guest_path)
                if grant is None:
                    denied.append(f"filesystem {req.guest_path} ({req.mode}): not granted")
                    continue
                writable = req.mode == "rw" and grant.mode == "rw"
                if req.mode == "rw" and not writable:
                    denied.append(
                        f"filesystem {req.guest_path}: write access not granted (read-only)"
                    )
                directory = BoundDir(grant.host_path, req.guest_path)
                preopens.append(Preopen(grant.host_path, req.guest_path, writable, directory))
            check_overlaps(preopens)
        except BaseException:
            self.release(preopens)
            raise
        return tuple(preopens)

    def configure_wasi(self, config: WasiConfig, effective: tuple[Preopen, ...]) -> None:
        for p in effective:
            p.directory.preopen(config, writable=p.writable)

    def release(self, effective: Any) -> None:
        for p in effective:
            p.directory.close()

    def to_wire(self, effective: tuple[Preopen, ...]) -> Any:
        # With the identity bound at load: the worker binds the path again and
        # refuses it unless it is still that directory (see _sandbox.bound_dir).
        return [
            [
                str(p.host_path),
                p.guest_path,
                p.writable,
                p.directory.real_path,
                *p.directory.identity(),
            ]
            for p in effective
        ]

    def from_wire(self, data: Any) -> Any:
        preopens: list[Preopen] = []
        try:
            for host, guest, writable, real, dev, ino in data:
                bound = BoundDir(Path(host), guest, expect=(real, dev, ino))
                preopens.append(Preopen(Path(host), guest, bool(writable), bound))
        except BaseException:
            self.release(preopens)
            raise
        return tuple(preopens)


class _FilesystemWrite(Capability):
    """Write access to a declared directory: asked for by :class:`_FilesystemRead`
    (``mode = "rw"``) and granted by a :class:`DirGrant` with ``mode="rw"``."""

    __slots__ = ()

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        return []  # listed by FILESYSTEM_READ, next to the read permission it extends

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        if isinstance(grants, EffectiveSandbox):
            return any(p.writable for p in grants.preopens)
        return any(g.mode == "rw" for g in grants.filesystem.values())
