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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs

import wat as w
from wasmplug import (
    Err,
    Limits,
    Manifest,
    Ok,
    Plugin,
    PluginHost,
    RestartPolicy,
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
    "s64s": w.List(w.P("s64")),
    "u64s": w.List(U64),
    "s8s": w.List(w.P("s8")),
    "u16s": w.List(w.P("u16")),
    "f32s": w.List(F32),
    "f64s": w.List(F64),
    "bools": w.List(w.P("bool")),
    "chars": w.List(w.P("char")),
    "scalars": w.Record(
        "scalars",
        (
            ("b", w.P("bool")),
            ("c", w.P("char")),
            ("f", F32),
            ("i", w.P("s8")),
            ("u", U64),
            ("d", F64),
        ),
    ),
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


def load(
    host: PluginHost,
    text: str,
    *,
    manifest: Manifest = MANIFEST,
    limits: Limits | None = None,
    restart_policy: RestartPolicy | None = None,
) -> Plugin:
    return host.load(
        text.encode(),
        allow_unsigned=True,
        manifest=manifest,
        limits=limits,
        restart_policy=restart_policy,
    )


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


def _host_impl(key: str) -> Callable[[Any], Any]:
    def impl(a: Any) -> Any:
        seen.append((key, a))
        hook = hooks.get(key)
        return a if hook is None else hook(a)

    return impl


NEVER_QUARANTINE = RestartPolicy(max_faults=2**31 - 1, window_s=1e-9)
"""For a plugin shared by many tests that fault it on purpose."""


@contextmanager
def every_type_plugin(
    isolation: str, restart_policy: RestartPolicy | None = None
) -> Iterator[Plugin]:
    """The "every type" component (see the module docstring), loaded in a host of
    isolation tier ``isolation`` whose host functions log to ``seen`` and obey ``hooks``."""
    text = w.component(echo_funcs(list(TYPES)), host_funcs(list(TYPES)))
    with PluginHost(cache_dir=False, isolation=isolation, spare_workers=0) as host:  # type: ignore[arg-type]
        host.provide(HOST, {f"h-{k}": _host_impl(k) for k in TYPES})
        yield load(host, text, restart_policy=restart_policy)


# A guest-defined resource ``counter`` in the exported interface ``demo:x/api``: its
# rep is its value; the destructor (``$libc "dtor"``) counts drops (the ``drops``
# export) and traps for rep 0xdead. ``call-poke`` calls the host function ``poke``.
GUEST_COUNTER = f"""
(component
{w.LIBC}
  (type $counter (resource (rep i32) (dtor (core func $libc "dtor"))))
  (core func $new (canon resource.new $counter))
  (core func $rep (canon resource.rep $counter))
  (core func $drop (canon resource.drop $counter))
  (import "{HOST}" (instance $host (export "poke" (func))))
  (core func $poke (canon lower (func $host "poke")))
  (core module $M
    (import "r" "new" (func $new (param i32) (result i32)))
    (import "r" "rep" (func $rep (param i32) (result i32)))
    (import "r" "drop" (func $drop (param i32)))
    (import "r" "poke" (func $poke))
    (func (export "call-poke") (call $poke))
    (func (export "get-plus") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    ;; The rep is the counter's value.
    (func (export "ctor") (param i32) (result i32) (call $new (local.get 0)))
    ;; A borrow of a resource this component defines arrives as its rep.
    (func (export "get") (param i32) (result i32) (local.get 0))
    ;; An own arrives as a handle: read it, then drop it (runs the destructor).
    (func (export "take") (param i32 i32) (result i32) (local $v i32)
      (local.set $v (i32.add (call $rep (local.get 0)) (local.get 1)))
      (call $drop (local.get 0))
      (local.get $v)))
  (core instance $m (instantiate $M (with "r" (instance
    (export "new" (func $new)) (export "rep" (func $rep)) (export "drop" (func $drop))
    (export "poke" (func $poke))))))
  (func $call-poke (canon lift (core func $m "call-poke")))
  (export "call-poke" (func $call-poke))
  (func $get-plus (param "self" (borrow $counter)) (param "n" u32) (result u32)
    (canon lift (core func $m "get-plus")))
  (func $add (param "c" (borrow $counter)) (param "n" u32) (result u32)
    (canon lift (core func $m "get-plus")))
  (func $ctor (param "start" u32) (result (own $counter)) (canon lift (core func $m "ctor")))
  (func $get (param "self" (borrow $counter)) (result u32) (canon lift (core func $m "get")))
  (func $take (param "c" (own $counter)) (param "extra" u8) (result u32)
    (canon lift (core func $m "take")))
  ;; Exported functions may only mention exported (named) resource types, so the
  ;; interface is the instance of a small component that names them (as
  ;; wit-component does).
  (component $Api
    (import "t" (type $c (sub resource)))
    (import "ctor" (func $ctor (param "start" u32) (result (own $c))))
    (import "get" (func $get (param "self" (borrow $c)) (result u32)))
    (import "take" (func $take (param "c" (own $c)) (param "extra" u8) (result u32)))
    (import "get-plus" (func $get-plus (param "self" (borrow $c)) (param "n" u32) (result u32)))
    (import "add" (func $add (param "c" (borrow $c)) (param "n" u32) (result u32)))
    (export $ce "counter" (type $c))
    (export "[constructor]counter" (func $ctor) (func (param "start" u32) (result (own $ce))))
    (export "[method]counter.get" (func $get) (func (param "self" (borrow $ce)) (result u32)))
    (export "[static]counter.take" (func $take)
      (func (param "c" (own $ce)) (param "extra" u8) (result u32)))
    (export "[method]counter.get-plus" (func $get-plus)
      (func (param "self" (borrow $ce)) (param "n" u32) (result u32)))
    (export "[static]counter.add" (func $add)
      (func (param "c" (borrow $ce)) (param "n" u32) (result u32)))
    ;; A method whose Python name would shadow Resource.drop: it becomes drop_.
    (export "[method]counter.drop" (func $get) (func (param "self" (borrow $ce)) (result u32))))
  (instance $api (instantiate $Api (with "t" (type $counter)) (with "ctor" (func $ctor))
    (with "get" (func $get)) (with "take" (func $take)) (with "get-plus" (func $get-plus))
    (with "add" (func $add))))
  (export "{API[:-1]}" (instance $api))
{w.LIBC_EXPORTS}
)
"""
