"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator

import pytest

from support.rawend import RawEnd
from wasmplug._runtime.process.wire import Channel, channel_fds


@pytest.fixture
def pair() -> Iterator[tuple[Channel, RawEnd]]:
    """The application's end of a process-tier channel (a :class:`Channel`) and the raw
    end a test plays the worker on. The pipe to the application holds 1 MiB (64 KiB
    by default), so a test can write a whole frame that big before it reads it."""
    ours, theirs = channel_fds()
    fcntl.fcntl(theirs[1], fcntl.F_SETPIPE_SZ, 1 << 20)
    chan = Channel(*ours)
    peer = RawEnd(*theirs)
    try:
        yield chan, peer
    finally:
        chan.close()
        peer.release()
