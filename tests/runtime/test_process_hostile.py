"""The process tier against a compromised worker: bounded work, bounded waits, no escape.

Each test replaces the worker with a fake (tests/support/fakeworker.py) that speaks
the wire protocol as an attacker would: floods of valid frames, a frame trickled a
byte at a time, a worker that stops reading, frames that decode into far more
objects than bytes, a worker that forks. The application must end the call with a
typed error (``PluginCrashed`` "broke the wire protocol") and kill the worker, even
when the call has no time limit (``Limits(timeout_ms=None)``); the next call gets a
real worker.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fakeworker import FakeWorkers, frame
from support.rawend import RawEnd
from support.timing import LOAD_SLACK_S
from support.workerwat import MANIFEST, WAT
from wasmplug import InstantiationError, Limits, Plugin, PluginCrashed, PluginHost
from wasmplug._runtime.process import spawn as spawn_module
from wasmplug._runtime.process import wire as wire_module
from wasmplug._runtime.process.budget import IDLE_FRAMES, LOG_FRAMES_PER_S
from wasmplug._runtime.process.wire import Channel, Op

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="worker checks read /proc (Linux)"
)

STALL_S = 0.5
"""The stall bound these tests set (the default, wire.STALL_S, is 10 s)."""

NO_LIMIT = Limits(timeout_ms=None)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    monkeypatch.setattr(spawn_module, "STALL_S", STALL_S)
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as h:
        yield h


def load(host: PluginHost, limits: Limits = NO_LIMIT) -> Plugin:
    host.provide("cb", lambda x: x + 1)
    return host.load(WAT.encode(), allow_unsigned=True, manifest=MANIFEST, limits=limits)


def ends(fn: Callable[[], Any], within_s: float) -> BaseException | None:
    """Run ``fn`` in a thread; what it raised (``None``: it returned), asserting it ended
    within ``within_s`` (a hang fails the test instead of hanging it)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within_s)
    assert not thread.is_alive(), f"the call did not end within {within_s} s"
    return outcome[0]


def broke_the_protocol(outcome: BaseException | None, fakes: list[Any], why: str) -> None:
    assert isinstance(outcome, PluginCrashed), outcome
    assert "broke the wire protocol" in str(outcome), outcome
    assert why in str(outcome), outcome
    assert fakes[0].proc.returncode == -signal.SIGKILL


def answer_call(script: Callable[[Channel, RawEnd], None]) -> Any:
    """A fake's script: wait for the CALL, then run ``script``."""

    def run(chan: Channel, sock: RawEnd) -> None:
        chan.recv()
        script(chan, sock)

    return run


# -- floods of valid frames ---------------------------------------------------------------


def test_a_log_flood_kills_the_worker_even_without_a_time_limit(
    host: PluginHost, fake_workers: FakeWorkers
) -> None:
    """Regression: every LOG frame was decoded and handed to the rate limiter, which
    dropped it; a worker could keep the calling thread busy that way until the call's
    deadline, and with ``timeout_ms=None`` for ever (here: the old code served all of
    them and returned the lie's result)."""

    def flood(chan: Channel, sock: RawEnd) -> None:
        for i in range(3 * LOG_FRAMES_PER_S):
            chan.send([Op.LOG, logging.INFO, f"line {i}"])
        chan.send([Op.RESULT, 0])

    fakes = fake_workers.install(answer_call(flood))
    plugin = load(host)
    outcome = ends(lambda: plugin.call("add", 1, 2), 60)
    broke_the_protocol(outcome, fakes, "LOG frames in a second")
    assert plugin.call("add", 1, 2) == 3  # a real worker


@pytest.mark.parametrize(
    "idle",
    [[Op.DROP, []], [Op.DROP, [12345]], [Op.SPAN, 0, 1, 2]],
    ids=["empty-drops", "drops-of-unknown-ids", "spans"],
)
def test_frames_that_make_no_progress_are_bounded(
    host: PluginHost, fake_workers: FakeWorkers, idle: list[Any]
) -> None:
    """Regression: DROP and SPAN frames were served in any number; a worker sending
    them without end kept a call with no time limit going for ever."""

    def flood(chan: Channel, sock: RawEnd) -> None:
        for _ in range(IDLE_FRAMES + 1):
            chan.send(idle)
        chan.send([Op.RESULT, 0])

    fakes = fake_workers.install(answer_call(flood))
    plugin = load(host)
    outcome = ends(lambda: plugin.call("add", 1, 2), 60)
    broke_the_protocol(outcome, fakes, "DROP/SPAN frames in a row")


def test_drops_between_host_calls_are_progress(host: PluginHost, fake_workers: FakeWorkers) -> None:
    """The bound counts idle frames in a row: a legal worker sends a DROP before many of
    its host calls."""

    def calls(chan: Channel, sock: RawEnd) -> None:
        for _ in range(3):
            for _ in range(IDLE_FRAMES):
                chan.send([Op.DROP, [1]])
            chan.send([Op.HOSTCALL, 0, [1]])
            assert chan.recv() == [Op.RETURN, True, 2]
        chan.send([Op.RESULT, 7])

    fake_workers.install(answer_call(calls))
    plugin = load(host)
    assert plugin.call("call-cb", 1) == 7


# -- stalls: a trickled frame, a worker that stops reading ---------------------------------


def test_a_frame_trickled_a_byte_at_a_time_is_a_stall(
    host: PluginHost, fake_workers: FakeWorkers
) -> None:
    """Regression (slowloris): a frame sent a byte at a time, each just before the last
    wait would end, held a call with no time limit for as long as the worker liked."""
    data = frame([Op.RESULT, 0])

    def trickle(chan: Channel, sock: RawEnd) -> None:
        for i in range(len(data)):  # 7 bytes over 2.8 s, against a 0.5 s bound
            sock.sendall(data[i : i + 1])
            time.sleep(0.4)

    fakes = fake_workers.install(answer_call(trickle))
    plugin = load(host)
    start = time.monotonic()
    outcome = ends(lambda: plugin.call("add", 1, 2), 60)
    broke_the_protocol(outcome, fakes, "bytes of a")
    assert time.monotonic() - start < STALL_S + 0.4 + 1.0 + LOAD_SLACK_S


def test_a_length_prefix_with_no_frame_after_it_is_a_stall(
    host: PluginHost, fake_workers: FakeWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prefix just under the frame cap, then silence: the application waits no longer
    than the stall bound plus the frame's size at MIN_RATE (made fast here)."""
    monkeypatch.setattr(wire_module, "MIN_RATE", 1 << 40)
    limits = Limits(timeout_ms=None, max_result_bytes=1 << 20)  # a 3 MiB frame cap

    def prefix(chan: Channel, sock: RawEnd) -> None:
        sock.sendall((3 << 20).to_bytes(4, "big") + b"\x92")

    fakes = fake_workers.install(answer_call(prefix))
    plugin = load(host, limits)
    outcome = ends(lambda: plugin.call("add", 1, 2), 60)
    broke_the_protocol(outcome, fakes, "bytes of a")


def test_a_worker_that_stops_reading_cannot_block_the_application(
    host: PluginHost, fake_workers: FakeWorkers
) -> None:
    """Regression: a worker that sent host calls without reading the replies filled the
    channel, and the application's send of the next reply blocked for ever in a call
    with no time limit. Every send now has a deadline."""

    def pipeline(chan: Channel, sock: RawEnd) -> None:
        while True:  # until the application kills it (OSError)
            chan.send([Op.HOSTCALL, 0, [1]])

    fakes = fake_workers.install(answer_call(pipeline))
    plugin = load(host)
    outcome = ends(lambda: plugin.call("call-cb", 1), 60)
    broke_the_protocol(outcome, fakes, "stopped reading")


def test_a_worker_that_closes_the_channel_mid_frame_is_killed(
    host: PluginHost, fake_workers: FakeWorkers
) -> None:
    def half(chan: Channel, sock: RawEnd) -> None:
        sock.sendall(frame([Op.RESULT, 3])[:-1])
        sock.close_write()  # the process lives on

    fakes = fake_workers.install(answer_call(half))
    plugin = load(host)
    with pytest.raises(PluginCrashed, match="killed by SIGKILL"):
        plugin.call("add", 1, 2)
    assert fakes[0].proc.returncode == -signal.SIGKILL
    assert plugin.call("add", 1, 2) == 3


# -- decode memory ---------------------------------------------------------------------------

BLOWUPS = {
    # Each 1 byte (or 3) on the wire, 56-72 bytes once decoded.
    "empty-arrays": [[]] * 100_000,
    "empty-maps": [{}] * 100_000,
    "short-strings": ["ab"] * 100_000,
    "arrays-of-arrays": [[[]] * 1000] * 100,
    "arrays-of-strings": [["ab"] * 1000] * 100,
    # Regression: none of these arrays completes before the innermost one, and msgpack
    # counted objects (list_hook) only as an array completed: ~20 MiB for 0.9 MB.
    "deep-short-strings": functools.reduce(
        lambda inner, _: ["ab"] * 1000 + [inner], range(300), []
    ),
}


@pytest.mark.parametrize("value", list(BLOWUPS.values()), ids=list(BLOWUPS))
def test_a_frame_cannot_decode_into_far_more_than_its_type_allows(
    host: PluginHost, fake_workers: FakeWorkers, value: Any
) -> None:
    """Regression: a frame was decoded whole before its value was checked against the
    result type, so a worker could make the application allocate ~65 bytes per frame
    byte (a 100 MiB frame of empty arrays: 6.5 GiB) for an ``s32`` result. The objects a
    frame may decode into are now bounded by what the plugin's types can hold."""
    data = frame([Op.RESULT, value])
    fakes = fake_workers.install(answer_call(lambda chan, sock: sock.sendall(data)))
    plugin = load(host)
    tracemalloc.start()
    try:
        with pytest.raises(PluginCrashed, match="broke the wire protocol"):
            plugin.call("add", 1, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fakes[0].proc.returncode == -signal.SIGKILL
    # The old code: 5-7 MiB for these 100-300 KB frames.
    assert peak < 2 * len(data) + (1 << 20), f"{peak} bytes for a {len(data)}-byte frame"


DEEP = b"\x91" * 1000 + b"\xc0"  # [[[...[nil]...]]], 1,000 deep: ~1 KB
"""msgpack nests up to 1,024 deep; a repr of such a value raises RecursionError."""


@pytest.mark.parametrize(
    "message",
    [
        b"\x92\x0b" + DEEP,  # RESULT
        b"\x92\x0c" + DEEP,  # FAULT of a "kind" 1,000 deep
        b"\x94\x0c\xa4inst\xa1a" + DEEP,  # FAULT "inst", its cause
        b"\x93\x0d\x00\x91" + DEEP,  # HOSTCALL cb, its argument
        b"\x93\x0e\x14" + DEEP,  # LOG
        b"\x92\x0f\x91" + DEEP,  # DROP
    ],
    ids=["result", "fault-kind", "fault-inst", "hostcall", "log", "drop"],
)
def test_a_frame_nested_past_its_types_is_a_protocol_violation(
    host: PluginHost, fake_workers: FakeWorkers, message: bytes
) -> None:
    """Regression: a FAULT whose kind was an array 1,000 deep made the application
    raise a bare RecursionError (its repr, for the error message); every position
    of a message nested deeper than its WIT types allow now kills the worker."""
    data = len(message).to_bytes(4, "big") + message
    fakes = fake_workers.install(answer_call(lambda chan, sock: sock.sendall(data)))
    plugin = load(host)
    outcome = ends(lambda: plugin.call("add", 1, 2), 60)
    broke_the_protocol(outcome, fakes, "")
    assert plugin.call("add", 1, 2) == 3


# -- wrong opcodes in the other protocol states ------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [[Op.RESULT, 0], [Op.HOSTCALL, 0, [1]], [Op.DONE], [Op.RETURN, True, 1], [77]],
    ids=["result", "hostcall", "done", "return", "unknown"],
)
def test_a_worker_that_lies_while_starting_is_killed(
    host: PluginHost, fake_workers: FakeWorkers, reply: list[Any]
) -> None:
    fakes = fake_workers.install(lambda chan, sock: chan.send(reply), ready=False)
    with pytest.raises(InstantiationError, match="cannot start a worker process"):
        load(host)
    assert fakes[0].proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "reply",
    [[Op.RESULT, 0], [Op.HOSTCALL, 0, [1]], [Op.READY, 1]],
    ids=["result", "hostcall", "ready"],
)
def test_a_worker_that_lies_to_reset_is_discarded(
    host: PluginHost, fake_workers: FakeWorkers, reply: list[Any]
) -> None:
    def lie(chan: Channel, sock: RawEnd) -> None:
        assert chan.recv() == [Op.RESET]
        chan.send(reply)

    fakes = fake_workers.install(lie)
    plugin = load(host)
    plugin.reset()
    assert fakes[0].proc.returncode == -signal.SIGKILL
    assert plugin.call("add", 1, 2) == 3  # a real worker


# -- the worker's process ------------------------------------------------------------------

FORKS = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = os.fork()
if child == 0:
    time.sleep(600)
    os._exit(0)
with open(sys.argv[1], "w") as f:
    f.write(str(child))
time.sleep(600)
"""


def test_close_kills_what_a_worker_forked(
    host: PluginHost, fake_workers: FakeWorkers, tmp_path: Path
) -> None:
    """Regression: close() SIGKILLed the worker's pid only, so a process a compromised
    worker forked (PR_SET_PDEATHSIG is not inherited) outlived it. Workers run in a
    process group of their own, and the group is killed."""
    pid_file = tmp_path / "child"
    fake_workers.install(lambda chan, sock: None, argv=(sys.executable, "-c", FORKS, str(pid_file)))
    plugin = load(host)
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the fake worker did not fork"
        time.sleep(0.02)
    child = int(pid_file.read_text())
    try:
        plugin.close()
        while not _gone(child):
            assert time.monotonic() < deadline, "the forked process outlived the worker"
            time.sleep(0.02)
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)


def _gone(pid: int) -> bool:
    """No such process, or a zombie (killed; its new parent reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"
