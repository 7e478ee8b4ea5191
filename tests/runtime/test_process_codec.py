"""The process tier's wire decoders hold against a lying worker.

A worker's results (and its host calls' arguments) are decoded in the application
against their WIT types. Whatever a compromised worker sends, a decoder either
returns a value the in-process lifter could have produced, whose encoding is the
wire value it was given (so nothing illegal gets through, an out-of-range ``f32``
included), or raises :class:`ProtocolError`: never another exception, and never
a recursion the data chose.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import wat as w
from support.bridge import TYPES, echo_funcs, load
from support.rawend import RawEnd
from support.values import ROUND_TRIPS
from wasmplug import PluginHost
from wasmplug._bridge.wit import HandleT, WitType
from wasmplug._runtime.plugin import find_export
from wasmplug._runtime.process.codec import ProtocolError, decoder, encoder
from wasmplug._runtime.process.wire import Channel


class NoHandles:
    """The ``Handles`` of a call that lent no objects: every id is unknown."""

    def object_id(self, ty: HandleT, obj: Any) -> int:
        raise AssertionError("no handle types here")

    def object_for(self, ty: HandleT, oid: int) -> Any:
        raise ProtocolError(f"no object with id {oid}")


HANDLES = NoHandles()


@pytest.fixture(scope="module")
def wit_types() -> Iterator[dict[str, WitType]]:
    """The bridge's WIT type of every ``TYPES`` key, read from a loaded component."""
    with PluginHost(cache_dir=False) as host:
        plugin = load(host, w.component(echo_funcs(list(TYPES))))
        types = {}
        for key in TYPES:
            ex = find_export(plugin, f"echo-{key}")
            assert ex is not None
            types[key] = ex.sig.params[0][1]
        yield types


JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    3,
    2**32,
    2**64 - 1,
    -(2**63),
    0.5,
    1e300,
    -1e-300,
    math.inf,
    math.nan,
    "",
    "x",
    "ab",
    "\x00",
    "\U0010ffff",
    b"",
    b"\xff",
    [],
    [0],
    [1],
    [2],
    [0, 1],
    [1, None],
    [0, None, None],
    [None],
    [[]],
    [-1, 0],
    [0.0],
    ["x"],
    {},
    {"x": 1},
    {0: [0]},
    msgpack.ExtType(1, b"x"),  # what msgpack decodes an extension type to
    msgpack.Timestamp(0),  # and its timestamp extension (-1)
]


def _canonical(wire: Any) -> bytes:
    """``wire`` as msgpack bytes: NaN equals NaN, and 1 is not 1.0 or True."""
    return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]


def _mutations(wire: Any) -> Iterator[Any]:
    """``wire`` with one node (itself, or a node inside it) replaced by each junk value."""
    yield from JUNK
    if isinstance(wire, list):
        for i, item in enumerate(wire):
            for bad in _mutations(item):
                yield [*wire[:i], bad, *wire[i + 1 :]]
        yield [*wire, 0]  # one item too many
        if wire:
            yield wire[:-1]  # one too few


def _check(t: WitType, wire: Any) -> None:
    dec, enc = decoder(t), encoder(t)
    try:
        value = dec(wire, HANDLES)
    except ProtocolError:
        return
    # Accepted: a legal value, which is exactly what a truthful worker would have sent.
    assert _canonical(enc(value, HANDLES)) == _canonical(wire), (t, wire, value)


_SAMPLES = [(p.values[0], p.values[1]) for p in ROUND_TRIPS]


@pytest.mark.parametrize(("key", "value"), _SAMPLES, ids=[p.id for p in ROUND_TRIPS])
def test_a_mutated_wire_value_is_refused_or_legal(
    wit_types: dict[str, WitType], key: str, value: Any
) -> None:
    t = wit_types[key]
    wire = encoder(t)(value, HANDLES)
    _check(t, wire)  # the truthful value round-trips
    if isinstance(wire, list) and len(wire) > 64:
        wire = wire[:3]  # the mutations of a long list are the mutations of a short one
    for bad in _mutations(wire):
        _check(t, bad)


@pytest.mark.parametrize(
    ("key", "wire"),
    [
        ("f32", 1e300),  # no float32 is that large: a truthful worker lifted a float32
        ("f32", 0.1),  # not a float32 either (0.1 rounds to 0.10000000149...)
        ("f32", 1),  # an int
        ("f64", True),
        ("u8", 256),
        ("s8", -129),
        ("u64", 2**64),
        ("s64", 2**63),
        ("u32", -1),
        ("bool", 1),
        ("char", "\ud800"),  # msgpack's decoder never makes one, but the type says no
        ("char", ""),
        ("string", b"x"),
        ("bytes", "x"),
        ("bytes", [1, 2]),
        ("u32s", (1, 2)),
        ("u32s", [1, True]),
        ("color", 3),
        ("color", -1),
        ("color", "red"),
        ("perms", 8),  # a bit beyond the three flags
        ("perms", -1),
        ("flags32", 2**32),
        ("shape", [5]),
        ("shape", [0, 1.0]),  # "empty" has no payload
        ("shape", [1]),  # "num" has one
        ("shape", [True, 1.0]),
        ("opt-u32", []),
        ("opt-u32", [1, 2]),
        ("opt-u32", 5),
        ("opt-opt", [[1, 2]]),
        ("res", [2, 1]),
        ("res", [True, 1]),
        ("res", [0]),  # ok carries a u32
        ("res-unit", [[0, None]]),
        ("point", [1]),
        ("point", [1, 2, 3]),
        ("point", {"x": 1, "y": 2}),
        ("tuple", [1, "a"]),
        ("scalars", [True, "c", 0.1, 0, 0, 0.0]),  # f is not a float32
    ],
)
def test_an_illegal_wire_value_is_a_protocol_error(
    wit_types: dict[str, WitType], key: str, wire: Any
) -> None:
    with pytest.raises(ProtocolError):
        decoder(wit_types[key])(wire, HANDLES)


def test_deep_nesting_in_a_value_is_a_protocol_error(wit_types: dict[str, WitType]) -> None:
    """A decoder walks the WIT type, not the data: a value nested a million deep where
    the type has two levels is refused at the third, without recursing into it."""
    deep: Any = []
    for _ in range(1_000_000):
        deep = [deep]
    with pytest.raises(ProtocolError):
        decoder(wit_types["chunks"])(deep, HANDLES)
    with pytest.raises(ProtocolError):
        decoder(wit_types["points"])([deep], HANDLES)


def test_a_huge_list_of_the_wrong_items_fails_at_the_first(
    wit_types: dict[str, WitType],
) -> None:
    start = time.process_time()
    with pytest.raises(ProtocolError):
        decoder(wit_types["u32s"])(["x"] * 1_000_000, HANDLES)
    assert time.process_time() - start < 1.0, "the decoder went past the first bad item"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xa1\xff", id="invalid-utf8"),
        pytest.param(b"\xa3\xed\xa0\x80", id="utf8-encoded-surrogate"),
        pytest.param(b"\xa2\xc3", id="truncated-utf8"),
        pytest.param(b"\x91" * 100_000 + b"\xc0", id="deep-nesting"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="array-length-beyond-the-frame"),
        pytest.param(b"\xc7\x01\x05x", id="ext-type"),
    ],
)
def test_an_undecodable_frame_is_a_protocol_error(
    payload: bytes, pair: tuple[Channel, RawEnd]
) -> None:
    """What msgpack itself refuses (bad UTF-8 in a string, nesting past its stack, lengths
    past the end of the frame, extension types) is a ProtocolError too, never a raw error."""
    chan, peer = pair
    peer.sendall(struct.pack(">I", len(payload) + 1) + b"\x92" + payload)  # [op?, ...]
    with pytest.raises(ProtocolError):
        chan.recv()
