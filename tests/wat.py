"""Build tiny WAT components for bridge tests, from a small model of WIT types.

The model knows just enough of the canonical ABI (flattening, memory layout)
to generate two kinds of core function bodies:

* an *echo*: the export takes its flattened parameter and returns it, storing
  it in a static return area in canonical memory layout when the result has
  more than one flat value;
* a *pass-through*: the export hands its flattened parameters to an imported
  host function (canon lower) and returns what the host returned.

Lists and strings need no code at all: lowering already wrote their contents
into guest memory in canonical layout, so returning the same ``(ptr, len)``
lifts the same value back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = [
    "LIBC",
    "LIBC_EXPORTS",
    "RET",
    "Enum",
    "Flags",
    "Func",
    "List",
    "Option",
    "P",
    "Record",
    "Result",
    "Tuple",
    "Variant",
    "component",
    "echo_body",
    "flat",
]

RET = 16
"""Address of the static return area (the bump allocator starts at 1024)."""


@dataclass(frozen=True)
class P:
    """A primitive: ``bool``, ``s8``..``u64``, ``f32``, ``f64``, ``char``, ``string``."""

    name: str


@dataclass(frozen=True)
class List:
    elem: Ty


@dataclass(frozen=True)
class Record:
    name: str
    fields: tuple[tuple[str, Ty], ...]


@dataclass(frozen=True)
class Tuple:
    elems: tuple[Ty, ...]


@dataclass(frozen=True)
class Variant:
    name: str
    cases: tuple[tuple[str, Ty | None], ...]


@dataclass(frozen=True)
class Enum:
    name: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Flags:
    name: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Option:
    payload: Ty


@dataclass(frozen=True)
class Result:
    ok: Ty | None
    err: Ty | None


Ty = Union[P, List, Record, Tuple, Variant, Enum, Flags, Option, Result]

# ---------------------------------------------------------------------------
# Canonical ABI: flattening and memory layout
# ---------------------------------------------------------------------------

_PRIM_FLAT = {"s64": "i64", "u64": "i64", "f32": "f32", "f64": "f64"}
_PRIM_SIZE = {"bool": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s64": 8, "u64": 8, "f64": 8}
_PRIM_STORE = {
    "bool": "i32.store8",
    "s8": "i32.store8",
    "u8": "i32.store8",
    "s16": "i32.store16",
    "u16": "i32.store16",
    "s64": "i64.store",
    "u64": "i64.store",
    "f32": "f32.store",
    "f64": "f64.store",
}
_STORE_N = {1: "i32.store8", 2: "i32.store16", 4: "i32.store"}


def _cases(t: Ty) -> list[Ty | None]:
    if isinstance(t, Variant):
        return [c for _, c in t.cases]
    if isinstance(t, Option):
        return [None, t.payload]
    if isinstance(t, Result):
        return [t.ok, t.err]
    assert isinstance(t, Enum)
    return [None] * len(t.names)


def _disc_size(n: int) -> int:
    return 1 if n <= 256 else 2 if n <= 65536 else 4


def _align_to(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _fields(t: Record | Tuple) -> list[Ty]:
    return [ft for _, ft in t.fields] if isinstance(t, Record) else list(t.elems)


def align(t: Ty) -> int:
    if isinstance(t, P):
        return 4 if t.name == "string" else _PRIM_SIZE.get(t.name, 4)
    if isinstance(t, List):
        return 4
    if isinstance(t, Record | Tuple):
        return max([1, *(align(ft) for ft in _fields(t))])
    if isinstance(t, Flags):
        return min(size(t), 4)
    cases = [c for c in _cases(t) if c is not None]
    return max([_disc_size(len(_cases(t))), *(align(c) for c in cases)])


def size(t: Ty) -> int:
    if isinstance(t, P):
        return 8 if t.name == "string" else _PRIM_SIZE.get(t.name, 4)
    if isinstance(t, List):
        return 8
    if isinstance(t, Record | Tuple):
        end = 0
        for ft in _fields(t):
            end = _align_to(end, align(ft)) + size(ft)
        return _align_to(end, align(t))
    if isinstance(t, Flags):
        n = len(t.names)
        return 1 if n <= 8 else 2 if n <= 16 else 4
    return _align_to(_payload_offset(t) + max([0, *map(size, _present(t))]), align(t))


def _present(t: Ty) -> list[Ty]:
    return [c for c in _cases(t) if c is not None]


def _payload_offset(t: Ty) -> int:
    return _align_to(_disc_size(len(_cases(t))), max([1, *map(align, _present(t))]))


def _join(a: str, b: str) -> str:
    if a == b:
        return a
    if {a, b} == {"i32", "f32"}:
        return "i32"
    return "i64"


def flat(t: Ty) -> list[str]:
    """The core value types ``t`` flattens to."""
    if isinstance(t, P):
        return ["i32", "i32"] if t.name == "string" else [_PRIM_FLAT.get(t.name, "i32")]
    if isinstance(t, List):
        return ["i32", "i32"]
    if isinstance(t, Record | Tuple):
        return [v for ft in _fields(t) for v in flat(ft)]
    if isinstance(t, Flags):
        return ["i32"]
    joined: list[str] = []
    for c in _present(t):
        for i, v in enumerate(flat(c)):
            if i < len(joined):
                joined[i] = _join(joined[i], v)
            else:
                joined.append(v)
    return ["i32", *joined]


def _coerce(expr: str, have: str, want: str) -> str:
    """Read a case's flat value ``want`` out of the variant's joined slot ``have``."""
    if have == want:
        return expr
    if have == "i64":
        expr = f"(i32.wrap_i64 {expr})" if want in ("i32", "f32") else expr
        return f"(f64.reinterpret_i64 {expr})" if want == "f64" else _coerce(expr, "i32", want)
    assert (have, want) == ("i32", "f32"), (have, want)
    return f"(f32.reinterpret_i32 {expr})"


def store(t: Ty, offset: int, exprs: list[str], base: str = f"(i32.const {RET})") -> list[str]:
    """Instructions storing the flat values ``exprs`` of ``t`` at ``base + offset``."""
    if isinstance(t, P) and t.name != "string":
        op = _PRIM_STORE.get(t.name, "i32.store")
        return [f"({op} offset={offset} {base} {exprs[0]})"]
    if isinstance(t, P | List):
        return [
            f"(i32.store offset={offset} {base} {exprs[0]})",
            f"(i32.store offset={offset + 4} {base} {exprs[1]})",
        ]
    if isinstance(t, Record | Tuple):
        out, at, i = [], 0, 0
        for ft in _fields(t):
            at = _align_to(at, align(ft))
            n = len(flat(ft))
            out += store(ft, offset + at, exprs[i : i + n], base)
            at += size(ft)
            i += n
        return out
    if isinstance(t, Flags):  # wasmparser allows at most 32 flags: one i32
        return [f"({_STORE_N[size(t)]} offset={offset} {base} {exprs[0]})"]
    cases = _cases(t)
    joined = flat(t)[1:]
    out = [f"({_STORE_N[_disc_size(len(cases))]} offset={offset} {base} {exprs[0]})"]
    at = offset + _payload_offset(t)
    for k, c in enumerate(cases):
        if c is None:
            continue
        want = flat(c)
        payload = [_coerce(exprs[1 + i], joined[i], want[i]) for i in range(len(want))]
        body = " ".join(store(c, at, payload, base))
        out.append(f"(if (i32.eq {exprs[0]} (i32.const {k})) (then {body}))")
    return out


# ---------------------------------------------------------------------------
# Component text
# ---------------------------------------------------------------------------

_NOMINAL = (Record, Variant, Enum, Flags)


class _Types:
    """Emits type definitions into one scope (the component, or an instance type)."""

    def __init__(self, prefix: str, *, in_instance: bool) -> None:
        self.prefix = prefix
        self.in_instance = in_instance
        self.defs: list[str] = []
        self.refs: dict[Ty, str] = {}

    def ref(self, t: Ty) -> str:
        if isinstance(t, P):
            return t.name
        known = self.refs.get(t)
        if known is not None:
            return known
        if isinstance(t, List):
            body = f"(list {self.ref(t.elem)})"
        elif isinstance(t, Record):
            body = " ".join(f'(field "{n}" {self.ref(ft)})' for n, ft in t.fields)
            body = f"(record {body})"
        elif isinstance(t, Tuple):
            body = "(tuple " + " ".join(self.ref(e) for e in t.elems) + ")"
        elif isinstance(t, Variant):
            cases = [
                f'(case "{n}")' if c is None else f'(case "{n}" {self.ref(c)})' for n, c in t.cases
            ]
            body = "(variant " + " ".join(cases) + ")"
        elif isinstance(t, Enum | Flags):
            kw = "enum" if isinstance(t, Enum) else "flags"
            body = f"({kw} " + " ".join(f'"{n}"' for n in t.names) + ")"
        elif isinstance(t, Option):
            body = f"(option {self.ref(t.payload)})"
        else:
            ok = "" if t.ok is None else f" {self.ref(t.ok)}"
            err = "" if t.err is None else f" (error {self.ref(t.err)})"
            body = f"(result{ok}{err})"
        name = f"${self.prefix}{len(self.defs)}"
        self.defs.append(f"(type {name} {body})")
        if isinstance(t, _NOMINAL):
            # Exported functions may only mention named (exported) nominal types.
            exported = f"{name}e"
            if self.in_instance:
                self.defs.append(f'(export "{t.name}" (type {exported} (eq {name})))')
            else:
                self.defs.append(f'(export {exported} "{t.name}" (type {name}))')
            name = exported
        self.refs[t] = name
        return name

    def functype(self, params: tuple[tuple[str, Ty], ...], result: Ty | None) -> str:
        parts = [f'(param "{n}" {self.ref(t)})' for n, t in params]
        if result is not None:
            parts.append(f"(result {self.ref(result)})")
        return " ".join(parts)


@dataclass(frozen=True)
class Func:
    """A function signature; ``body`` is core WAT (default: echo the first parameter)."""

    name: str
    params: tuple[tuple[str, Ty], ...]
    result: Ty | None
    body: str | None = None


def _core_sig(params: tuple[tuple[str, Ty], ...], result: Ty | None, *, lowered: bool) -> str:
    flat_params = [v for _, t in params for v in flat(t)]
    assert len(flat_params) <= 16, "more than MAX_FLAT_PARAMS: not supported here"
    flat_result = [] if result is None else flat(result)
    if len(flat_result) > 1:
        if lowered:  # the caller passes a return pointer
            flat_params, flat_result = [*flat_params, "i32"], []
        else:  # the callee returns a pointer
            flat_result = ["i32"]
    text = "".join(f" (param {v})" for v in flat_params)
    return text + "".join(f" (result {v})" for v in flat_result)


def echo_body(t: Ty) -> str:
    """Core instructions that return the (first) parameter, of type ``t``, unchanged."""
    n = len(flat(t))
    if n <= 1:
        return "(local.get 0)" if n else ""
    code = store(t, 0, [f"(local.get {i})" for i in range(n)])
    return " ".join([*code, f"(i32.const {RET})"])


def _pass_body(fn: Func) -> str:
    nparams = sum(len(flat(t)) for _, t in fn.params)
    args = [f"(local.get {i})" for i in range(nparams)]
    spilled = fn.result is not None and len(flat(fn.result)) > 1
    if spilled:
        args.append(f"(i32.const {RET})")
    call = f"(call $host-{fn.name} {' '.join(args)})"
    return f"{call} (i32.const {RET})" if spilled else call


LIBC = r"""
  (core module $Libc
    (memory (export "mem") 1)
    (global $bump (mut i32) (i32.const 1024))
    (global $drops (mut i32) (i32.const 0))
    (global $ticks (mut i32) (i32.const 0))
    ;; cabi_realloc: a bump allocator that grows memory as needed.
    (func (export "realloc") (param $old i32) (param $old-size i32) (param $align i32)
          (param $size i32) (result i32)
      (local $p i32) (local $end i32)
      (local.set $p (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (i32.const -1) (memory.grow (i32.add (i32.const 1) (i32.shr_u
              (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
              (i32.const 16)))))
          (then unreachable))))
      (global.set $bump (local.get $end))
      (if (local.get $old)
        (then (memory.copy (local.get $p) (local.get $old) (local.get $old-size))))
      (local.get $p))
    ;; Destructor of guest-defined resources: counts the drops; traps for rep 0xdead.
    (func (export "dtor") (param i32)
      (if (i32.eq (local.get 0) (i32.const 0xdead)) (then unreachable))
      (global.set $drops (i32.add (global.get $drops) (i32.const 1))))
    (func (export "drops") (result i32) (global.get $drops))
    ;; Increments on every call, so a test can tell whether state survived.
    (func (export "tick") (result i32)
      (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
      (global.get $ticks))
    (func (export "crash") unreachable))
  (core instance $libc (instantiate $Libc))
  (alias core export $libc "mem" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))
"""
"""Memory, ``cabi_realloc`` and helpers shared by every component (core instance ``$libc``)."""

LIBC_EXPORTS = r"""
  (func $tick (result u32) (canon lift (core func $libc "tick")))
  (export "tick" (func $tick))
  (func $drops (result u32) (canon lift (core func $libc "drops")))
  (export "drops" (func $drops))
  (func $crash (canon lift (core func $libc "crash")))
  (export "crash" (func $crash))
"""
"""World exports ``tick() -> u32``, ``drops() -> u32`` and ``crash()`` (traps)."""


def component(exports: list[Func], imports: dict[str, list[Func]] | None = None) -> str:
    """The text of a component.

    Args:
        exports: World-level function exports. ``body=None`` echoes the first parameter.
        imports: Interface name -> functions the component imports from the host.
            Each imported ``f`` also gets an export ``call-f`` with the same signature
            that passes its arguments to ``f`` and returns ``f``'s result.
    """
    imports = imports or {}
    parts = ["(component"]
    lowered: list[str] = []
    core_imports: list[str] = []
    all_exports = list(exports)
    for k, (iface, funcs) in enumerate(imports.items()):
        scope = _Types(f"i{k}t", in_instance=True)
        decls = [
            f'(export "{fn.name}" (func {scope.functype(fn.params, fn.result)}))' for fn in funcs
        ]
        body = "\n    ".join([*scope.defs, *decls])
        parts.append(f'  (import "{iface}" (instance $imp{k}\n    {body}))')
        for fn in funcs:
            lowered.append(
                f'  (core func $low-{fn.name} (canon lower (func $imp{k} "{fn.name}") '
                "(memory $mem) (realloc $realloc)))"
            )
            sig = _core_sig(fn.params, fn.result, lowered=True)
            core_imports.append(f'(import "host" "{fn.name}" (func $host-{fn.name}{sig}))')
            all_exports.append(Func(f"call-{fn.name}", fn.params, fn.result, _pass_body(fn)))
    scope = _Types("t", in_instance=False)
    lifted = []
    core_funcs = []
    for fn in all_exports:
        ftype = scope.functype(fn.params, fn.result)
        lifted.append(
            f'  (func ${fn.name} {ftype} (canon lift (core func $m "{fn.name}") '
            f'(memory $mem) (realloc $realloc)))\n  (export "{fn.name}" (func ${fn.name}))'
        )
        body = fn.body if fn.body is not None else echo_body(fn.params[0][1])
        sig = _core_sig(fn.params, fn.result, lowered=False)
        core_funcs.append(f'    (func (export "{fn.name}"){sig}\n      {body})')
    parts += [f"  {d}" for d in scope.defs]
    parts.append(LIBC)
    parts += lowered
    host_with = ""
    if imports:
        names = " ".join(
            f'(export "{fn.name}" (func $low-{fn.name}))' for fs in imports.values() for fn in fs
        )
        host_with = f' (with "host" (instance {names}))'
    parts.append("  (core module $M")
    parts.append('    (import "libc" "mem" (memory 1))')
    parts += [f"    {i}" for i in core_imports]
    parts += core_funcs
    parts.append("  )")
    parts.append(f'  (core instance $m (instantiate $M (with "libc" (instance $libc)){host_with}))')
    parts += lifted
    parts.append(LIBC_EXPORTS)
    parts.append(")")
    return "\n".join(parts)
