"""Shared fixtures.

Heavy artifacts (the componentize-py ``greeter`` plugin: ~10 s to build, ~9 s to
compile) are built once per session and cached on disk under the user cache
dir, so a warm run pays neither cost. Everything else uses tiny WAT components.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.plugins import GREETER_HOST_INTERFACE, build_greeter
from wasmplug import Grants, Manifest, Plugin, PluginHost

pytest_plugins = ["support.skip_policy", "support.oci_registry", "support.fakeworker", "pytester"]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    """A fresh host with a private compile cache (WAT components compile in ms)."""
    with PluginHost(cache_dir=tmp_path / "cache") as h:
        yield h


@pytest.fixture(scope="session")
def greeter_wasm() -> Path:
    """Path of the built greeter component (built once, cached across sessions)."""
    return build_greeter()


@pytest.fixture(scope="session")
def shared_host() -> Iterator[PluginHost]:
    """A host shared by tests that load the big componentize-py plugin.

    It uses the default on-disk compile cache, so the ~9 s Cranelift compile
    happens once per machine, and the in-memory component cache makes later
    loads in the session cost one instantiation (~2 ms).
    """
    with PluginHost() as h:
        h.provide(GREETER_HOST_INTERFACE, {"log": lambda msg: None, "get-config": lambda key: None})
        yield h


def greeter_manifest(**capabilities: object) -> Manifest:
    """The greeter's manifest, declaring its host interface plus ``capabilities``."""
    return Manifest(
        name="greeter",
        version="0.1.0",
        host_interfaces=(GREETER_HOST_INTERFACE,),
        **capabilities,  # type: ignore[arg-type]
    )


@pytest.fixture
def load_greeter(shared_host: PluginHost, greeter_wasm: Path) -> Iterator[object]:
    """``load_greeter(grants=..., manifest=..., **kwargs) -> Plugin``; closed after the test."""
    loaded: list[Plugin] = []

    def load(
        *, grants: Grants | None = None, manifest: Manifest | None = None, **kwargs: object
    ) -> Plugin:
        plugin = shared_host.load(
            greeter_wasm,
            allow_unsigned=True,
            manifest=manifest or greeter_manifest(),
            grants=grants,
            **kwargs,  # type: ignore[arg-type]
        )
        loaded.append(plugin)
        return plugin

    yield load
    for plugin in loaded:
        plugin.close()
