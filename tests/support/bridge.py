"""Shared by the bridge tests: the WIT type model of the values tested, and helpers.

The "every type" component (``tests/bridge/conftest.py``) exports ``echo-<key>(a: T) -> T``
for each ``TYPES[key]``, whose core code returns its flattened argument (see ``wat.py``),
and ``call-h-<key>(a: T) -> T``, which passes its argument to the imported host function
``h-<key>``. ``seen`` and ``hooks`` are that host function's log and behaviour.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable
from typing import Any

import attrs

import wat as w
from wasmplug import (
    Err,
    Manifest,
    Ok,
    Plugin,
    PluginHost,
    Some,
    Variant,
)

HOST = "demo:x/host@0.1.0"
API = "demo:x/api@0.1.0#"
MANIFEST = Manifest(name="t", host_interfaces=(HOST,))

U8, S32, U32, U64 = w.P("u8"), w.P("s32"), w.P("u32"), w.P("u64")
F32, F64, STRING = w.P("f32"), w.P("f64"), w.P("string")
POINT = w.Record("point", (("x", S32), ("y", S32)))
PERSON = w.Record("person", (("first-name", STRING), ("age", U8), ("home", w.Option(POINT))))
SHAPE = w.Variant(
    "shape",
    (("empty", None), ("num", F32), ("big", U64), ("text", STRING), ("pt", POINT)),
)
COLOR = w.Enum("color", ("red", "green", "blue-ish"))
PERMS = w.Flags("perms", ("read", "write", "exec"))
FLAGS32 = w.Flags("flags32", tuple(f"f{i}" for i in range(32)))
RES = w.Result(U32, STRING)

INT_RANGES = {
    "s8": (-(2**7), 2**7 - 1),
    "u8": (0, 2**8 - 1),
    "s16": (-(2**15), 2**15 - 1),
    "u16": (0, 2**16 - 1),
    "s32": (-(2**31), 2**31 - 1),
    "u32": (0, 2**32 - 1),
    "s64": (-(2**63), 2**63 - 1),
    "u64": (0, 2**64 - 1),
}

TYPES: dict[str, w.Ty] = {
    **{name: w.P(name) for name in ["bool", *INT_RANGES, "f32", "f64", "char", "string"]},
    "bytes": w.List(U8),
    "strings": w.List(STRING),
    "chunks": w.List(w.List(U8)),
    "u32s": w.List(U32),
    "point": POINT,
    "points": w.List(POINT),
    "person": PERSON,
    "tuple": w.Tuple((U8, STRING, F64)),
    "shape": SHAPE,
    "color": COLOR,
    "perms": PERMS,
    "flags32": FLAGS32,
    "opt-u32": w.Option(U32),
    "opt-str": w.Option(STRING),
    "opt-point": w.Option(POINT),
    "opt-opt": w.Option(w.Option(U32)),
    "res": RES,
    "res-no-ok": w.Result(None, STRING),
    "res-list": w.List(RES),
    "res-same": w.List(w.Result(STRING, STRING)),
    "res-unit": w.List(w.Result(None, None)),
    "res-ok-only": w.List(w.Result(U32, None)),
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class Rec:
    """An expected record value: any attrs record with exactly these attributes."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def __repr__(self) -> str:
        return f"Rec({self.fields})"


def assert_same(out: Any, expected: Any) -> None:
    """Deep equality that also checks Python types (bool is not int, bytes is not list)."""
    if isinstance(expected, Rec):
        assert attrs.has(type(out)), f"{out!r} is not a record object"
        assert [a.name for a in attrs.fields(type(out))] == list(expected.fields)
        for name, value in expected.fields.items():
            assert_same(getattr(out, name), value)
        return
    assert type(out) is type(expected), f"{out!r} is a {type(out).__name__}, not {expected!r}"
    if isinstance(expected, list | tuple):
        assert len(out) == len(expected), (out, expected)
        for a, b in zip(out, expected, strict=True):
            assert_same(a, b)
    elif isinstance(expected, Variant):
        assert out.case == expected.case
        assert_same(out.value, expected.value)
    elif isinstance(expected, Ok | Err | Some):
        assert_same(out.value, expected.value)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(out)
    elif isinstance(expected, float):
        assert out == expected
        assert math.copysign(1, out) == math.copysign(1, expected)  # -0.0 stays -0.0
    else:
        assert out == expected


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def load(host: PluginHost, text: str, *, manifest: Manifest = MANIFEST) -> Plugin:
    return host.load(text.encode(), allow_unsigned=True, manifest=manifest)


def echo_funcs(keys: list[str]) -> list[w.Func]:
    return [w.Func(f"echo-{k}", (("a", TYPES[k]),), TYPES[k]) for k in keys]


def host_funcs(keys: list[str]) -> dict[str, list[w.Func]]:
    return {HOST: [w.Func(f"h-{k}", (("a", TYPES[k]),), TYPES[k]) for k in keys]}


class Hue(enum.Enum):
    """A Python enum whose value names a case of ``color``."""

    GREEN = "green"


seen: list[tuple[str, Any]] = []
"""``(key, value)`` for every call of a host function ``h-<key>``."""
hooks: dict[str, Callable[[Any], Any]] = {}
"""What host function ``h-<key>`` returns for its argument (default: the argument)."""
