"""Fixtures for the bridge tests: one component with every type, in both directions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.bridge import every_type_plugin, hooks, seen
from wasmplug import Plugin


@pytest.fixture(scope="module", params=["inprocess", "process"])
def bridge(request: pytest.FixtureRequest) -> Iterator[Plugin]:
    """The every-type component, in each isolation tier: values must cross a process
    boundary with the same conversion and the same errors as in-process."""
    with every_type_plugin(request.param) as plugin:
        yield plugin


@pytest.fixture
def plugin(bridge: Plugin) -> Iterator[Plugin]:
    """The shared plugin, with the host function log and hooks cleared."""
    seen.clear()
    hooks.clear()
    yield bridge
    hooks.clear()
    assert not bridge.metrics().faults, "a test faulted the shared plugin"
