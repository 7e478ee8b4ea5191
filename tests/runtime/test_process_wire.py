"""The process tier's framed channel (wire.Channel): framing, caps, stalls and deadlines."""

from __future__ import annotations

import fcntl
import struct
import threading
import time

import msgpack
import pytest

from support.rawend import RawEnd
from support.timing import LOAD_SLACK_S
from wasmplug._runtime.process.codec import ProtocolError
from wasmplug._runtime.process.wire import Channel, Op


def frame(message: object) -> bytes:
    data = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(data)) + data


def test_a_message_is_one_frame_sent_in_one_piece(pair: tuple[Channel, RawEnd]) -> None:
    chan, peer = pair
    chan.send([Op.CALL, 0, [1, 2], []], time.monotonic() + 5)
    assert peer.recv(1 << 16) == frame([Op.CALL, 0, [1, 2], []])


def test_frames_split_and_coalesced_are_read_whole(pair: tuple[Channel, RawEnd]) -> None:
    chan, peer = pair
    data = frame([Op.RESULT, "x" * 3000]) + frame([Op.DONE]) + frame([Op.RESULT, b"\x00" * 9])

    def trickle() -> None:
        for i in range(0, len(data), 1000):
            peer.sendall(data[i : i + 1000])
            time.sleep(0.001)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        assert chan.recv() == [Op.RESULT, "x" * 3000]
        assert chan.recv() == [Op.DONE]
        assert chan.recv() == [Op.RESULT, b"\x00" * 9]
    finally:
        thread.join()


def test_a_frame_bigger_than_the_buffer_is_read_then_the_buffer_shrinks(
    pair: tuple[Channel, RawEnd],
) -> None:
    chan, peer = pair
    big = "y" * (1 << 20)
    thread = threading.Thread(target=peer.sendall, args=(frame([Op.RESULT, big]) + frame([7]),))
    thread.start()
    try:
        assert chan.recv() == [Op.RESULT, big]
        assert chan.recv() == [7]
    finally:
        thread.join()
    assert len(chan._buf) == 1 << 16, "the buffer grown for one big frame is given back"


def test_the_frame_cap_is_checked_before_the_frame_is_read(
    pair: tuple[Channel, RawEnd],
) -> None:
    chan, peer = pair
    chan.max_frame = 1000
    peer.sendall(struct.pack(">I", 1001))  # no payload follows: reading it would block
    with pytest.raises(ProtocolError, match="exceeds 1000"):
        chan.recv()


def test_a_receive_waits_for_the_next_message_until_the_peer_is_gone(
    pair: tuple[Channel, RawEnd],
) -> None:
    """No timeout of its own: the application's watchdog ends the wait by killing the
    worker, which closes its end (here: ``die``)."""
    chan, peer = pair
    timer = threading.Timer(0.1, peer.sendall, args=(frame([Op.DONE]),))
    timer.start()
    try:
        assert chan.recv() == [Op.DONE]
    finally:
        timer.join()
    timer = threading.Timer(0.1, peer.die)
    timer.start()
    try:
        with pytest.raises(EOFError):
            chan.recv()
    finally:
        timer.join()


@pytest.fixture
def stalling(pair: tuple[Channel, RawEnd]) -> tuple[Channel, RawEnd]:
    """``pair`` with a 0.2 s stall bound (as the application's end of a worker's)."""
    pair[0].stall_s = 0.2
    return pair


@pytest.mark.parametrize("sent", [2, 4, 6], ids=["part-of-the-prefix", "the-prefix", "more"])
def test_a_frame_that_stops_arriving_is_a_stall(
    stalling: tuple[Channel, RawEnd], sent: int
) -> None:
    chan, peer = stalling
    peer.sendall(frame([Op.RESULT, "x" * 100])[:sent])
    start = time.monotonic()
    with pytest.raises(ProtocolError, match="bytes of a"):
        chan.recv()
    assert 0.2 <= time.monotonic() - start < 0.2 + LOAD_SLACK_S + 1.0


def test_a_send_the_peer_does_not_take_is_a_stall(stalling: tuple[Channel, RawEnd]) -> None:
    chan, _ = stalling
    start = time.monotonic()
    with pytest.raises(ProtocolError, match="stopped reading"):
        chan.send([Op.RETURN, True, b"z" * (1 << 20)])  # > the pipe's 64 KiB
    assert 0.2 <= time.monotonic() - start < 0.2 + LOAD_SLACK_S + 1.0


def test_a_pipe_grows_once_a_frame_did_not_fit(pair: tuple[Channel, RawEnd]) -> None:
    chan, peer = pair
    assert fcntl.fcntl(chan.wfd, fcntl.F_GETPIPE_SZ) == 1 << 16
    chan.send([Op.RETURN, True, b"z" * 1000])
    assert peer.recv(1 << 16) == frame([Op.RETURN, True, b"z" * 1000])
    assert fcntl.fcntl(chan.wfd, fcntl.F_GETPIPE_SZ) == 1 << 16  # it fitted
    big = [Op.RETURN, True, b"z" * (300 << 10)]
    got = bytearray()

    def drain() -> None:
        while len(got) < len(frame(big)):
            got.extend(peer.recv(1 << 16))

    thread = threading.Thread(target=drain)
    thread.start()
    try:
        chan.send(big, time.monotonic() + 60)
    finally:
        thread.join(60)
    assert bytes(got) == frame(big)
    assert fcntl.fcntl(chan.wfd, fcntl.F_GETPIPE_SZ) == 1 << 18


def test_a_closed_channel_reads_eof(pair: tuple[Channel, RawEnd]) -> None:
    chan, _ = pair
    chan.close()
    chan.close()  # idempotent
    with pytest.raises(EOFError):
        chan.recv()
    with pytest.raises(OSError, match="Bad file descriptor"):
        chan.send([Op.DONE])


def test_a_send_to_a_peer_that_does_not_read_ends_at_its_deadline(
    pair: tuple[Channel, RawEnd],
) -> None:
    chan, _ = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        chan.send([Op.RETURN, True, b"z" * (16 << 20)], start + 0.2)  # > any socket buffer
    assert time.monotonic() - start < 3.0


def test_eof_and_garbage(pair: tuple[Channel, RawEnd]) -> None:
    chan, peer = pair
    peer.sendall(struct.pack(">I", 1) + b"\xc1")  # 0xc1: never used in msgpack
    with pytest.raises(ProtocolError, match="undecodable"):
        chan.recv()
    peer.sendall(frame({"op": 1}))
    with pytest.raises(ProtocolError, match="array starting with an int"):
        chan.recv()
    peer.die()
    with pytest.raises(EOFError):
        chan.recv()
