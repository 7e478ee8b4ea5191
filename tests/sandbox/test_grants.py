"""Declared ∩ granted: what a plugin actually gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmplug import CapabilityError, DirGrant, FilesystemRequest, Grants, Limits, Manifest
from wasmplug._sandbox.capabilities import resolve


def manifest(**kwargs: object) -> Manifest:
    return Manifest(name="t", **kwargs)  # type: ignore[arg-type]


def test_nothing_declared_means_nothing_granted(tmp_path: Path) -> None:
    sandbox = resolve(manifest(), Grants(filesystem={"/data": tmp_path}, env={"K": "v"}))
    assert sandbox.preopens == ()
    assert sandbox.env == ()


def test_declared_but_not_granted_is_denied_and_noted() -> None:
    m = manifest(env=("K",), filesystem=(FilesystemRequest("/data", "ro"),))
    sandbox = resolve(m, Grants())
    assert sandbox.preopens == ()
    assert sandbox.env == ()
    assert any("env K" in d for d in sandbox.denied)
    assert any("/data" in d for d in sandbox.denied)


def test_intersection(tmp_path: Path) -> None:
    m = manifest(env=("A", "B"), filesystem=(FilesystemRequest("/data", "ro"),))
    sandbox = resolve(m, Grants(env={"A": "1", "C": "3"}, filesystem={"/data": tmp_path}))
    assert sandbox.env == (("A", "1"),)
    assert [(p.guest_path, p.host_path, p.writable) for p in sandbox.preopens] == [
        ("/data", tmp_path.absolute(), False)
    ]


@pytest.mark.parametrize(
    ("declared", "granted", "writable"),
    [("ro", "ro", False), ("ro", "rw", False), ("rw", "ro", False), ("rw", "rw", True)],
    ids=["ro-ro", "ro-rw", "rw-ro", "rw-rw"],
)
def test_mode_is_the_stricter_of_both(
    tmp_path: Path, declared: str, granted: str, writable: bool
) -> None:
    m = manifest(filesystem=(FilesystemRequest("/d", declared),))  # type: ignore[arg-type]
    sandbox = resolve(m, Grants(filesystem={"/d": DirGrant(tmp_path, granted)}))  # type: ignore[arg-type]
    assert sandbox.preopens[0].writable is writable


def test_granted_directory_must_exist(tmp_path: Path) -> None:
    m = manifest(filesystem=(FilesystemRequest("/d", "ro"),))
    with pytest.raises(CapabilityError, match="not a directory"):
        resolve(m, Grants(filesystem={"/d": tmp_path / "missing"}))


def test_limits_are_capped_by_the_application() -> None:
    app = Limits(timeout_ms=100, memory_bytes=64 * 2**20)
    asked = Limits(timeout_ms=1000, memory_bytes=16 * 2**20, table_elements=None)
    effective = asked.capped_by(app)
    assert effective.timeout_ms == 100  # the plugin cannot raise the app's ceiling
    assert effective.memory_bytes == 16 * 2**20  # but may ask for less
    assert Limits.unlimited().capped_by(app) == app


@pytest.mark.parametrize("bad", [0, -1, True, "5"], ids=["zero", "negative", "bool", "str"])
def test_limits_validate(bad: object) -> None:
    with pytest.raises(ValueError, match="timeout_ms"):
        Limits(timeout_ms=bad)  # type: ignore[arg-type]
