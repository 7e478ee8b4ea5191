"""Discovery of installable plugins: directories and the wasmplug.plugins entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.registry import HOST_IFACE, component, packed, signed, write
from wasmplug._errors import (
    NameConflictError,
    PluginNotFoundError,
)
from wasmplug._trust.registry import Registry


def test_discover_from_a_directory(tmp_path: Path, reg: Registry, pair: Any) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write(plugins, "a.wasm", signed(packed("acme:a", "1.2.0"), pair))
    write(plugins, "b.wasm", packed("b", "0.1.0", imports=(HOST_IFACE,)))
    write(plugins, "garbage.wasm", b"nope")
    write(plugins, "bare.wasm", component())
    write(plugins, "notes.txt", b"ignored")
    errors: list[str] = []
    found = reg.discover(
        [plugins, tmp_path / "absent"],
        entry_points=False,
        on_error=lambda where, e: errors.append(f"{Path(where).name}: {type(e).__name__}"),
    )
    assert [(i.name, i.version, i.source, i.signed) for i in found] == [
        ("acme:a", "1.2.0", "dir", True),
        ("b", "0.1.0", "dir", False),
    ]
    assert found[0].key_id == pair.key_id.hex()  # claimed, not verified
    assert found[1].imports == (HOST_IFACE,)
    assert found[1].manifest.name == "b"
    assert sorted(errors) == [
        "absent: FileNotFoundError",
        "bare.wasm: ManifestError",
        "garbage.wasm: InvalidComponentError",
    ]
    assert len(reg.discover(str(plugins), entry_points=False, on_error=print)) == 2
    assert not reg.root.exists()  # discovery writes nothing


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pair: Any) -> Iterator[Path]:
    """A throwaway distribution on sys.path shipping a signed plugin as package data."""
    site = tmp_path / "site"
    pkg = site / "wasmplug_test_dist_pkg"
    pkg.mkdir(parents=True)
    (pkg / "hello.wasm").write_bytes(signed(packed("hello", "1.0.0"), pair))
    (pkg / "__init__.py").write_text(
        "from importlib.resources import files\n"
        "PLUGIN = files(__name__) / 'hello.wasm'\n"
        "def plugin():\n    return str(files(__name__) / 'hello.wasm')\n"
    )
    meta = site / "wasmplug_test_dist-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wasmplug-test-dist\nVersion: 1.0\n"
    )
    (meta / "entry_points.txt").write_text(
        "[wasmplug.plugins]\n"
        "broken = wasmplug_test_dist_pkg:missing\n"  # first: the ones after it still count
        "hello = wasmplug_test_dist_pkg:PLUGIN\n"
        "hello-callable = wasmplug_test_dist_pkg:plugin\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield pkg
    sys.modules.pop("wasmplug_test_dist_pkg", None)


def test_discover_and_install_from_entry_points(
    dist: Path, tmp_path: Path, reg: Registry, install: Any, pair: Any
) -> None:
    errors: list[tuple[str, str]] = []
    found = [
        i
        for i in reg.discover(on_error=lambda where, e: errors.append((where, type(e).__name__)))
        if i.origin.endswith("(wasmplug-test-dist)")
    ]
    assert [(i.name, i.source, i.path) for i in found] == [
        ("hello", "entry-point", dist / "hello.wasm"),
        ("hello", "entry-point", dist / "hello.wasm"),
    ]
    broken = "entry point broken = wasmplug_test_dist_pkg:missing (wasmplug-test-dist)"
    assert (broken, "AttributeError") in errors
    assert (
        found[0].origin == "entry point hello = wasmplug_test_dist_pkg:PLUGIN (wasmplug-test-dist)"
    )
    info = install("hello")  # NAME resolved by discovery
    assert (info.name, info.source) == ("hello", "registry")
    assert info.sha256 == found[0].sha256
    with pytest.raises(PluginNotFoundError, match="no plugin 'nothing-here'"):
        install("nothing-here")
    # A directory offering a different build of the same version makes NAME ambiguous.
    other = tmp_path / "other"
    other.mkdir()
    write(other, "hello.wasm", packed("hello", "1.0.0", n=2))
    with pytest.raises(NameConflictError, match="different files"):
        install("hello", search_dirs=[other])
    write(other, "hello.wasm", signed(packed("hello", "1.1.0", n=2), pair))
    assert install("hello@1", search_dirs=[other]).version == "1.1.0"
