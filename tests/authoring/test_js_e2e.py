"""End to end: the same host loads a JavaScript component built with componentize-js.

The ``greeter-js`` plugin (``tests/plugins/greeter-js``) imports the same
``demo:plugin/host@0.1.0`` interface as the Python ``greeter``. A cached build needs
neither node nor npm; without one, the test is skipped only when ``node`` or ``npm`` is
not on ``PATH`` (and in CI, where ``scripts/test.sh`` installs them, a skip fails the run).

Measured on the development machine (2 busy x86-64 cores, Linux, node 20.20,
componentize-js 0.23.0, wasmtime-py 50):

- first ``npm install`` of the pinned tooling: 26-28 s (156 packages, ~385 MB, once
  per machine, into ``user_cache_dir("wasmplug")/npm/<pins hash>/``);
- componentize-js build: ~11 s (35 s the very first time, cold), then a build-cache
  hit: ~1 ms, needing neither node nor npm;
- component: 12.0 MB (StarlingMonkey embedded); besides ``demo:plugin/host`` it
  imports ``wasi:cli``/``clocks``/``random``/``filesystem``/``io`` 0.2.12 (linked by
  ``add_wasip2``, no capabilities) and ``wasi:http`` 0.2.10 (linked as traps);
- Cranelift compile: 15-29 s, cached on disk by ``PluginHost`` (default cache dir);
  later processes deserialize it in ~0.2 s;
- ``load`` with the component in memory: ~35-50 ms (hashing, shape, linking), of
  which instantiation is ~0.4 ms; first call on a fresh instance ~2 ms, then
  ~0.11 ms per ``greet`` (including the host ``log`` call); ``spin`` times out at
  its 500 ms budget and the next ``greet`` (on a new instance) takes ~2.5 ms.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.plugins import GREETER_HOST_INTERFACE, build_greeter_js
from wasmplug import BuildError, ErrorResult, Limits, Manifest, Plugin, PluginHost, PluginTimeout

pytestmark = [pytest.mark.slow]

NOOP_HOST = {"log": lambda msg: None, "get-config": lambda key: None}


@pytest.fixture(scope="module")
def greeter_js_wasm() -> Path:
    """The built greeter-js component (first build ~1 min with the npm install; cached)."""
    try:
        return build_greeter_js()
    except BuildError:
        if shutil.which("node") is None or shutil.which("npm") is None:
            pytest.skip("no cached greeter-js build, and node/npm are not on PATH to build it")
        raise


@pytest.fixture(scope="module")
def logged() -> list[str]:
    """Messages the greeter-js plugin sent to the host's ``log``."""
    return []


@pytest.fixture(scope="module")
def greeter_js(
    shared_host: PluginHost, greeter_js_wasm: Path, logged: list[str]
) -> Iterator[Plugin]:
    """greeter-js loaded into the shared host, with a recording ``log`` and a 200 ms timeout."""
    shared_host.provide(
        GREETER_HOST_INTERFACE, {"log": logged.append, "get-config": NOOP_HOST["get-config"]}
    )
    try:
        plugin = shared_host.load(
            greeter_js_wasm,
            allow_unsigned=True,
            manifest=Manifest(name="greeter-js", host_interfaces=(GREETER_HOST_INTERFACE,)),
            # the budget also covers the calls that follow: room for a loaded machine
            limits=Limits(timeout_ms=500),
        )
        try:
            yield plugin
        finally:
            plugin.close()
    finally:
        shared_host.provide(GREETER_HOST_INTERFACE, NOOP_HOST)


def test_greet_calls_the_host(greeter_js: Plugin, logged: list[str]) -> None:
    logged.clear()
    assert greeter_js.call("greet", "Ada") == "Hello, Ada!"
    assert greeter_js.exports.greet("Bob") == "Hello, Bob!"
    assert logged == ["greeting Ada", "greeting Bob"]


def test_divide_ok_and_err(greeter_js: Plugin) -> None:
    assert greeter_js.call("divide", 7, 2) == 3
    with pytest.raises(ErrorResult) as info:
        greeter_js.call("divide", 1, 0)
    assert info.value.value == "division by zero"
    assert greeter_js.call("divide", 9, 3) == 3, "an err result is not a fault"


def test_spin_times_out_and_the_plugin_recovers(greeter_js: Plugin, logged: list[str]) -> None:
    with pytest.raises(PluginTimeout):
        greeter_js.call("spin")
    logged.clear()
    assert greeter_js.call("greet", "again") == "Hello, again!"
    assert logged == ["greeting again"], "the fresh instance is linked to the same host"
