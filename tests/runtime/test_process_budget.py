"""The decode bound of the process tier (budget.py) against the codec's wire forms.

The bound must hold every legal value (a worker lifting within
``Limits.max_result_bytes`` can never exceed it: a legal worker is never killed) and
must stay close to it (it is what keeps an attacker's frame small). Each case builds
the value of its type with the most wire objects that the lift's charges allow,
encodes it with the codec a real worker uses, and decodes it through a channel
bounded by :func:`frame_objects`.
"""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any

import msgpack
import pytest

from support.rawend import RawEnd
from wasmplug._bridge.lift import VALUE_BYTES
from wasmplug._bridge.values import Ok, Variant
from wasmplug._bridge.wit import (
    EnumT,
    FuncSig,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
)
from wasmplug._runtime.process.budget import (
    ENVELOPE,
    check_frame,
    frame_depth,
    frame_objects,
    value_objects,
)
from wasmplug._runtime.process.codec import ProtocolError, encoder
from wasmplug._runtime.process.wire import Channel, Op

M = 64 << 10  # max_result_bytes of these cases

U8, U32, STR = Prim("u8"), Prim("u32"), Prim("string")
POINT = RecordT((("x", U32), ("y", OptionT(U32))))
SHAPE = VariantT((("none", None), ("point", POINT), ("pair", TupleT((U32, U32)))))
TYPES: dict[str, WitType] = {
    "list<u32>": ListT(U32),
    "list<string>": ListT(STR),
    "list<list<u8>>": ListT(ListT(U8)),
    "list<point>": ListT(POINT),
    "list<shape>": ListT(SHAPE),
    "list<option<result<u32, string>>>": ListT(OptionT(ResultT(U32, STR))),
    "list<list<u32>>": ListT(ListT(U32)),
    "record with a list": RecordT((("name", STR), ("points", ListT(POINT)))),
    "list<enum>": ListT(EnumT(("a", "b"))),
}


def charged(t: WitType) -> int:
    """Values a list element is charged for (``_bridge.lift``: a record or tuple
    counts itself and its fields)."""
    if isinstance(t, RecordT):
        return 1 + sum(charged(ft) for _, ft in t.fields)
    if isinstance(t, TupleT):
        return 1 + sum(charged(et) for et in t.elements)
    return 1


def fullest(t: WitType, left: list[int]) -> Any:
    """The value of ``t`` with the most wire objects whose lift fits ``left[0]`` bytes:
    the outermost list takes as many elements as the charges allow (no case here has
    a nested list with more objects per charged value than the list holding it)."""
    if isinstance(t, ListT):
        if t.element == U8:
            return b""
        weight = VALUE_BYTES * charged(t.element)
        n, left[0] = left[0] // weight, 0  # all of it here: nested lists stay empty
        return [fullest(t.element, left) for _ in range(n)]
    if isinstance(t, RecordT):
        return {name: fullest(ft, left) for name, ft in t.fields}
    if isinstance(t, TupleT):
        return tuple(fullest(et, left) for et in t.elements)
    if isinstance(t, VariantT):
        name, payload = max(t.cases, key=lambda c: objects_of(c[1]))
        return Variant(name, None if payload is None else fullest(payload, left))
    if isinstance(t, OptionT):
        return fullest(t.payload, left)
    if isinstance(t, ResultT):
        return Ok(None if t.ok is None else fullest(t.ok, left))
    if isinstance(t, EnumT):
        return t.names[-1]
    return {"u32": 2**32 - 1, "u8": 255, "string": ""}[t.name]  # type: ignore[union-attr]


def objects_of(t: WitType | None) -> int:
    return 0 if t is None else value_objects(t, None) or 0


def count(wire: Any) -> int:
    """Objects in a decoded msgpack value."""
    if isinstance(wire, list):
        return 1 + sum(count(w) for w in wire)
    return 1


class _NoHandles:
    def object_id(self, ty: Any, obj: Any) -> int:
        raise AssertionError

    def object_for(self, ty: Any, oid: int) -> Any:
        raise AssertionError


@pytest.mark.parametrize("t", list(TYPES.values()), ids=list(TYPES))
def test_the_fullest_legal_value_fits_the_bound_and_the_bound_is_tight(
    t: WitType, pair: tuple[Channel, RawEnd]
) -> None:
    wire = encoder(t)(fullest(t, [M]), _NoHandles())
    bound = value_objects(t, M)
    assert bound is not None
    assert count(wire) <= bound
    assert bound <= 4 * count(wire) + 64, "the bound is far above what the type can hold"
    # Decoded through a channel bounded for a plugin returning t, in a frame longer
    # than the bound (so the count applies).
    chan, peer = pair
    chan.max_objects = frame_objects([FuncSig("f", (), t)], [], M) or 0
    message = [Op.RESULT, wire, "x" * chan.max_objects]
    data = msgpack.packb(message, use_bin_type=True)
    assert len(data) > chan.max_objects
    peer.sendall(len(data).to_bytes(4, "big") + data)
    assert chan.recv() == message


def test_types_without_lists_are_bounded_even_without_a_result_limit() -> None:
    assert value_objects(SHAPE, None) == 2 + 1 + 1 + 2  # [case, [x, [y]]]
    assert value_objects(ListT(U32), None) is None
    assert frame_objects([FuncSig("f", (), U32)], [FuncSig("h", (("a", STR),), None)], None) == (
        ENVELOPE + 2
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"\xdc\xff\xff" + b"\x90" * 0xFFFF,  # one array longer than the bound
        b"\xdc\x00\x10" + (b"\xdc\x00\x10" + b"\x90" * 16) * 16,  # many small ones
        b"\x81\xa1a\x01",  # a map
        b"\xc7\x00\x05",  # an extension type
    ],
    ids=["long-array", "nested-arrays", "map", "ext"],
)
def test_a_frame_past_the_bound_is_refused_while_it_is_decoded(
    payload: bytes, pair: tuple[Channel, RawEnd]
) -> None:
    chan, peer = pair
    chan.max_objects = 100
    data = b"\x93\x0b" + payload + b"\xc4\xff" + b"\x00" * 255  # longer than the bound
    peer.sendall(len(data).to_bytes(4, "big") + data)
    with pytest.raises(ProtocolError):
        chan.recv()


# -- depth, and the walk that counts before anything is built --------------------------------


def depth(wire: Any) -> int:
    """How many arrays deep a decoded msgpack value nests."""
    if isinstance(wire, list):
        return 1 + max((depth(w) for w in wire), default=0)
    return 0


@pytest.mark.parametrize("t", list(TYPES.values()), ids=list(TYPES))
def test_the_depth_bound_is_what_the_type_nests_to(t: WitType) -> None:
    """The deepest legal value of each type fits the bound exactly: as a RESULT, and
    as a host call's argument."""
    left = [M]
    deepest = fullest(t, [0]) if isinstance(t, ListT) else fullest(t, left)
    wire = encoder(t)(deepest, _NoHandles())
    if isinstance(t, ListT) and t.element != U8:
        # One element, itself the deepest: what an empty outer list cannot show.
        wire = [encoder(t.element)(fullest(t.element, [0]), _NoHandles())]
    result = frame_depth([FuncSig("f", (), t)], [])
    hostcall = frame_depth([], [FuncSig("h", (("a", t),), None)])
    assert depth([Op.RESULT, wire]) <= result
    assert depth([Op.HOSTCALL, 0, [wire]]) <= hostcall
    assert hostcall == result + 1


def test_frame_depth_of_scalar_plugins_is_the_envelope() -> None:
    assert frame_depth([FuncSig("f", (), U32)], [FuncSig("h", (("a", STR),), None)]) == 2
    assert frame_depth([FuncSig("f", (), ListT(ListT(U32)))], []) == 3
    assert frame_depth([FuncSig("f", (), OptionT(POINT))], []) == 4  # [11, [[x, [y]]]]


VALUES = {
    "scalar": [Op.RESULT, 3],
    "small-ints": [Op.RESULT, list(range(128)) * 8],
    "u32-same-size": [Op.RESULT, [2**31 + i for i in range(1000)]],
    "numbers-mixed": [
        Op.RESULT,
        [(5, 300, 70_000, -3, -200, 2**40, 1.5, None, True)[i % 9] for i in range(999)],
    ],
    "f64": [Op.RESULT, [0.5] * 100],
    "strings": [Op.RESULT, ["ab", "é" * 40, "", "x" * 300, "y" * 70_000] * 5],
    "bytes": [Op.RESULT, [b"", b"z" * 255, b"z" * 300, b"z" * 70_000]],
    "nested": [Op.RESULT, [[[1, [2, None]], []], [[3, [4, [5]]]]] * 20],
    "numbers-then-arrays": [Op.RESULT, [1] * 300 + [[2] * 20] * 3],
}


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_check_frame_counts_and_measures_exactly_what_msgpack_builds(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    objects, deep = count(value), depth(value)
    for form in (data, memoryview(data)):
        check_frame(form, objects, deep)
        with pytest.raises(ProtocolError, match="objects"):
            check_frame(form, objects - 1, deep)
        with pytest.raises(ProtocolError, match="deep"):
            check_frame(form, objects, deep - 1)
    for cut in (1, 2, len(data) // 2):
        with pytest.raises(ProtocolError, match="truncated"):
            check_frame(data[:-cut], objects, deep)
    with pytest.raises(ProtocolError, match="more than one message"):
        check_frame(data + b"\xc0", objects, deep)


@pytest.mark.parametrize(
    "data", [b"\x91\x81\x01\x02", b"\x91\xd4\x00\x00", b"\x91\xc1", b"\x92\x01\xc8\x00\x01\x05\x00"]
)
def test_check_frame_refuses_maps_extension_types_and_reserved_bytes(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="map, extension type or reserved byte"):
        check_frame(data, 100, 100)


def deep_strings(levels: int, per_level: int) -> list[Any]:
    """Arrays nested ``levels`` deep, each holding ``per_level`` two-character strings
    before the next: none completes before the innermost one."""
    value: list[Any] = []
    for _ in range(levels):
        value = ["ab"] * per_level + [value]
    return [Op.RESULT, value]


@pytest.mark.parametrize(
    ("max_depth", "why"), [(2, "nests arrays more than 2 deep"), (1000, "more than 1200 objects")]
)
def test_a_deep_frame_is_refused_before_anything_is_built(
    pair: tuple[Channel, RawEnd], max_depth: int, why: str
) -> None:
    """Regression: objects were counted as msgpack completed each array (``list_hook``),
    so the arrays still open held theirs uncounted: a frame 400 deep built ~20 bytes of
    short strings per frame byte (here ~28 MiB for a 1.4 MiB frame) before anything was
    counted. Now the frame's bytes are checked first, against the depth and the count."""
    chan, peer = pair
    chan.max_objects = 1200
    chan.max_depth = max_depth
    data = msgpack.packb(deep_strings(400, 1000), use_bin_type=True)
    assert len(data) > 400 * 1000 * 3
    thread = threading.Thread(target=peer.sendall, args=(len(data).to_bytes(4, "big") + data,))
    thread.start()
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=why):
            chan.recv()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        thread.join(10)
    assert not thread.is_alive()
    # The frame itself is in the channel's buffer (twice while the buffer grows).
    assert peak < 2 * len(data) + (1 << 20), f"{peak} bytes for a {len(data)}-byte frame"
