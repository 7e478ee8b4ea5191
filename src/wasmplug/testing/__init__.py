"""Helpers to test wasmplug plugins, and a pytest plugin that uses them.

The pytest plugin (``wasmplug.testing._pytest_plugin``) is registered through the
``pytest11`` entry point, so installing wasmplug is enough: a plugin project's tests
(``wasmplug new`` generates some) can ask for these fixtures without a ``conftest.py``:

``wasmplug_project``
    The plugin project directory: the ``wasmplug_project`` ini option if set,
    else the nearest directory above the test file that holds a
    ``wasmplug.toml``. Override the fixture to point elsewhere.
``wasmplug_component``
    The project built and packed (session-scoped; the component build is cached
    by content, so only the first run of a change pays the 10-40 s).
``wasmplug_host``
    A fresh :class:`~wasmplug.PluginHost`, closed after the test.
``load_plugin``
    A factory, ``load_plugin(project=None, *, grants=None, limits=None,
    provide=None, **kwargs)``, that builds (cached) and loads a project's plugin
    into ``wasmplug_host``, unsigned, and closes it after the test.

A test of a plugin that imports a host interface, with a recording fake::

    from wasmplug import Limits, PluginTimeout
    from wasmplug.testing import RecordingHost, assert_faults

    def test_greet_logs(load_plugin):
        log = RecordingHost()
        plugin = load_plugin(provide={"acme:hello/host@0.1.0": log})
        assert plugin.call("greet", "Ada") == "Hello, Ada!"
        assert log.calls == [("log", ("greeting Ada",))]

    def test_spin_times_out(load_plugin):
        plugin = load_plugin(limits=Limits(timeout_ms=50))
        with assert_faults(PluginTimeout, plugin=plugin):
            plugin.call("spin")

The helpers work without pytest's fixtures too: :func:`build_plugin` builds a
project, :class:`RecordingHost` fakes a host interface, :func:`assert_faults`
checks that a call faults and that the plugin recovers.

Fixture names start with ``wasmplug_`` or are ``load_plugin``, so that they do
not shadow an application's own ``host`` or ``plugin`` fixtures.
"""

from __future__ import annotations

from ._pytest_plugin import Call as Call
from ._pytest_plugin import FaultInfo as FaultInfo
from ._pytest_plugin import RecordingHost as RecordingHost
from ._pytest_plugin import assert_faults as assert_faults
from ._pytest_plugin import build_plugin as build_plugin
from ._pytest_plugin import find_project as find_project

__all__ = [
    "Call",
    "FaultInfo",
    "RecordingHost",
    "assert_faults",
    "build_plugin",
    "find_project",
]
