"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from wasmplug._runtime.process.wire import Channel


@pytest.fixture
def pair() -> Iterator[tuple[Channel, socket.socket]]:
    """The application's end of a process-tier channel (a :class:`Channel`) and the raw
    socket a test plays the worker on."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = Channel(ours)
    try:
        yield chan, theirs
    finally:
        chan.close()
        theirs.close()
