"""The process tier's watchdog (``process/watchdog.py``): each armed worker is killed at
its kill time, whether the thread slept for ever (idle), until a later kill time, or
was scanning when the worker was armed; a disarmed worker never is."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.timing import LOAD_SLACK_S
from support.workerwat import MANIFEST, WAT
from wasmplug import Limits, PluginHost, PluginTimeout
from wasmplug._runtime.process.watchdog import WATCHDOG, Watchdog

BOUND_S = 0.1
"""How late past its kill time a worker may die (the issue's promise: a PluginTimeout
within ``timeout_ms + 100 ms``)."""


class Worker:
    """Stands in for a WorkerProcess: records when it was killed."""

    def __init__(self) -> None:
        self.overdue = False
        self.killed = threading.Event()
        self.killed_at = 0.0

    def kill(self) -> None:
        self.killed_at = time.monotonic()
        self.killed.set()


@pytest.fixture
def watchdog() -> Iterator[Watchdog]:
    """A watchdog of its own (its daemon thread sleeps for ever once nothing is armed)."""
    dog = Watchdog()
    dog.start()
    yield dog
    dog.armed.clear()


def idle(dog: Watchdog) -> None:
    """Wait until the thread sleeps with nothing to wake it for."""
    deadline = time.monotonic() + 30
    while dog.armed or dog.until != float("inf"):
        assert time.monotonic() < deadline, "the watchdog did not go idle"
        time.sleep(0.01)
    time.sleep(0.05)  # it is past its scan, in its wait


def killed_in_time(worker: Worker, kill_at: float) -> None:
    assert worker.killed.wait(30), "never killed"
    assert worker.overdue
    assert kill_at <= worker.killed_at < kill_at + BOUND_S + LOAD_SLACK_S


def test_an_idle_watchdog_kills_at_the_kill_time(watchdog: Watchdog) -> None:
    idle(watchdog)
    worker = Worker()
    kill_at = time.monotonic() + 0.2
    watchdog.arm(worker, kill_at)  # type: ignore[arg-type]
    killed_in_time(worker, kill_at)
    assert worker not in watchdog.armed


def test_an_earlier_kill_time_wakes_a_watchdog_sleeping_until_a_later_one(
    watchdog: Watchdog,
) -> None:
    late, early = Worker(), Worker()
    watchdog.arm(late, time.monotonic() + 600)  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while watchdog.until == float("inf"):  # asleep until the late one's time
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kill_at = time.monotonic() + 0.2
    watchdog.arm(early, kill_at)  # type: ignore[arg-type]
    killed_in_time(early, kill_at)
    assert not late.killed.is_set()
    watchdog.disarm(late)  # type: ignore[arg-type]


def test_a_later_kill_time_does_not_wake_it_and_is_still_kept(watchdog: Watchdog) -> None:
    """Back-to-back calls: each arms after the previous one disarmed, with a later kill
    time than the one the thread sleeps until; the last one armed is killed on time."""
    workers = [Worker() for _ in range(20)]
    for worker in workers[:-1]:
        watchdog.arm(worker, time.monotonic() + 0.1)  # type: ignore[arg-type]
        time.sleep(0.005)
        watchdog.disarm(worker)  # type: ignore[arg-type]
    last = workers[-1]
    kill_at = time.monotonic() + 0.3
    watchdog.arm(last, kill_at)  # type: ignore[arg-type]
    killed_in_time(last, kill_at)
    assert not any(w.killed.is_set() for w in workers[:-1])


def test_arms_racing_with_its_scans_are_all_killed_on_time(watchdog: Watchdog) -> None:
    """Many threads arm short kill times at once, while the thread wakes and rescans."""
    workers = [Worker() for _ in range(8 * 25)]
    times: dict[Worker, float] = {}

    def arm(batch: list[Worker]) -> None:
        for worker in batch:
            times[worker] = kill_at = time.monotonic() + 0.05
            watchdog.arm(worker, kill_at)  # type: ignore[arg-type]
            time.sleep(0.002)

    threads = [threading.Thread(target=arm, args=(workers[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in workers:
        killed_in_time(worker, times[worker])


def test_a_disarmed_worker_is_never_killed(watchdog: Watchdog) -> None:
    worker, witness = Worker(), Worker()
    watchdog.arm(worker, time.monotonic() + 0.1)  # type: ignore[arg-type]
    watchdog.disarm(worker)  # type: ignore[arg-type]
    kill_at = time.monotonic() + 0.2
    watchdog.arm(witness, kill_at)  # type: ignore[arg-type]
    killed_in_time(witness, kill_at)
    assert not worker.killed.is_set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes")
def test_a_call_blocked_in_its_worker_times_out_on_time_after_the_application_was_idle(
    tmp_path: Path,
) -> None:
    """The wait for the reply has no timeout of its own: the process's watchdog, asleep
    with nothing armed, wakes at the call's kill time and kills the worker."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        host.provide("cb", lambda x: x + 1)
        plugin = host.load(
            WAT.encode(), allow_unsigned=True, manifest=MANIFEST, limits=Limits(timeout_ms=200)
        )
        assert plugin.call("add", 1, 2) == 3
        idle(WATCHDOG)
        start = time.monotonic()
        with pytest.raises(PluginTimeout) as info:
            plugin.call("sleep", 60 * 10**9)  # a minute, blocked in host code
        took = time.monotonic() - start
        assert "worker process was killed" in str(info.value)
        assert took < 0.2 + BOUND_S + LOAD_SLACK_S, f"a 200 ms timeout took {took:.3f} s"
        assert plugin.call("add", 1, 2) == 3
