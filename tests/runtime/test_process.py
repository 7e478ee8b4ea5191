"""The process isolation tier: what only a process boundary gives.

The fault suite (tests/runtime/test_faults.py), the value round trips
(tests/bridge) and host-defined resources run in both tiers through
parametrized fixtures; this file covers what is specific to worker processes:
crashes and kills, deadlines that no epoch reaches, orphans, the worker's
sandbox, warm spares, parallel workers, and a worker that lies.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import msgpack
import pytest

import support.bridge as bridge_support
import support.http as http_support
from support.fakeworker import FakeWorkers, frame
from support.rawend import RawEnd
from support.workerwat import MANIFEST, WAT
from wasmplug import (
    Grants,
    HostFunctionError,
    InstantiationError,
    Limits,
    Manifest,
    Plugin,
    PluginClosedError,
    PluginCrashed,
    PluginHost,
    PluginQuarantinedError,
    PluginTimeout,
    RestartPolicy,
    StaleResourceError,
    current_plugin,
)
from wasmplug._runtime.plugin import find_export
from wasmplug._runtime.process import backend as backend_module
from wasmplug._runtime.process import spawn as spawn_module
from wasmplug._runtime.process.budget import LOG_FRAMES_PER_S
from wasmplug._runtime.process.spawn import WorkerProcess
from wasmplug._runtime.process.wire import Channel, Op
from wasmplug._sandbox import stdio as stdio_module
from wasmplug._sandbox.http import HTTP_INTERFACE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="worker checks read /proc (Linux)"
)

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as h:
        yield h


def load(host: PluginHost, cb: Callable[[int], int] = lambda x: x + 1, **kwargs: Any) -> Plugin:
    host.provide("cb", cb)
    return host.load(WAT.encode(), allow_unsigned=True, manifest=MANIFEST, **kwargs)


def pids(plugin: Plugin) -> list[int]:
    assert plugin._backend is not None
    return plugin._backend.worker_pids()


def gone(pid: int) -> bool:
    """The process no longer exists, or is a zombie nobody has reaped yet.

    A killed multi-threaded process shows its main thread as a zombie while its
    other threads are still exiting, and cannot be waited for until they have:
    only then is it gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z" and threads <= 1


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def wait_in_call(plugin: Plugin, pid: int) -> None:
    """Wait until worker ``pid`` is checked out by a call (its lock is held from
    checkout to checkin): a fixed sleep may end before a loaded machine got there."""
    assert plugin._backend is not None
    pool = plugin._backend.pool
    wait_until(lambda: any(w.pid == pid and w.lock.locked() for w in pool.live()))


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


# -- crashes and kills ----------------------------------------------------------------------


def test_sigkill_mid_call_is_plugin_crashed_and_the_next_call_works(host: PluginHost) -> None:
    plugin = load(host, limits=Limits(timeout_ms=None))
    [pid] = pids(plugin)
    thread, errors = in_thread(lambda: plugin.call("spin"))
    wait_in_call(plugin, pid)
    os.kill(pid, signal.SIGKILL)
    thread.join(10)
    [exc] = errors
    assert isinstance(exc, PluginCrashed)
    assert exc.signal == signal.SIGKILL
    assert exc.exit_code is None
    assert "killed by SIGKILL" in str(exc)
    assert exc.plugin == "worker-test"
    assert exc.export == "spin"
    assert gone(pid)
    assert plugin.call("add", 40, 2) == 42
    assert plugin.metrics().faults == {"crash": 1}


def _vm_size(pid: int) -> int:
    """The process's virtual address space, in bytes (reserved, not resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_workers_of_a_host_with_instance_slots_pool_their_own_instances(
    tmp_path: Path, host: PluginHost
) -> None:
    """``instance_slots`` is the host's capacity for in-process instances: a worker
    allocates its instances from pooling-allocator slots of its own (fresh ones after
    reset() or a fault too) and takes none of the host's."""
    plain = load(host)
    with PluginHost(
        cache_dir=tmp_path / "slots", isolation="process", spare_workers=0, instance_slots=1
    ) as slotted:
        plugin = load(slotted)
        for _ in range(4):  # more fresh instances than the worker has slots
            assert plugin.call("count") == 1
            assert plugin.call("count") == 2
            plugin.reset()
        # The worker reserved its slots (address space, not memory) when it started.
        assert _vm_size(pids(plugin)[0]) > _vm_size(pids(plain)[0]) + (1 << 31)
        local = load(slotted, isolation="inprocess")
        assert local.call("add", 2, 3) == 5  # the host's one slot was still free
        with pytest.raises(InstantiationError, match="instance_slots"):
            load(slotted, isolation="inprocess")


def test_a_worker_killed_while_idle_is_counted_and_replaced(host: PluginHost) -> None:
    plugin = load(host)
    [pid] = pids(plugin)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid))
    assert plugin.call("add", 1, 2) == 3, "the call itself runs in a new worker"
    metrics = plugin.metrics()
    assert metrics.faults == {"crash": 1}
    assert metrics.last_fault is not None
    assert "killed by SIGKILL while idle" in metrics.last_fault.message
    assert metrics.restarts == 1


def test_segfault_in_the_worker_is_plugin_crashed(host: PluginHost) -> None:
    holder: list[Plugin] = []

    def cb(x: int) -> int:
        if x == 13:  # make the worker serving this call read address 0 (test-only hook)
            backend = holder[0]._backend
            assert backend is not None
            backend._test_crash_current_worker()
        return x + 1

    holder.append(load(host, cb))
    plugin = holder[0]
    with pytest.raises(PluginCrashed) as info:
        plugin.call("call-cb", 13)
    assert info.value.signal == signal.SIGSEGV
    assert "SIGSEGV" in str(info.value)
    assert plugin.call("call-cb", 1) == 2
    assert plugin.metrics().faults == {"crash": 1}
    assert plugin.metrics().restarts == 1


def test_a_blocked_call_is_killed_while_signal_handlers_keep_interrupting_its_wait(
    host: PluginHost,
) -> None:
    """A signal whose handler returns restarts the kernel-bounded wait (PEP 475) with
    its whole armed time: an application timer firing faster than the deadline would
    postpone it for ever, so a watchdog kills the worker anyway."""
    plugin = load(host, limits=Limits(timeout_ms=200))
    ticks: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda *_: ticks.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    try:
        start = time.perf_counter()
        with pytest.raises(PluginTimeout):
            plugin.call("sleep", 60 * 10**9)
        elapsed = time.perf_counter() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert ticks, "the timer interrupted nothing"
    assert elapsed < 5.0, f"a 200 ms timeout took {elapsed:.3f} s"
    assert plugin.metrics().faults == {"timeout": 1}
    assert plugin.call("add", 1, 2) == 3


def test_guest_blocked_in_wasi_poll_is_killed_at_its_deadline(host: PluginHost) -> None:
    plugin = load(host, limits=Limits(timeout_ms=200))
    plugin.call("sleep", 1_000_000)  # 1 ms: poll works
    start = time.perf_counter()
    with pytest.raises(PluginTimeout) as info:
        plugin.call("sleep", 60 * 10**9)  # a minute, blocked in host code
    elapsed = time.perf_counter() - start
    # The bound is timeout_ms + 100 ms; allow for a loaded CI machine.
    assert elapsed < 0.2 + 0.1 + 0.5, f"a 200 ms timeout took {elapsed:.3f} s"
    assert "worker process was killed" in str(info.value)
    assert plugin.metrics().faults == {"timeout": 1}
    assert plugin.call("add", 1, 2) == 3


def test_spinning_guest_is_stopped_by_the_workers_own_epoch_deadline(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guest in Wasm code is interrupted inside the worker, which survives.

    (The kill comes 50 ms after the deadline; on a loaded machine the worker's epoch
    thread can be starved longer than that, so this test waits longer.)"""
    monkeypatch.setattr(backend_module, "KILL_GRACE_MS", 5000.0)
    plugin = load(host, limits=Limits(timeout_ms=50))
    [pid] = pids(plugin)
    with pytest.raises(PluginTimeout, match="epoch deadline"):
        plugin.call("spin")
    assert pids(plugin) == [pid]
    assert plugin.call("add", 1, 2) == 3


def test_crash_loop_is_quarantined(host: PluginHost) -> None:
    plugin = load(host, restart_policy=RestartPolicy(max_faults=2), limits=Limits(timeout_ms=None))
    for _ in range(2):
        [pid] = pids(plugin)
        thread, errors = in_thread(lambda: plugin.call("spin"))
        wait_in_call(plugin, pid)
        os.kill(pid, signal.SIGKILL)
        thread.join(10)
        assert isinstance(errors[0], PluginCrashed)
        if not plugin.metrics().quarantined:
            assert plugin.call("add", 1, 1) == 2
    with pytest.raises(PluginQuarantinedError, match="crash"):
        plugin.call("add", 1, 1)
    plugin.reset()
    assert plugin.call("add", 1, 1) == 2


# -- warm spares and parallel workers ---------------------------------------------------------


def test_a_killed_worker_is_replaced_by_the_warm_spare(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=1) as host:
        plugin = load(host, limits=Limits(timeout_ms=None))
        wait_until(lambda: len(pids(plugin)) == 2)  # the serving worker and its spare
        backend = plugin._backend
        assert backend is not None
        [serving] = [w.pid for w in backend.pool.live()]
        [spare] = [p for p in pids(plugin) if p != serving]
        os.kill(serving, signal.SIGKILL)
        wait_until(lambda: gone(serving))
        assert plugin.call("add", 1, 1) == 2
        assert [w.pid for w in backend.pool.live()] == [spare]
        wait_until(lambda: len(pids(plugin)) == 2)  # a new spare
        assert plugin.metrics().restarts == 1


def test_pool_of_two_workers_serves_two_calls_at_once(host: PluginHost) -> None:
    both_inside = threading.Barrier(2, timeout=30)

    def cb(x: int) -> int:
        both_inside.wait()  # only passes if two workers call it at the same time
        return x + 1

    plugin = load(host, cb, pool_size=2, limits=Limits(timeout_ms=None))
    threads = [in_thread(lambda: plugin.call("call-cb", 1)) for _ in range(2)]
    for thread, errors in threads:
        thread.join(60)
        assert not errors
    assert len(pids(plugin)) == 2
    assert plugin.metrics().calls == 2


def test_instance_state_persists_and_reset_starts_fresh(host: PluginHost) -> None:
    plugin = load(host)
    assert [plugin.call("count") for _ in range(3)] == [1, 2, 3]
    [pid] = pids(plugin)
    plugin.reset()
    assert plugin.call("count") == 1
    assert pids(plugin) == [pid], "reset keeps the worker process"


def test_acall(host: PluginHost) -> None:
    import asyncio

    plugin = load(host)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(plugin.acall("add", i, 1) for i in range(5))))

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]


# -- host imports stay in the application -----------------------------------------------------


def test_host_function_calls_back_into_other_plugins(tmp_path: Path) -> None:
    """process -> host -> (in-process plugin, another process plugin): both answer."""
    with (
        PluginHost(cache_dir=tmp_path / "a", isolation="process", spare_workers=0) as host,
        PluginHost(cache_dir=tmp_path / "b") as other,
    ):
        inner_process = load(host)
        inner_local = load(other)
        seen: list[int] = []

        def cb(x: int) -> int:
            seen.append(os.getpid())
            return int(inner_local.call("add", x, 1)) + int(inner_process.call("call-cb", x))

        host.provide("cb", cb)  # linked into plugins loaded from now on
        outer = host.load(
            WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="outer", host_interfaces=("cb",)),
        )
        assert outer.call("call-cb", 10) == (10 + 1) + (10 + 1)
        assert seen == [os.getpid()], "the host function ran in the application"


def test_reentry_from_a_host_function_is_refused(host: PluginHost) -> None:
    holder: list[Plugin] = []
    plugin = load(host, lambda x: int(holder[0].call("add", x, 1)))
    holder.append(plugin)
    with pytest.raises(HostFunctionError) as info:
        plugin.call("call-cb", 1)
    assert type(info.value.__cause__).__name__ == "ReentrantCallError"


# -- guest-defined resources: handles name objects in one worker ---------------------------------


pokes: list[Callable[[], None]] = []
"""What the counter component's host function ``poke`` runs."""


def load_counters(host: PluginHost, pool_size: int = 2) -> Plugin:
    """The guest ``counter`` of the bridge tests (tests/bridge/test_resources.py runs
    the whole resource suite in both tiers)."""
    host.provide(bridge_support.HOST, {"poke": lambda: pokes[0]() if pokes else None})
    return host.load(
        bridge_support.GUEST_COUNTER.encode(),
        allow_unsigned=True,
        manifest=bridge_support.MANIFEST,
        pool_size=pool_size,
    )


def test_guest_resource_calls_go_to_the_worker_holding_the_object(host: PluginHost) -> None:
    counters = load_counters(host)
    counter = counters.exports.api.Counter
    handles = [counter(i) for i in range(6)]
    assert len({h._inst.worker.pid for h in handles}) == 2, "both workers hold counters"
    assert [h.get() for h in handles] == list(range(6))
    assert [counter.take(h, 1) for h in reversed(handles)] == [6, 5, 4, 3, 2, 1]
    assert sum(counters.call("drops") for _ in range(2)) == 6  # one call per worker


def test_guest_resource_of_a_dead_worker_is_stale(host: PluginHost) -> None:
    counters = load_counters(host)
    counter = counters.exports.api.Counter
    c = counter(5)
    worker = c._inst.worker
    os.kill(worker.pid, signal.SIGKILL)
    wait_until(lambda: not worker.running)
    with pytest.raises(StaleResourceError, match="discarded"):
        c.get()
    assert not c.alive
    c.drop()  # nothing to do: the guest object died with its worker
    assert counters.metrics().faults == {"crash": 1}
    assert counter(6).get() == 6


def test_guest_resources_of_a_worker_that_crashed_mid_call_are_stale(host: PluginHost) -> None:
    counters = load_counters(host, pool_size=1)
    assert counters._backend is not None
    counter = counters.exports.api.Counter
    c = counter(7)
    pokes.append(counters._backend._test_crash_current_worker)
    try:
        with pytest.raises(PluginCrashed, match="SIGSEGV"):
            counters.call("call-poke")
    finally:
        pokes.clear()
    assert not c.alive
    with pytest.raises(StaleResourceError):
        c.get()
    assert counter(1).get() == 1


def test_guest_resource_handles_die_with_the_plugin(host: PluginHost) -> None:
    counters = load_counters(host, pool_size=1)
    c = counters.exports.api.Counter(1)
    counters.close()
    assert not c.alive
    with pytest.raises(PluginClosedError):
        c.get()
    c.drop()


def test_instantiation_failure_surfaces_at_load(host: PluginHost) -> None:
    wat = "(component (core module $m (memory 10)) (core instance (instantiate $m)))"
    with pytest.raises(InstantiationError, match="memory minimum size of 10 pages"):
        host.load(
            wat.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="big"),
            limits=Limits(memory_bytes=65536),
        )


# -- lifecycle: no orphans ---------------------------------------------------------------------


def test_close_kills_every_worker_at_once(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=1) as host:
        plugin = load(host, limits=Limits(timeout_ms=None))
        wait_until(lambda: len(pids(plugin)) == 2)
        workers = pids(plugin)
        thread, errors = in_thread(lambda: plugin.call("sleep", 60 * 10**9))
        time.sleep(0.2)
        start = time.perf_counter()
        plugin.close()
        thread.join(10)
        assert time.perf_counter() - start < 5
        [exc] = errors
        assert isinstance(exc, PluginClosedError)
        assert all(gone(pid) for pid in workers)
        with pytest.raises(PluginClosedError):
            plugin.call("add", 1, 1)


def test_close_stops_spares_that_are_still_booting(tmp_path: Path) -> None:
    """A spare still starting when the plugin closes is killed and its starter thread
    joined: no worker, thread or descriptor outlives ``close()``."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=1) as host:
        plugin = load(host, limits=Limits(timeout_ms=None))
        backend = plugin._backend
        assert backend is not None
        starter = backend._starter
        wait_until(lambda: bool(starter._booting))  # the spare is spawned, not yet READY
        booting = [w.pid for w in starter._booting]
        starters = list(starter._threads)  # this plugin's: another test's may still run
        assert starters
        plugin.close()
        assert not [t for t in starters if t.is_alive()]
        assert all(gone(pid) for pid in booting)
        assert backend.worker_pids() == []


CHILD = """
import sys, threading, time
sys.path.insert(0, {src!r})
from wasmplug import Limits, Manifest, PluginHost
host = PluginHost(cache_dir={cache!r}, isolation="process", spare_workers=1)
host.provide("cb", lambda x: x)
plugin = host.load({wat!r}.encode(), allow_unsigned=True,
                   manifest=Manifest(name="child", host_interfaces=("cb",)),
                   limits=Limits(timeout_ms=None))
deadline = time.monotonic() + 60
while len(plugin._backend.worker_pids()) < 2 and time.monotonic() < deadline:
    time.sleep(0.02)
threading.Thread(target=plugin.call, args=("sleep", 600 * 10**9), daemon=True).start()
time.sleep(0.2)
print(" ".join(map(str, plugin._backend.worker_pids())), flush=True)
{then}
"""


def start_child(tmp_path: Path, then: str) -> tuple[subprocess.Popen[str], list[int]]:
    code = CHILD.format(src=SRC, cache=str(tmp_path / "cache"), wat=WAT, then=then)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    workers = [int(p) for p in line.split()]
    assert len(workers) == 2, line
    return child, workers


def test_workers_die_with_a_sigkilled_application(tmp_path: Path) -> None:
    child, workers = start_child(tmp_path, "time.sleep(600)")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    wait_until(lambda: all(gone(pid) for pid in workers))


def test_interpreter_exit_is_prompt_and_leaves_no_worker(tmp_path: Path) -> None:
    """A call blocked in a worker does not hold up exit; atexit closes the host."""
    child, workers = start_child(tmp_path, "sys.exit(0)")
    assert child.wait(15) == 0
    wait_until(lambda: all(gone(pid) for pid in workers))


# -- the worker's sandbox ----------------------------------------------------------------------


def test_worker_has_empty_environment_private_cwd_and_no_inherited_fds(host: PluginHost) -> None:
    with tempfile.NamedTemporaryFile() as leak:
        fd = os.open(leak.name, os.O_RDONLY)
        os.set_inheritable(fd, True)  # would leak into a careless child
        try:
            plugin = load(host, limits=Limits(memory_bytes=64 << 20))
        finally:
            os.close(fd)
        [pid] = pids(plugin)
        proc = Path(f"/proc/{pid}")
        assert (proc / "environ").read_bytes() == b""
        cwd = os.readlink(proc / "cwd")
        assert Path(cwd).name.startswith("wasmplug-worker-")
        assert Path(cwd).stat().st_mode & 0o777 == 0o700
        targets = _fd_targets(proc)
        assert all(targets[i] == "/dev/null" for i in (0, 1, 2))
        assert leak.name not in targets.values()
        assert not [t for t in targets.values() if t.startswith("socket:")], targets
        # What it shares with the application is exactly its ends of the channel's two
        # pipes (a pipe it made itself, for guest stdio, is not the application's).
        ours = set(_fd_targets(Path("/proc/self")).values())
        [worker] = plugin._backend.pool.live()  # type: ignore[union-attr]
        chan = worker.chan
        channel = {os.readlink(f"/proc/self/fd/{fd}") for fd in (chan.wfd, chan.fileno())}
        shared = sorted(t for t in targets.values() if t in ours and t != "/dev/null")
        assert shared == sorted(channel), targets
        limits = (proc / "limits").read_text()
        [data] = [line for line in limits.splitlines() if line.startswith("Max data size")]
        cap = int(data.split()[3])
        assert 64 << 20 < cap < (64 << 20) + (1 << 30), data
        assert plugin.call("add", 1, 1) == 2
    plugin.close()
    assert not Path(cwd).exists(), "the private directory is removed with the worker"


def test_a_fork_while_a_worker_starts_keeps_none_of_its_channel() -> None:
    """A child the application forks (without exec) while a worker is being started
    must not keep the worker's ends of the channel: with its copy of the worker's write
    end alive, the worker's death would never reach the application as end of file."""
    ours, theirs = spawn_module._STARTING.open()
    try:
        pid = os.fork()
        if pid == 0:  # the child: report by exit status only
            os._exit(0 if all(map(_closed, theirs)) and not any(map(_closed, ours)) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not any(map(_closed, theirs))  # the parent's are its own to pass on
    finally:
        spawn_module._STARTING.close(theirs)
        for fd in ours:
            os.close(fd)


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _fd_targets(proc: Path) -> dict[int, str]:
    """What each open fd of a process names (an fd closed while listing is left out)."""
    targets = {}
    for n in os.listdir(proc / "fd"):
        with contextlib.suppress(FileNotFoundError):
            targets[int(n)] = os.readlink(proc / "fd" / n)
    return targets


def test_workers_import_only_the_runtime() -> None:
    """A worker does not import asyncio (~8 MB), cryptography (~7.6 MB, signature
    checks happen in the application) or platformdirs: memory per worker."""
    code = spawn_module._BOOTSTRAP.replace("main(sys.argv)\n", "print(sorted(sys.modules))\n")
    argv = ["0", "0", "0", spawn_module._PACKAGE_DIR, *spawn_module._import_path()]
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    modules = set(ast.literal_eval(out.stdout))
    assert "wasmplug._runtime.process.worker" in modules
    assert not {"asyncio", "cryptography", "platformdirs", "ssl"} & modules


# -- a worker that lies --------------------------------------------------------------------------


def lying_worker(
    fake_workers: FakeWorkers, lie: Callable[[Channel, RawEnd, list[Any]], None]
) -> list[WorkerProcess]:
    """Make the next worker a fake one that starts like a real one and answers the
    first CALL with ``lie(channel, its raw end, call message)``, then waits to be killed; the
    workers after it are real. Returns the list the fake worker is put in."""
    return fake_workers.install(lambda chan, sock: lie(chan, sock, chan.recv()))


MALICIOUS = {
    "result-wrong-type": frame([Op.RESULT, "nope"]),
    "result-out-of-range": frame([Op.RESULT, 2**40]),
    "result-bool-for-int": frame([Op.RESULT, True]),
    "hostcall-unknown-function": frame([Op.HOSTCALL, 99, [1]]),
    "hostcall-wrong-arity": frame([Op.HOSTCALL, 0, [1, 2]]),
    "hostcall-bad-argument": frame([Op.HOSTCALL, 0, ["x"]]),
    "hostcall-negative-u32": frame([Op.HOSTCALL, 0, [-1]]),
    "unknown-opcode": frame([77]),
    "not-an-array": frame({"op": 11}),
    "ext-type": frame(msgpack.ExtType(1, b"\x80\x04cos\nsystem\n")),
    "garbage": (1).to_bytes(4, "big") + b"\xc1",
    "huge-frame": (2**32 - 1).to_bytes(4, "big"),
    "frame-over-twice-the-result-cap": (200 << 20).to_bytes(4, "big"),  # cap: 64 MiB
    "deep-nesting": (200_001).to_bytes(4, "big") + b"\x91" * 200_000 + b"\xc0",
    "fault-host-without-failure": frame([Op.FAULT, "host"]),
    "fault-unknown-kind": frame([Op.FAULT, "pwned", "x"]),
    "log-bad-level": frame([Op.LOG, "x", "y"]),
    "log-level-of-no-stream": frame([Op.LOG, logging.CRITICAL, "forged"]),
    "log-float-level": frame([Op.LOG, 20.0, "x"]),
    "drop-not-a-list": frame([Op.DROP, 5]),
    "span-unknown-kind": frame([Op.SPAN, 7, 1, 2]),
    "span-ends-before-it-starts": frame([Op.SPAN, 0, 2, 1]),
    "span-name-not-an-index": frame([Op.SPAN, "wasmplug.call", 1, 2]),
    # Opcodes of another protocol state, or of the other direction.
    "ready-in-a-call": frame([Op.READY, 1]),
    "done-in-a-call": frame([Op.DONE]),
    "return-from-the-worker": frame([Op.RETURN, True, 1]),
    "call-from-the-worker": frame([Op.CALL, 0, [1, 2], []]),
    "init-from-the-worker": frame([Op.INIT, {}]),
    "crash-from-the-worker": frame([Op.CRASH]),
    "hostcall-negative-function": frame([Op.HOSTCALL, -1, [1]]),
    "hostcall-bool-function": frame([Op.HOSTCALL, True, [1]]),
    "hostcall-huge-function": frame([Op.HOSTCALL, 2**64 - 1, [1]]),
    "hostcall-function-by-name": frame([Op.HOSTCALL, "cb", [1]]),
    "hostcall-args-not-a-list": frame([Op.HOSTCALL, 0, 1]),
    # More objects than an s32 result (or a u32 argument) can be, in a frame longer
    # than that many bytes: refused while it is decoded (see budget.py).
    "result-of-a-million-arrays": frame([Op.RESULT, [[]] * 1_000_000]),
    "map-in-a-big-frame": frame([Op.RESULT, {str(i): i for i in range(5000)}]),
}


@pytest.mark.parametrize("reply", list(MALICIOUS.values()), ids=list(MALICIOUS))
def test_malformed_messages_kill_the_worker(
    host: PluginHost, fake_workers: FakeWorkers, reply: bytes
) -> None:
    """A compromised worker can only get itself killed: nothing it sends is executed,
    and no host function runs with a value that does not match its WIT type."""
    fakes = lying_worker(fake_workers, lambda chan, sock, call: sock.sendall(reply))
    called: list[int] = []
    plugin = load(host, lambda x: called.append(x) or x)
    with pytest.raises(PluginCrashed, match="broke the wire protocol") as info:
        plugin.call("call-cb", 5)
    assert info.value.signal == signal.SIGKILL
    assert called == []
    assert fakes[0].proc.returncode == -signal.SIGKILL
    assert plugin.call("call-cb", 5) == 5
    assert called == [5]


WORKER_WORDS = {
    "its-exception": ("ProtocolError: malformed CALL", "'ProtocolError: malformed CALL'"),
    "cut-short": ("x" * 100_000, repr("x" * 200)),
    "a-forged-line": ("boom\nERROR:wasmplug:forged", "'boom\\nERROR:wasmplug:forged'"),
    "not-a-string": (["boom"], "''"),
}


@pytest.mark.parametrize(("said", "quoted"), list(WORKER_WORDS.values()), ids=list(WORKER_WORDS))
def test_a_worker_that_fails_mid_call_says_why(
    host: PluginHost, fake_workers: FakeWorkers, said: Any, quoted: str
) -> None:
    """Regression: a worker whose serving loop raised reports ``FAULT "start"`` with
    its exception and exits; the application said only "malformed FAULT 'start'". The
    worker's words are quoted, cut to 200 characters and escaped (it is untrusted)."""
    lying_worker(fake_workers, lambda chan, sock, call: chan.send([Op.FAULT, "start", said]))
    plugin = load(host, limits=Limits(timeout_ms=20_000))
    with pytest.raises(PluginCrashed) as info:
        plugin.call("call-cb", 5)
    assert f"broke the wire protocol (the worker failed: {quoted}) and was killed" in str(
        info.value
    )
    assert plugin.call("call-cb", 5) == 6  # a real worker serves the next call


@pytest.mark.parametrize("drops", [0, None, "", False], ids=["zero", "nil", "empty-str", "false"])
def test_the_worker_refuses_a_call_whose_drops_are_not_a_list(host: PluginHost, drops: Any) -> None:
    """``drops`` must be a list on every way a worker serves a CALL. Regression: the
    inline branch of its serving loop (an export of primitives) took any empty value,
    where ``serve`` refused it as a malformed CALL."""
    plugin = load(host)
    assert plugin.call("add", 1, 2) == 3
    assert plugin._backend is not None
    [worker] = plugin._backend.pool.live()
    index = find_export(plugin, "add").index
    replies: list[Any] = []
    with worker.lock:
        worker.chan.send([Op.CALL, index, [1, 2], drops])
        reader = threading.Thread(target=lambda: replies.append(worker.chan.recv()), daemon=True)
        reader.start()
        reader.join(30)
        plugin._backend.pool.discard(worker)  # it exits after saying why (ends the read)
    reader.join(30)
    [reply] = replies
    assert reply[:2] == [Op.FAULT, "start"], reply
    assert "malformed CALL" in reply[2]
    assert plugin.call("add", 1, 2) == 3


# -- the rest of the surface ---------------------------------------------------------------------


def test_host_functions_see_the_calling_plugin(host: PluginHost) -> None:
    seen: list[object] = []

    def cb(x: int) -> int:
        seen.append(current_plugin())
        return x

    plugin = load(host, cb)
    assert plugin.call("call-cb", 3) == 3
    assert seen == [plugin]
    assert current_plugin() is None


def test_ctrl_c_while_waiting_for_a_worker(tmp_path: Path) -> None:
    """SIGINT in the waiting thread kills the worker at once (it ends any call, even
    one blocked in host code) and is counted as "interrupted", never quarantine.
    The host is created after the default handler, so wasmplug's SIGINT guard wraps it."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
            plugin = load(host, limits=Limits(timeout_ms=None))
            [pid] = pids(plugin)
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            start = time.perf_counter()
            with pytest.raises(KeyboardInterrupt):
                plugin.call("sleep", 60 * 10**9)
            assert time.perf_counter() - start < 5
            timer.join()
            assert gone(pid)
            assert plugin.metrics().faults == {"interrupted": 1}
            assert not plugin.metrics().quarantined
            assert plugin.call("add", 1, 1) == 2
    finally:
        signal.signal(signal.SIGINT, before)


def test_closing_the_plugin_from_its_own_host_function(host: PluginHost) -> None:
    holder: list[Plugin] = []

    def cb(x: int) -> int:
        holder[0].close()
        return x

    plugin = load(host, cb)
    holder.append(plugin)
    [pid] = pids(plugin)
    with pytest.raises(PluginClosedError):
        plugin.call("call-cb", 1)
    assert gone(pid)
    assert pids(plugin) == []


@pytest.mark.parametrize("bad", ["thread", "", "PROCESS"])
def test_isolation_is_checked(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="isolation must be"):
        PluginHost(cache_dir=False, isolation=bad)  # type: ignore[arg-type]
    with PluginHost(cache_dir=False) as h, pytest.raises(ValueError, match="isolation must be"):
        h.load(WAT.encode(), allow_unsigned=True, isolation=bad)  # type: ignore[arg-type]


def test_the_builtin_http_interface_runs_in_the_application() -> None:
    """wasmplug:host/http is called over the channel; the allow-list is the plugin's."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), http_support.Handler)
    httpd.daemon_threads = True
    server = http_support.Server(httpd, threading.Event())
    httpd.owner = server  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with PluginHost(cache_dir=False, isolation="process", spare_workers=0) as host:
            plugin = host.load(
                http_support.COMPONENT,
                allow_unsigned=True,
                manifest=Manifest(
                    name="fetcher",
                    host_interfaces=(HTTP_INTERFACE,),
                    allowed_outbound_hosts=(server.url,),
                ),
                grants=Grants(allowed_outbound_hosts=(server.url,)),
                # Not about time: a request to a server thread of this (loaded) process
                # must not race the default 1 s budget. Finite, so that a hang fails.
                limits=Limits(timeout_ms=60_000),
            )
            resp = http_support.send(plugin, f"{server.url}/json")
            assert resp.status == 200
            assert server.paths() == ["/json"]
            err = http_support.send_err(plugin, f"http://localhost:{server.port}/json")
            assert err.case == "denied"
            assert "'fetcher'" in err.value
            assert server.paths() == ["/json"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# Two host-defined resource types: the plugin is lent a `counter`; `open` takes a `vault`.
TWO_RESOURCES_WIT = """
package demo:x@0.1.0;

interface host {
    resource counter {
        constructor(start: u32);
    }
    resource vault {
        constructor();
    }
    open: func(v: borrow<vault>) -> u32;
    keep: func(c: counter) -> u32;
}
"""
TWO_RESOURCES = f"""
(component
  (import "{bridge_support.HOST}" (instance $host
    (export "counter" (type $c (sub resource)))
    (export "vault" (type $v (sub resource)))
    (export "[constructor]counter" (func (param "start" u32) (result (own $c))))
    (export "[constructor]vault" (func (result (own $v))))
    (export "open" (func (param "v" (borrow $v)) (result u32)))
    (export "keep" (func (param "c" (own $c)) (result u32)))))
  (alias export $host "counter" (type $counter))
  (core func $drop (canon resource.drop $counter))
  (core module $M
    (import "h" "drop" (func $drop (param i32)))
    (func (export "peek") (param i32) (result i32) (call $drop (local.get 0)) (i32.const 0)))
  (core instance $m (instantiate $M (with "h" (instance (export "drop" (func $drop))))))
  (func (export "peek") (param "c" (borrow $counter)) (result u32)
    (canon lift (core func $m "peek")))
)
"""


class _Counter:
    def __init__(self, start: int) -> None:
        self.start = start


class _Vault:
    secret = 42


@pytest.mark.parametrize(
    ("function", "why"),
    [("open", "a counter as a vault"), ("keep", "a borrowed counter as an owned one")],
)
def test_a_worker_cannot_pass_a_host_object_as_another_type_or_ownership(
    host: PluginHost, fake_workers: FakeWorkers, function: str, why: str
) -> None:
    """Regression: the objects lent to a worker were one table of ids without their
    types, so a lying worker could hand a host function ``open(v: borrow<vault>)``
    the ``counter`` it was lent (wasmtime would trap on that in-process), or take a
    borrowed object as its own. The host function must never run."""
    function_id: list[int] = []
    ready = threading.Event()

    def lie(chan: Channel, sock: RawEnd, call: list[Any]) -> None:
        # call: CALL peek, [counter id], drops
        ready.wait(60)
        chan.send([Op.HOSTCALL, function_id[0], [call[2][0]]])
        chan.recv()  # RETURN
        chan.send([Op.RESULT, 0])

    lying_worker(fake_workers, lie)
    seen: list[object] = []
    impl = SimpleNamespace(
        Counter=_Counter,
        Vault=_Vault,
        open=lambda v: seen.append(v) or v.secret,
        keep=lambda c: seen.append(c) or 1,
    )
    host.provide(bridge_support.HOST, impl, wit=TWO_RESOURCES_WIT)
    plugin = host.load(
        TWO_RESOURCES.encode(),
        allow_unsigned=True,
        manifest=bridge_support.MANIFEST,
        limits=Limits(timeout_ms=20_000),  # not about time; finite so that a hang fails
    )
    assert plugin._backend is not None
    names = [name.rpartition("#")[2] for name, _ in plugin._backend._host_calls.sigs]
    function_id.append(names.index(function))
    ready.set()
    with pytest.raises(PluginCrashed, match="broke the wire protocol"):
        plugin.call("peek", _Counter(7))
    assert seen == [], why
    assert plugin.call("peek", _Counter(8)) == 0  # a real worker serves the next call


@pytest.mark.parametrize("stdio", ["log", "discard"])
def test_a_worker_that_floods_log_lines_is_rate_limited_in_the_application(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_workers: FakeWorkers,
    caplog: pytest.LogCaptureFixture,
    stdio: Literal["log", "discard"],
) -> None:
    """Regression: the application logged every LOG line a worker sent, at any level it
    chose, newlines and all: the rate limit, the cut into single lines and ``stdio =
    "discard"`` held only as long as the worker applied them itself. (More LOG frames
    than that in a second kill the worker: tests/runtime/test_process_hostile.py.)"""

    def lie(chan: Channel, sock: RawEnd, call: list[Any]) -> None:
        chan.send([Op.LOG, logging.WARNING, "forged\nERROR:root:another record"])
        for i in range(LOG_FRAMES_PER_S - 1):
            chan.send([Op.LOG, logging.INFO, f"line {i}"])
        chan.send([Op.RESULT, 0])

    lying_worker(fake_workers, lie)
    # One rate-limit window however long the sends take on a loaded machine.
    monkeypatch.setattr(stdio_module, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    manifest = Manifest(name="worker-test", host_interfaces=("cb",), stdio=stdio)
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as h:
        h.provide("cb", lambda x: x)
        plugin = h.load(WAT.encode(), allow_unsigned=True, manifest=manifest)
        with caplog.at_level(logging.DEBUG, logger="wasmplug.plugin.worker-test"):
            assert plugin.call("add", 1, 2) == 0  # the lie's RESULT
    lines = [r.getMessage() for r in caplog.records if r.name == "wasmplug.plugin.worker-test"]
    if stdio == "discard":
        assert lines == []
        return
    # stderr: the record cut in two lines; stdout: GuestOutput's max_lines per second.
    assert lines == ["forged", "ERROR:root:another record"] + [f"line {i}" for i in range(100)]


GOES_ON = {
    "another-hostcall": [Op.HOSTCALL, 0, [2]],
    "a-result": [Op.RESULT, 7],
    "a-result-that-says-host": [Op.RESULT, "host"],
    "another-fault": [Op.FAULT, "wasm", "wasm trap: unreachable", ""],
}


@pytest.mark.parametrize("after", list(GOES_ON.values()), ids=list(GOES_ON))
def test_a_worker_cannot_go_on_after_a_host_function_failed(
    host: PluginHost, fake_workers: FakeWorkers, after: list[Any]
) -> None:
    """Regression: in-process a host function that raises traps the guest, so the call
    ends there with that exception. A lying worker could go on after the failure it was
    told of: call more host functions, or end the call with a value, and the
    application's exception was lost."""

    def lie(chan: Channel, sock: RawEnd, call: list[Any]) -> None:
        chan.send([Op.HOSTCALL, 0, [1]])
        chan.recv()  # RETURN False: the host function raised
        chan.send(after)

    lying_worker(fake_workers, lie)
    called: list[int] = []

    def cb(x: int) -> int:
        called.append(x)
        raise PermissionError("over quota")

    plugin = load(host, cb, limits=Limits(timeout_ms=20_000))
    with pytest.raises(PluginCrashed, match="broke the wire protocol"):
        plugin.call("call-cb", 5)
    assert called == [1]


def test_the_applications_ticker_rests_while_a_process_call_waits(host: PluginHost) -> None:
    """The worker runs the Wasm on its own epoch clock, so the application's ticker does
    not tick for a process-tier call: it used to wake every tick (1 ms) while a call
    waited, once the call frame became this thread's entry in ``callctx.running``."""
    plugin = load(host, limits=Limits(timeout_ms=10_000))
    ticker = plugin._ticker
    plugin.call("add", 1, 2)
    before = ticker.epoch
    plugin.call("sleep", 300 * 10**6)  # 300 ms in the worker, blocked in wasi:io/poll
    # About 300 ticks if it ticked for the call (the old code: 299); none otherwise.
    assert ticker.epoch - before < 30
