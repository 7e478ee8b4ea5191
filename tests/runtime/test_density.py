"""What thousands of loaded plugins share, and what each one holds (issue 11's density goal).

The speed and RSS figures are in benchmarks/bench_instances.py; these tests pin the
structure that makes them: per-component tables shared by every load of a
component, slotted per-plugin objects, nothing made before it is needed, and a
bound on the Python bytes one more loaded plugin costs (tracemalloc counts are
deterministic: no timing).
"""

from __future__ import annotations

import gc
import threading
import tracemalloc

from support.tiny_wat import TINY_WAT
from wasmplug import Manifest, Plugin, PluginHost, RestartPolicy
from wasmplug._runtime.supervisor import Supervisor

from .test_faults import FAULTY_WAT


def _load_tiny(host: PluginHost) -> Plugin:
    return host.load(TINY_WAT.encode(), allow_unsigned=True)


def test_loads_of_one_component_share_its_tables(host: PluginHost) -> None:
    a, b = _load_tiny(host), _load_tiny(host)
    assert a is not b
    assert a._component is b._component
    assert a.shape is b.shape
    assert a._export_table is b._export_table
    assert a._spec is b._spec
    assert a._linker is b._linker  # nothing to link: one linker for both
    assert a.limits is b.limits
    # ... but each plugin has its own exports, bound to it, and its own instance.
    assert a._exports_list[0] is not b._exports_list[0]
    assert a._exports_list[0].plugin is a
    assert a.call("add", 1, 2) == b.call("add", 3, 4) - 4 == 3


def test_a_plugin_with_host_functions_gets_its_own_linker(host: PluginHost) -> None:
    host.provide("cb", lambda x: x + 1)
    manifest = Manifest(name="faulty", host_interfaces=("cb",))
    tiny = _load_tiny(host)
    a = host.load(FAULTY_WAT.encode(), allow_unsigned=True, manifest=manifest)
    b = host.load(FAULTY_WAT.encode(), allow_unsigned=True, manifest=manifest)
    assert a._linker is not b._linker
    assert a._linker is not tiny._linker
    assert a._spec is not b._spec
    assert a._export_table is b._export_table
    assert (a.call("call-cb", 1), b.call("call-cb", 2)) == (2, 3)


def test_per_plugin_objects_have_no_instance_dict(host: PluginHost) -> None:
    plugin = _load_tiny(host)
    [inst] = plugin._pool.live()
    for obj in (plugin, inst, plugin._pool, plugin._supervisor, plugin._spec):
        assert not hasattr(obj, "__dict__"), type(obj).__name__


def test_nothing_is_made_before_it_is_needed(host: PluginHost) -> None:
    plugin = _load_tiny(host)
    assert plugin._exports_view is None
    sup = plugin._supervisor
    assert sup._faults is None
    assert sup._window is None
    assert sup.faults == {}
    [inst] = plugin._pool.live()
    assert inst._host_reps is None
    assert plugin.exports.add(2, 3) == 5
    assert plugin._exports_view is plugin.exports  # built once


def test_the_exports_view_is_built_once_under_threads(host: PluginHost) -> None:
    plugin = _load_tiny(host)
    seen: list[object] = []
    barrier = threading.Barrier(4)

    def build() -> None:
        barrier.wait(timeout=10)
        seen.append(plugin.exports)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(seen) == 4
    assert all(v is seen[0] for v in seen)


def test_supervisor_faults_count_from_the_first_fault() -> None:
    sup = Supervisor(RestartPolicy(max_faults=3, window_s=60.0))
    assert sup.faults == {}
    sup.record("trap", "boom", "add")
    sup.record("trap", "boom", "add")
    sup.record("timeout", "slow", None)
    assert sup.faults == {"trap": 2, "timeout": 1}
    assert sup.quarantined


def test_python_bytes_per_loaded_plugin_are_bounded(host: PluginHost) -> None:
    """One more loaded tiny plugin costs about 2.8 KiB of Python objects (wasmtime's
    store and instance add about 7 KiB): a per-plugin dict, set or closure that
    creeps back in shows up here."""
    n = 200
    keep = [_load_tiny(host) for _ in range(10)]  # compiled, host warmed up
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        keep += [_load_tiny(host) for _ in range(n)]
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    per_plugin = sum(s.size_diff for s in after.compare_to(before, "filename")) / n
    assert per_plugin < 3.5 * 1024, f"{per_plugin:.0f} bytes of Python objects per plugin"
