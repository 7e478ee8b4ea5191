"""A fake worker process: a test double that speaks the worker's side of the wire.

``FakeWorkers.install(script)`` makes the next worker a plugin starts a fake one: a
real process (``sleep`` by default, in a session of its own like a real worker)
whose channel is served by a thread of the test running ``script(chan, raw)``, so a
test can send anything a compromised worker could: any frame, at any pace, or
nothing. The application's end of the channel is made exactly as for a real worker
(``spawn.parent_channel``). When the process dies (the application killed it), the
fake's end of the channel is closed as a real worker's would be (``RawEnd.die``):
the application's wait for it ends with EOF. Workers started after the fake are real.
"""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgpack
import pytest

from wasmplug._runtime.process import spawn as spawn_module
from wasmplug._runtime.process import workers as workers_module
from wasmplug._runtime.process.codec import ProtocolError
from wasmplug._runtime.process.spawn import WorkerProcess, spawn_worker
from wasmplug._runtime.process.wire import Channel, Op, channel_fds

from .rawend import RawEnd

__all__ = ["FakeWorkers", "Script", "fake_workers", "frame"]

Script = Callable[[Channel, RawEnd], None]
"""What the fake does once it has answered ``INIT`` (with ``READY`` unless told not
to): it gets its end of the channel, framed and raw."""


def frame(message: Any) -> bytes:
    """``message`` as one frame: a 4-byte big-endian length, then msgpack."""
    data = msgpack.packb(message, use_bin_type=True)
    return len(data).to_bytes(4, "big") + data


class FakeWorkers:
    """Installs fake workers and, at the end of the test, kills them and joins their
    threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.workers: list[WorkerProcess] = []
        self._threads: list[threading.Thread] = []

    def install(
        self, script: Script, *, argv: Sequence[str] = ("sleep", "600"), ready: bool = True
    ) -> list[WorkerProcess]:
        """Make the next worker started a fake running ``script``; returns the list the
        fake is put in once started."""
        started: list[WorkerProcess] = []

        def spawn() -> WorkerProcess:
            if started:
                return spawn_worker()  # the replacement is a real worker
            ours, theirs = channel_fds()
            proc = subprocess.Popen(list(argv), start_new_session=True)
            worker = WorkerProcess(proc, spawn_module.parent_channel(*ours), tempfile.mkdtemp())
            started.append(worker)
            self.workers.append(worker)
            chan = Channel(*theirs)
            end = RawEnd(*theirs, chan=chan)
            for target, args in (
                (self._serve, (chan, end, proc.pid, script, ready)),
                (self._die_with, (end, proc.pid)),
            ):
                thread = threading.Thread(target=target, args=args, daemon=True)
                self._threads.append(thread)
                thread.start()
            return worker

        self._monkeypatch.setattr(workers_module, "spawn_worker", spawn)
        return started

    @staticmethod
    def _serve(chan: Channel, end: RawEnd, pid: int, script: Script, ready: bool) -> None:
        try:
            chan.recv()  # INIT
            if ready:
                chan.send([Op.READY, pid])
            script(chan, end)
            while True:  # until the application kills it
                chan.recv()
        except (EOFError, OSError, ProtocolError):
            pass  # killed, or the test ended
        finally:
            end.release()

    @staticmethod
    def _die_with(end: RawEnd, pid: int) -> None:
        """Close the fake's end of the channel once its process has exited."""
        pidfd = os.pidfd_open(pid)
        try:
            select.select([pidfd], [], [])  # readable once the process has exited
        finally:
            os.close(pidfd)
        end.die()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive(), "a fake worker's thread did not end"


@pytest.fixture
def fake_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWorkers]:
    fakes = FakeWorkers(monkeypatch)
    try:
        yield fakes
    finally:
        fakes.close()
