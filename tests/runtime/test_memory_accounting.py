"""``PluginHost(memory_accounting=True)``: each in-process plugin's linear memory is
counted by the host's own memory creator (``_bridge/memcreator.py``), and the sandbox
holds exactly as with wasmtime's allocator: out-of-bounds accesses trap (guard
pages), the memory limit is enforced, data survives growth, nothing leaks."""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

import wat
from wasmplug import InstantiationError, Limits, Manifest, Plugin, PluginHost, PluginTrapped
from wasmplug._bridge import memcreator
from wasmplug._bridge.memcreator import MemoryAccounting
from wasmplug._runtime.engine import make_engine
from wat import Func, P

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="memory accounting is tested on Linux"
)

PAGE = 65536
U32 = P("u32")
FUNCS = [
    Func("size", (("x", U32),), U32, "(memory.size)"),
    Func("grow", (("pages", U32),), P("s32"), "(memory.grow (local.get 0))"),
    Func("load", (("addr", U32),), U32, "(i32.load (local.get 0))"),
    # A static offset of 16 MiB: wasmtime leaves out the bounds check and relies on
    # the 32 MiB guard region after the 4 GiB reservation to fault.
    Func("load-far", (("addr", U32),), U32, "(i32.load offset=16777216 (local.get 0))"),
    Func(
        "store",
        (("addr", U32), ("v", U32)),
        U32,
        "(i32.store (local.get 0) (local.get 1)) (local.get 1)",
    ),
]
COMPONENT = wat.component(FUNCS).encode()


def component_with_pages(pages: int) -> bytes:
    """The same component, its memory starting at ``pages`` pages."""
    text = wat.component(FUNCS)
    return text.replace('(memory (export "mem") 1)', f'(memory (export "mem") {pages})').encode()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    with PluginHost(cache_dir=tmp_path / "cache", memory_accounting=True) as h:
        yield h


def accounting(host: PluginHost) -> MemoryAccounting:
    acc = host._services.memory_accounting
    assert acc is not None
    return acc


def gauge(host: PluginHost, name: str = "mem") -> int | None:
    stats = host.stats().get(name)
    assert stats is not None
    return stats.linear_memory_bytes


def load(host: PluginHost, data: bytes = COMPONENT, name: str = "mem", **kw: object) -> Plugin:
    return host.load(data, allow_unsigned=True, manifest=Manifest(name=name), **kw)  # type: ignore[arg-type]


def test_the_gauge_reads_pages_times_64KiB_after_memory_grow(host: PluginHost) -> None:
    plugin = load(host)
    assert gauge(host) == 1 * PAGE
    assert plugin.call("grow", 3) == 1
    assert plugin.call("size", 0) == 4
    assert gauge(host) == 4 * PAGE
    assert plugin.call("grow", 0) == 4  # memory.grow 0 changes nothing
    assert gauge(host) == 4 * PAGE


def test_a_default_host_does_not_count_in_process_memory(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache") as default:
        assert default._services.memory_accounting is None
        load(default)
        assert gauge(default) is None


@pytest.mark.parametrize(
    "export_addr",
    [
        ("load", PAGE),  # the first byte past the accessible page
        ("load", 0xFFFF_FFFC),  # the end of the 4 GiB reservation
        ("load-far", 0xFFFF_FFF0),  # 16 MiB into the guard region after it
        ("store", 2 * PAGE),
    ],
    ids=["past-size", "end-of-reservation", "guard-region", "store-past-size"],
)
def test_out_of_bounds_accesses_still_trap(host: PluginHost, export_addr: tuple[str, int]) -> None:
    export, addr = export_addr
    plugin = load(host)
    args = (addr, 7) if export == "store" else (addr,)
    with pytest.raises(PluginTrapped, match="out of bounds memory access"):
        plugin.call(export, *args)
    assert plugin.call("load", PAGE - 4) == 0  # a fresh instance serves the next call
    assert gauge(host) == 1 * PAGE


def test_the_last_accessible_word_is_readable_and_writable(host: PluginHost) -> None:
    plugin = load(host)
    assert plugin.call("store", PAGE - 4, 0xCAFE) == 0xCAFE
    assert plugin.call("load", PAGE - 4) == 0xCAFE
    assert plugin.call("grow", 1) == 1
    assert plugin.call("store", 2 * PAGE - 4, 9) == 9
    assert plugin.call("load", PAGE - 4) == 0xCAFE


@pytest.mark.parametrize("accounted", [True, False], ids=["accounting", "default"])
def test_the_memory_limit_still_holds(tmp_path: Path, accounted: bool) -> None:
    # The store's limiter is consulted before the creator is asked to grow: past
    # Limits.memory_bytes, memory.grow returns -1 in the guest, with or without it.
    with PluginHost(cache_dir=tmp_path / "cache", memory_accounting=accounted) as h:
        plugin = load(h, limits=Limits(memory_bytes=4 * PAGE))
        assert plugin.call("grow", 3) == 1
        assert plugin.call("grow", 1) == -1
        assert plugin.call("size", 0) == 4
        assert gauge(h) == (4 * PAGE if accounted else None)
        with pytest.raises(InstantiationError, match="exceeds memory limits"):
            load(h, component_with_pages(5), name="big", limits=Limits(memory_bytes=4 * PAGE))


def test_data_survives_a_grow_and_new_pages_are_zero(host: PluginHost) -> None:
    plugin = load(host)
    assert plugin.call("store", 100, 0xDEADBEEF) == 0xDEADBEEF
    assert plugin.call("grow", 8) == 1
    assert plugin.call("load", 100) == 0xDEADBEEF
    assert plugin.call("load", PAGE) == 0
    assert plugin.call("load", 9 * PAGE - 4) == 0
    assert plugin.call("store", 9 * PAGE - 4, 5) == 5
    assert gauge(host) == 9 * PAGE


def test_reset_and_close_bring_the_gauge_down(host: PluginHost) -> None:
    plugin = load(host)
    acc = accounting(host)
    assert plugin.call("grow", 15) == 1
    assert gauge(host) == 16 * PAGE
    plugin.reset()  # the idle instance (and its memory) is gone
    assert acc.bytes_of(plugin) == 0
    assert plugin.call("size", 0) == 1  # a fresh instance, a fresh memory
    assert gauge(host) == 1 * PAGE
    plugin.close()
    assert (acc.bytes_of(plugin), acc.memories_of(plugin)) == (0, 0)
    assert plugin not in acc._tallies


def test_a_trap_discards_the_instance_and_its_memory(host: PluginHost) -> None:
    plugin = load(host)
    assert plugin.call("grow", 7) == 1
    with pytest.raises(PluginTrapped):
        plugin.call("load", 0xFFFF_FFFC)
    assert accounting(host).memories_of(plugin) == 0
    assert plugin.call("size", 0) == 1
    assert gauge(host) == 1 * PAGE


def test_each_instance_of_a_pool_is_counted(host: PluginHost) -> None:
    plugin = load(host, pool_size=3)
    barrier = threading.Barrier(3)

    def grab() -> None:  # three calls at once need three instances
        barrier.wait(timeout=10)
        plugin.call("size", 0)

    threads = [threading.Thread(target=grab) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    instances = plugin.metrics().instances
    assert instances >= 1
    assert gauge(host) == instances * PAGE
    assert accounting(host).memories_of(plugin) == instances


def test_concurrent_instantiation_is_attributed_to_the_right_plugin(host: PluginHost) -> None:
    small = load(host, component_with_pages(1), name="small")
    big = load(host, component_with_pages(3), name="big")
    acc = accounting(host)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def churn(plugin: Plugin, pages: int) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(40):
                plugin.reset()
                assert plugin.call("size", 0) == pages
                # This thread's plugin has exactly one instance now; the other
                # thread's instances, made meanwhile, must not be counted here.
                assert (acc.memories_of(plugin), acc.bytes_of(plugin)) == (1, pages * PAGE)
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=churn, args=(small, 1)),
        threading.Thread(target=churn, args=(big, 3)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert (gauge(host, "small"), gauge(host, "big")) == (1 * PAGE, 3 * PAGE)
    assert acc.memories_of(None) == 0  # nothing went unattributed


def _maps() -> list[tuple[int, int]]:
    out = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            out.append((lo, hi))
    return out


def _memfds() -> set[str]:
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (os.listdir's own fd, say)
        if target.startswith("/memfd:"):
            fds.add(f"{fd}:{target}")
    return fds


def test_no_mapping_or_memfd_leaks_after_200_load_close_cycles(host: PluginHost) -> None:
    acc = accounting(host)
    memfds = _memfds()
    ours: set[tuple[int, int]] = set()
    for i in range(200):
        plugin = load(host)
        assert plugin.call("grow", i % 4) == 1
        ours |= {
            (mem.start, mem.start + mem.length)
            for mem, owner in list(memcreator._MEMORIES.values())
            if owner is acc
        }
        plugin.close()
        assert acc.memories_of(plugin) == 0
    assert ours  # the test saw the memories it made
    assert acc._tallies == {}
    live = _maps()
    overlapping = [(lo, hi) for lo, hi in ours for a, b in live if a < hi and b > lo]
    assert overlapping == []
    # No copy-on-write image (or anything else) of ours left open. Not equality: the
    # collector may close another test's memfd meanwhile (a fd number closed and
    # reused by one of ours is missed, a leak of 200 is not).
    assert _memfds() - memfds == set()


def test_a_memory_the_kernel_refuses_is_an_instantiation_error(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The creator's failure travels back through wasmtime as an error, never as a
    # Python exception inside a ctypes callback (which wasmtime would read as success).
    def refused(*_args: object) -> int:
        ctypes.set_errno(errno.ENOMEM)
        return memcreator._MAP_FAILED  # type: ignore[no-any-return]

    monkeypatch.setattr(memcreator, "_mmap", refused)
    with pytest.raises(InstantiationError, match=r"could not create a linear memory.*mmap"):
        load(host)
    assert accounting(host)._tallies == {}  # nothing was counted for the failed load


def test_a_grow_the_kernel_refuses_is_minus_one_in_the_guest(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = load(host)
    assert plugin.call("grow", 1) == 1

    def refused(*_args: object) -> int:
        ctypes.set_errno(errno.ENOMEM)
        return -1

    monkeypatch.setattr(memcreator, "_mprotect", refused)
    assert plugin.call("grow", 1) == -1  # an allocation failure, as past a limit
    assert plugin.call("size", 0) == 2  # the instance lives on, unchanged
    assert gauge(host) == 2 * PAGE
    monkeypatch.undo()
    assert plugin.call("grow", 1) == 2
    assert gauge(host) == 3 * PAGE


def test_process_isolated_plugins_of_an_accounting_host_still_load(tmp_path: Path) -> None:
    # The worker must build the host's kind of engine (copy-on-write images off), or
    # the code the host compiled would not load there.
    with PluginHost(cache_dir=tmp_path / "cache", memory_accounting=True, spare_workers=0) as h:
        plugin = load(h, isolation="process")
        assert plugin.call("grow", 2) == 1
        assert gauge(h) == 3 * PAGE  # read from the worker's memory map
        assert accounting(h).memories_of(plugin) == 0  # none of it is in this process


@pytest.fixture
def default_sigint() -> Iterator[None]:
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_inside_the_creator_is_raised_after_instantiation(
    default_sigint: None, tmp_path: Path
) -> None:
    # A SIGINT handled while wasmtime is inside the creator's callback must not
    # raise there (ctypes would drop it and hand wasmtime a bogus "success"): it is
    # deferred, and KeyboardInterrupt comes once instantiation has unwound.
    with PluginHost(cache_dir=tmp_path / "cache", memory_accounting=True) as h:
        acc = accounting(h)
        owner = acc._owner

        def interrupted() -> object:
            signal.raise_signal(signal.SIGINT)  # handled at the next bytecode, in here
            return owner()

        acc._owner = interrupted
        with pytest.raises(KeyboardInterrupt):
            load(h)
        acc._owner = owner
        assert acc._tallies == {}  # the half-made instance and its memory are gone
        plugin = load(h)
        assert plugin.call("grow", 1) == 1
        assert gauge(h) == 2 * PAGE


def test_ctrl_c_inside_a_grow_is_raised_after_the_call(
    default_sigint: None, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = load(host)
    acc = accounting(host)
    grown = acc._grown

    def interrupted(memory: object, delta: int) -> None:
        signal.raise_signal(signal.SIGINT)
        grown(memory, delta)  # type: ignore[arg-type]

    monkeypatch.setattr(acc, "_grown", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plugin.call("grow", 2)
    monkeypatch.undo()
    # An interrupted call discards its instance (fault class "interrupted"): the
    # grown memory went with it, and the next call has a fresh one.
    assert plugin.metrics().faults == {"interrupted": 1}
    assert plugin.call("size", 0) == 1
    assert (acc.memories_of(plugin), gauge(host)) == (1, 1 * PAGE)


def test_a_closed_host_releases_its_creator(tmp_path: Path) -> None:
    # wasmtime calls the creator's finalizer when the engine goes; the accounting
    # (and its registration, which routes the creator's callbacks) goes with it.
    def use_a_host() -> weakref.ref[MemoryAccounting]:
        with PluginHost(cache_dir=tmp_path / "cache", memory_accounting=True) as h:
            assert load(h).call("grow", 1) == 1
            return weakref.ref(accounting(h))

    acc = use_a_host()
    gc.collect()
    assert acc() is None
    assert all(a is not acc() for a in memcreator._ACCOUNTINGS.values())


def test_memory_accounting_and_instance_slots_do_not_combine(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="memory_accounting cannot be combined"):
        PluginHost(cache_dir=tmp_path / "cache", memory_accounting=True, instance_slots=2)


def test_the_compile_cache_keeps_the_two_engines_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Copy-on-write memory images are off on an accounting host's engine, and
    # wasmtime refuses a component compiled with the other setting ("compiled with
    # memory initialization with CoW but it is not enabled for the host"): the cache
    # key must differ, or the two hosts would recompile over each other's entry.
    caplog.set_level(logging.WARNING, logger="wasmplug")
    with PluginHost(cache_dir=tmp_path / "cache") as default:
        assert load(default).call("size", 0) == 1
    assert [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()] == []
    with PluginHost(cache_dir=tmp_path / "cache", memory_accounting=True) as accounted:
        assert load(accounted).call("size", 0) == 1
        assert gauge(accounted) == PAGE
    with PluginHost(cache_dir=tmp_path / "cache") as default:
        assert load(default).call("size", 0) == 1
    assert [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()] == []


# Core modules straight on an accounting engine: the proposals wasmtime enables there
# (memory64, multi-memory) place memories through the creator too, and each must keep
# the promise the compiled code relies on. (result: an int, or "trap").
_MEM64 = """(module (memory i64 1)
  (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0)))
  (func (export "load") (param i64) (result i32) (i32.load (local.get 0)))
  (func (export "load-far") (param i64) (result i32) (i32.load offset=16777216 (local.get 0))))"""
_MULTI = """(module (memory 1) (memory $b 2)
  (func (export "grow") (param i32) (result i32) (memory.grow $b (local.get 0)))
  (func (export "load") (param i32) (result i32) (i32.load $b (local.get 0))))"""
_BOUNDARIES = {
    "memory64": (
        _MEM64,
        [
            ("load", PAGE - 4, 0),
            ("load", PAGE, "trap"),
            ("load-far", PAGE - 16, "trap"),  # the offset carries it past the size
            ("load", 2**32 + 2**25, "trap"),  # past the reservation and its guard
            ("grow", 2**48, -1),  # size arithmetic far past any reservation
            ("grow", 2**63, -1),
            ("grow", 65535, 1),  # to exactly the 4 GiB reservation
            ("load", 2**32 - 4, 0),
            ("grow", 1, -1),  # one page past it
            ("load", 2**32, "trap"),
            ("load-far", 2**32 - 4, "trap"),
        ],
    ),
    "multi-memory": (
        _MULTI,
        [
            ("load", 2 * PAGE - 4, 0),
            ("load", 2 * PAGE, "trap"),
            ("grow", 65534, 2),  # the second memory to its whole reservation
            ("load", 2**32 - 4, 0),
            ("grow", 1, -1),
            ("grow", 0xFFFF_FFFF, -1),
        ],
    ),
}


@pytest.mark.parametrize("case", list(_BOUNDARIES), ids=list(_BOUNDARIES))
def test_memory64_and_multi_memory_keep_their_bounds(case: str) -> None:
    text, steps = _BOUNDARIES[case]
    acc = MemoryAccounting(lambda: "owner")
    engine, _ = make_engine(consume_fuel=False, memory_accounting=acc)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(2**40)
    exports = wasmtime.Instance(store, wasmtime.Module(engine, text), []).exports(store)
    for name, arg, expected in steps:
        func = exports[name]
        assert isinstance(func, wasmtime.Func)
        if expected == "trap":
            with pytest.raises(wasmtime.Trap, match="out of bounds memory access"):
                func(store, arg)
        else:
            assert func(store, arg) == expected, (name, arg)
    assert acc.memories_of("owner") == (1 if case == "memory64" else 2)
    assert acc.bytes_of("owner") == (2**32 if case == "memory64" else PAGE + 2**32)


def test_shared_memories_are_refused_by_an_accounting_engine() -> None:
    """A shared memory (threads proposal) outlives any one store and is reached from
    several threads at once; the creator serves memories of one store each, and the
    engine leaves the proposal off: this pins that."""
    engine, _ = make_engine(consume_fuel=False, memory_accounting=MemoryAccounting(lambda: None))
    module = wasmtime.Module(engine, "(module (memory 1 2 shared))")
    with pytest.raises(wasmtime.WasmtimeError, match="shared memory support is disabled"):
        wasmtime.Instance(wasmtime.Store(engine), module, [])
