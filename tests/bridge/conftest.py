"""Fixtures for the bridge tests: one component with every type, in both directions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wat as w
from support.bridge import HOST, TYPES, echo_funcs, hooks, host_funcs, load, seen
from wasmplug import Plugin, PluginHost


def _host_impl(key: str) -> Callable[[Any], Any]:
    def impl(a: Any) -> Any:
        seen.append((key, a))
        hook = hooks.get(key)
        return a if hook is None else hook(a)

    return impl


@pytest.fixture(scope="module", params=["inprocess", "process"])
def bridge(request: pytest.FixtureRequest) -> Iterator[Plugin]:
    """The every-type component, in each isolation tier: values must cross a process
    boundary with the same conversion and the same errors as in-process."""
    text = w.component(echo_funcs(list(TYPES)), host_funcs(list(TYPES)))
    with PluginHost(cache_dir=False, isolation=request.param, spare_workers=0) as host:
        host.provide(HOST, {f"h-{k}": _host_impl(k) for k in TYPES})
        yield load(host, text)


@pytest.fixture
def plugin(bridge: Plugin) -> Iterator[Plugin]:
    """The shared plugin, with the host function log and hooks cleared."""
    seen.clear()
    hooks.clear()
    yield bridge
    hooks.clear()
    assert not bridge.metrics().faults, "a test faulted the shared plugin"
