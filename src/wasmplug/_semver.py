"""Semantic versions: precedence, version specs, and WIT interface compatibility.

Rules follow SemVer 2.0.0 for precedence, Cargo for version specs (``"1.2"``
means ``>=1.2.0, <2.0.0``), and wasmtime's linker for which interface
versions satisfy an import (same major, or same minor for ``0.x``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "SEMVER_RE",
    "interface_version_key",
    "matches_spec",
    "semver_compatible",
    "split_interface",
    "version_key",
]

# Use fullmatch: ``$`` would also accept a trailing newline.
SEMVER_RE = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_SPEC_RE = re.compile(r"(=|\^)?(\d+)(?:\.(\d+)(?:\.(\d+)(-[0-9A-Za-z.-]+)?)?)?")


def version_key(version: str) -> tuple[Any, ...]:
    """A sort key giving semver precedence (build metadata ignored, pre-releases first)."""
    m = SEMVER_RE.fullmatch(version) if isinstance(version, str) else None
    if m is None:
        raise ValueError(f"{version!r} is not a semantic version")
    core = tuple(int(g) for g in m.groups())
    pre = version.split("+", 1)[0].partition("-")[2]
    if not pre:
        return (*core, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (*core, 0, ids)


def matches_spec(version: str, spec: str) -> bool:
    m = _SPEC_RE.fullmatch(spec.strip())
    if m is None:
        raise ValueError(f"{spec!r} is not a version spec like '1.2', '^0.3.1' or '=1.2.3'")
    op, major, minor, patch, pre = m.groups()
    if op == "=":
        return version_key(version) == version_key(spec.strip()[1:])
    key = version_key(version)
    low = (int(major), int(minor or 0), int(patch or 0))
    if key[3] == 0 and (pre is None or key[:3] != low):
        return False  # pre-releases only match a spec naming that pre-release
    if key < version_key(f"{low[0]}.{low[1]}.{low[2]}{pre or ''}"):
        return False
    if low[0] > 0 or minor is None:
        return bool(key[0] == low[0])
    if low[1] > 0 or patch is None:
        return bool(key[:2] == low[:2])
    return bool(key[:3] == low)


_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def split_interface(name: str) -> tuple[str, str | None]:
    base, _, version = name.partition("@")
    return base, version or None


def semver_compatible(wanted: str, offered: str) -> bool:
    """Whether an import of ``wanted`` can be satisfied by ``offered`` (interface names).

    Same package and interface, and versions compatible under Cargo/wasmtime
    semver rules: equal major for ``>=1``, equal minor for ``0.x``, equal patch
    for ``0.0.x``. Unversioned names match only unversioned names.
    """
    wbase, wver = split_interface(wanted)
    obase, over = split_interface(offered)
    if wbase != obase:
        return False
    if wver is None or over is None:
        return wver == over
    wm, om = _VERSION_RE.match(wver), _VERSION_RE.match(over)
    if wm is None or om is None:
        return wver == over
    w, o = tuple(map(int, wm.groups())), tuple(map(int, om.groups()))
    if w[0] > 0:
        return w[0] == o[0]
    if w[1] > 0:
        return o[0] == 0 and w[1] == o[1]
    return o[:2] == (0, 0) and w[2] == o[2]


def interface_version_key(name: str) -> tuple[int, ...]:
    match = _VERSION_RE.match(split_interface(name)[1] or "")
    return tuple(map(int, match.groups())) if match else ()
