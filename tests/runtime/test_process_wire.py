"""The process tier's framed channel (wire.Channel): framing, caps and deadlines."""

from __future__ import annotations

import socket
import struct
import threading
import time

import msgpack
import pytest

from wasmplug._runtime.process.codec import ProtocolError
from wasmplug._runtime.process.wire import Channel, Op


def frame(message: object) -> bytes:
    data = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(data)) + data


def test_a_message_is_one_frame_sent_in_one_piece(pair: tuple[Channel, socket.socket]) -> None:
    chan, peer = pair
    chan.send([Op.CALL, 0, [1, 2], []], time.monotonic() + 5)
    assert peer.recv(1 << 16) == frame([Op.CALL, 0, [1, 2], []])


def test_frames_split_and_coalesced_are_read_whole(pair: tuple[Channel, socket.socket]) -> None:
    chan, peer = pair
    data = frame([Op.RESULT, "x" * 3000]) + frame([Op.DONE]) + frame([Op.RESULT, b"\x00" * 9])

    def trickle() -> None:
        for i in range(0, len(data), 1000):
            peer.sendall(data[i : i + 1000])
            time.sleep(0.001)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        assert chan.recv(time.monotonic() + 30) == [Op.RESULT, "x" * 3000]
        assert chan.recv(time.monotonic() + 30) == [Op.DONE]
        assert chan.recv(time.monotonic() + 30) == [Op.RESULT, b"\x00" * 9]
    finally:
        thread.join()


def test_a_frame_bigger_than_the_buffer_is_read_then_the_buffer_shrinks(
    pair: tuple[Channel, socket.socket],
) -> None:
    chan, peer = pair
    big = "y" * (1 << 20)
    thread = threading.Thread(target=peer.sendall, args=(frame([Op.RESULT, big]) + frame([7]),))
    thread.start()
    try:
        assert chan.recv(time.monotonic() + 30) == [Op.RESULT, big]
        assert chan.recv(time.monotonic() + 30) == [7]
    finally:
        thread.join()
    assert len(chan._buf) == 1 << 16, "the buffer grown for one big frame is given back"


def test_the_frame_cap_is_checked_before_the_frame_is_read(
    pair: tuple[Channel, socket.socket],
) -> None:
    chan, peer = pair
    chan.max_frame = 1000
    peer.sendall(struct.pack(">I", 1001))  # no payload follows: reading it would block
    with pytest.raises(ProtocolError, match="exceeds 1000"):
        chan.recv(time.monotonic() + 30)


def test_a_receive_ends_at_its_deadline(pair: tuple[Channel, socket.socket]) -> None:
    chan, _ = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        chan.recv(start + 0.05)
    took = time.monotonic() - start
    assert 0.05 <= took < 2.0  # the kernel rounds up to its tick; a loaded machine adds more


def test_a_shorter_deadline_is_armed_after_a_longer_one(
    pair: tuple[Channel, socket.socket],
) -> None:
    chan, peer = pair
    peer.sendall(frame([Op.DONE]))
    assert chan.recv(time.monotonic() + 60) == [Op.DONE]  # arms about 60 s
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        chan.recv(start + 0.05)  # must not wait the 60 s armed before
    assert time.monotonic() - start < 2.0


def test_no_deadline_after_a_deadline_waits_for_the_message(
    pair: tuple[Channel, socket.socket],
) -> None:
    chan, peer = pair
    with pytest.raises(TimeoutError):
        chan.recv(time.monotonic() + 0.01)
    timer = threading.Timer(0.1, peer.sendall, args=(frame([Op.DONE]),))
    timer.start()
    try:
        assert chan.recv(None) == [Op.DONE]  # the 10 ms armed before no longer applies
    finally:
        timer.join()


def test_a_send_to_a_peer_that_does_not_read_ends_at_its_deadline(
    pair: tuple[Channel, socket.socket],
) -> None:
    chan, _ = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        chan.send([Op.RETURN, True, b"z" * (16 << 20)], start + 0.2)  # > any socket buffer
    assert time.monotonic() - start < 3.0


def test_eof_and_garbage(pair: tuple[Channel, socket.socket]) -> None:
    chan, peer = pair
    peer.sendall(struct.pack(">I", 1) + b"\xc1")  # 0xc1: never used in msgpack
    with pytest.raises(ProtocolError, match="undecodable"):
        chan.recv(time.monotonic() + 5)
    peer.sendall(frame({"op": 1}))
    with pytest.raises(ProtocolError, match="array starting with an int"):
        chan.recv(time.monotonic() + 5)
    peer.close()
    with pytest.raises(EOFError):
        chan.recv(time.monotonic() + 5)
