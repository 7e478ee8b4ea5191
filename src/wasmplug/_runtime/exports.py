"""Exports of a loaded plugin: cached signatures, converters and call buffers."""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from wasmplug._bridge import ffi as f
from wasmplug._bridge.convert import Lift, Lower, needs_free
from wasmplug._bridge.lift import lifter, string_result, string_slot
from wasmplug._bridge.lower import lowerer, scalar
from wasmplug._bridge.params import RecordTemplate, StringParam
from wasmplug._bridge.wit import FuncSig, Prim, ResultT, contains_handles, snake
from wasmplug._errors import WitTypeError, WitValueError

__all__ = ["ExportFunc", "Exports", "PluginCalls", "short_interface_name"]


class PluginCalls(Protocol):
    """What an export needs from the plugin that owns it (:class:`~wasmplug.Plugin`).

    A protocol, so that this module does not import ``plugin`` (which imports it).
    """

    pool_size: int

    @property
    def closed(self) -> bool: ...

    def _invoke(self, ex: ExportFunc, args: tuple[Any, ...]) -> Any: ...

    def _bind(self, ex: ExportFunc) -> Callable[[tuple[Any, ...]], Any]: ...


byref = ctypes.byref

ScalarInfo = tuple[int, Any, Callable[[Any], Any], Callable[[Any], Any] | None]
""":func:`~wasmplug._bridge.lower.scalar`'s ``(kind, ctype, convert, post_lift)``."""


class ExportFunc:
    """One export's cached signature and converters (built once per plugin)."""

    __slots__ = (
        "all_scalar",
        "bound",
        "converts",
        "free_params",
        "free_result",
        "has_handles",
        "index",
        "lift",
        "lowers",
        "name",
        "nparams",
        "nresults",
        "numbers",
        "param_names",
        "plugin",
        "result_scalar",
        "returns_result",
        "scalars",
        "sig",
        "spare",
        "templates",
    )

    nparams: int
    param_names: list[str]
    lowers: list[Lower]
    templates: list[RecordTemplate | StringParam | None]
    lift: Lift | None
    nresults: int
    free_params: bool
    free_result: bool
    returns_result: bool
    has_handles: bool
    scalars: list[ScalarInfo | None]
    all_scalar: bool
    converts: list[Callable[[Any], Any]]
    result_scalar: ScalarInfo | None
    numbers: tuple[struct.Struct, tuple[type, ...], list[int]] | None

    def __init__(self, plugin: PluginCalls, index: int, name: str, sig: FuncSig) -> None:
        self.plugin = plugin
        self.index = index
        self.name = name
        self.sig = sig
        self.spare: list[Buffers] = []
        # Runs one call, ``bound(args)``: made by ``plugin._bind`` on the first call
        # (see fastcall.py), so a plugin that is loaded and never called pays nothing.
        self.bound: Callable[[tuple[Any, ...]], Any] | None = None
        # Everything else depends on the signature alone: shared by every export
        # with the same one (never mutated), so many loaded plugins hold one copy.
        (
            self.nparams,
            self.param_names,
            self.lowers,
            self.templates,
            self.lift,
            self.nresults,
            self.free_params,
            self.free_result,
            self.returns_result,
            self.has_handles,
            self.scalars,
            self.all_scalar,
            self.converts,
            self.result_scalar,
            self.numbers,
        ) = _signature_parts(sig)

    def __call__(self, *args: Any) -> Any:
        return (self.bound or self.plugin._bind(self))(args)

    def argument_error(
        self, plugin: str, i: int, exc: WitTypeError | WitValueError
    ) -> WitTypeError | WitValueError:
        """``exc``, raised converting argument ``i``, naming ``plugin``, this export and
        the parameter: one message in both isolation tiers."""
        return type(exc)(
            f"{plugin}: {self.name}: parameter {self.param_names[i]!r} {exc}"
        ).with_traceback(None)

    def take_buffers(self, inst: Any) -> Buffers:
        """Call buffers for ``inst`` (an alive ``Instance``, which keeps them in
        ``inst.buffers[self.index]`` until it closes): a discarded instance's, or new
        ones, given the addresses of this export's function and ``inst``'s store."""
        try:
            buf = self.spare.pop()
        except IndexError:
            buf = Buffers(self)
        # The function struct lives in inst.funcs, the context with the store: both
        # outlive every call made with these buffers on this instance.
        buf.args = f.call_args(
            inst.funcs[self.index], inst.context, buf.params, self.nparams, buf.result,
            self.nresults,
        )  # fmt: skip
        return buf

    def give_back(self, buf: Buffers) -> None:
        """Keep the buffers of a discarded instance for the next one (at most one
        per pool slot). They hold no store state: arguments are deleted or plain
        scalars after every call, and the result slot holds a ``bool`` or a string
        of at most ``fastcall.LINGER`` bytes (the C API's own copy, dropped by the
        next call that writes the slot, or by :meth:`free`)."""
        buf.args = ()  # the discarded instance's function and store
        if not self.plugin.closed and len(self.spare) < self.plugin.pool_size:
            self.spare.append(buf)
        else:
            buf.free()

    def __repr__(self) -> str:
        return f"<export {self.name}: {self.sig}>"


_SIGNATURES: dict[FuncSig, tuple[Any, ...]] = {}


def _signature_parts(sig: FuncSig) -> tuple[Any, ...]:
    """The converters and flags of an export with signature ``sig``, in the order
    :class:`ExportFunc` unpacks them; shared by equal signatures, except those that
    mention a resource handle (see :func:`~wasmplug._bridge.convert.shared_converter`:
    type equality does not say where the resource lives)."""
    parts = _SIGNATURES.get(sig)
    if parts is None:
        parts = _build_signature_parts(sig)
        types = [t for _, t in sig.params] + ([sig.result] if sig.result is not None else [])
        if not contains_handles(types):
            _SIGNATURES[sig] = parts
    return parts


def _build_signature_parts(sig: FuncSig) -> tuple[Any, ...]:
    nparams = len(sig.params)
    param_names = [n for n, _ in sig.params]
    lowers = [lowerer(t) for _, t in sig.params]
    # Records of fixed-size primitives are allocated once per instance and
    # rewritten in place (see RecordTemplate); the others are lowered afresh.
    templates: list[RecordTemplate | StringParam | None] = [
        RecordTemplate(t)  # type: ignore[arg-type]
        if RecordTemplate.applies(t)
        else StringParam()
        if StringParam.applies(t)
        else None
        for _, t in sig.params
    ]
    lift = None if sig.result is None else lifter(sig.result)
    nresults = 0 if sig.result is None else 1
    free_params = any(
        needs_free(t) and tpl is None for (_, t), tpl in zip(sig.params, templates, strict=True)
    )
    free_result = needs_free(sig.result)
    returns_result = isinstance(sig.result, ResultT)
    has_handles = contains_handles([t for _, t in sig.params])
    # Fast path: fixed-size primitives are written through ctypes aliases of
    # the argument slots (see lower.scalar).
    scalars = [scalar(t) for _, t in sig.params]
    all_scalar = all(s is not None for s in scalars)
    converts = [s[2] for s in scalars if s is not None]
    result_scalar = scalar(sig.result)
    numbers = _numbers_struct(sig)
    return (
        nparams,
        param_names,
        lowers,
        templates,
        lift,
        nresults,
        free_params,
        free_result,
        returns_result,
        has_handles,
        scalars,
        all_scalar,
        converts,
        result_scalar,
        numbers,
    )


_STRUCT_CODES = {
    "s8": "b", "u8": "B", "s16": "h", "u16": "H", "s32": "i", "u32": "I",
    "s64": "q", "u64": "Q", "f32": "f", "f64": "d",
}  # fmt: skip


def _numbers_struct(sig: FuncSig) -> tuple[struct.Struct, tuple[type, ...], list[int]] | None:
    """For a signature of only integer/float parameters: a ``struct.Struct`` that
    writes every argument (kind byte and payload) into the argument array in one
    C call, the Python classes the arguments may have, and the kind bytes.

    ``struct`` range-checks integers itself (``struct.error``); on any error the
    caller falls back to the per-parameter converters, which name the parameter.
    """
    codes = []
    kinds = []
    for _, t in sig.params:
        info = scalar(t)
        if info is None or not isinstance(t, Prim) or t.name not in _STRUCT_CODES:
            return None
        codes.append(_STRUCT_CODES[t.name])
        kinds.append(info[0])
    if not codes:
        return None
    fmt = "<"
    pos = 0
    for i, code in enumerate(codes):
        start = i * f.VAL_SIZE
        if start > pos:
            fmt += f"{start - pos}x"
        fmt += f"B{f.VAL_PAYLOAD_OFFSET - 1}x{code}"
        pos = start + f.VAL_PAYLOAD_OFFSET + struct.calcsize("<" + code)
    floats = any(c in "fd" for c in codes)
    return _struct(fmt), ((int, float) if floats else (int,)), kinds


@functools.cache
def _struct(fmt: str) -> struct.Struct:
    """One ``struct.Struct`` per format, shared by every export that has it (a
    ``Struct`` is immutable; thousands of loaded plugins need not each hold one)."""
    return struct.Struct(fmt)


class Buffers:
    """Reusable canonical-ABI argument/result storage for one export on one instance.

    ``slots[i]`` is a ctypes scalar aliasing the payload of argument ``i`` when
    that argument is a fixed-size primitive (its kind tag is written once,
    here); ``rslot`` does the same for a scalar result. ``lowers[i]`` lowers
    argument ``i``: for a :class:`RecordTemplate` parameter, it rewrites the
    record allocated here, which ``param_refs`` (the values to delete after a
    call) leaves out until :meth:`free`.
    """

    __slots__ = (
        "args",
        "kept",
        "lift",
        "lowers",
        "packed",
        "param_refs",
        "params",
        "pvals",
        "raw",
        "result",
        "rref",
        "rslot",
        "rstring",
        "scalar_pairs",
        "slots",
        "strings",
    )

    def __init__(self, ex: ExportFunc) -> None:
        # f.func_call_args(*args): set by ExportFunc.take_buffers for the instance
        # using these buffers (its function and store, the arrays below).
        self.args: tuple[Any, ...] = ()
        self.params = (f.Val * max(ex.nparams, 1))()
        self.pvals = [self.params[i] for i in range(ex.nparams)]
        self.param_refs = [byref(v) for v in self.pvals]
        self.lowers = list(ex.lowers)
        self.kept: list[Any] = []
        # (data, size) aliases of each top-level string argument (StringParam.slot).
        self.strings: list[tuple[Any, Any] | None] = [None] * ex.nparams
        for i, tpl in enumerate(ex.templates):
            if tpl is not None:
                self.lowers[i] = tpl.allocate(self.pvals[i])
                if isinstance(tpl, StringParam):
                    self.strings[i] = tpl.slot(self.pvals[i])
                if isinstance(tpl, RecordTemplate):  # C memory (a StringParam's is Python's)
                    self.kept.append(self.param_refs[i])
                self.param_refs[i] = byref(f.Val())  # a bool: deleting it is a no-op
        self.slots: list[Any] = []
        for val, info in zip(self.pvals, ex.scalars, strict=True):
            if info is None:
                self.slots.append(None)
                continue
            val.kind = info[0]
            self.slots.append(info[1].from_address(ctypes.addressof(val) + f.VAL_PAYLOAD_OFFSET))
        # For ExportFunc.numbers: the array as bytes, and [kind0, arg0, kind1, arg1...].
        self.raw = memoryview(self.params).cast("B")
        self.packed = [x for k in (ex.numbers[2] if ex.numbers else ()) for x in (k, 0)]
        self.scalar_pairs = (
            list(zip(self.slots, ex.converts, strict=False)) if ex.all_scalar else []
        )
        self.result = f.Val()
        self.rref = byref(self.result)
        string = ex.sig.result == Prim("string")
        self.lift = string_result(self.result) if string else ex.lift
        # (size, chars) aliases of a string result (lift.string_slot).
        self.rstring = string_slot(self.result) if string else None
        rinfo = ex.result_scalar
        self.rslot = (
            None
            if rinfo is None
            else rinfo[1].from_address(ctypes.addressof(self.result) + f.VAL_PAYLOAD_OFFSET)
        )

    def free(self) -> None:
        """Delete the values kept across calls (the instance is closing): the record
        templates, and a result the fast path left in the result slot (fastcall.py)."""
        kept, self.kept = self.kept, []
        for ref in kept:
            f.val_delete(ref)
        if self.result.kind != f.BOOL:
            f.val_delete(self.rref)
            self.result.kind = f.BOOL

    def __del__(self) -> None:
        # Kept values are plain C allocations (no store): safe on any thread.
        if getattr(self, "kept", None) or getattr(self, "rstring", None):
            self.free()


class Exports:
    """Attribute access to a plugin's exports: ``plugin.exports.greet("x")``.

    World-level functions are attributes (kebab-case → snake_case); exported
    interfaces are attributes by their short name (``plugin.exports.api.run``)
    and items by full name (``plugin.exports["demo:plugin/api@0.1.0"].run``).
    An exported resource type is a class attribute by its PascalCase name
    (``plugin.exports.api.Counter``, see :class:`~wasmplug.Resource`). Every
    function is also an item by its exact WIT name
    (``plugin.exports.api["[method]counter.get-a"]``).
    """

    def __init__(self, attrs: dict[str, Any], items: dict[str, Any]) -> None:
        self._attrs = attrs
        self._items = items

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._attrs[name]
        except KeyError:
            raise AttributeError(
                f"no export {name!r}; have: {', '.join(sorted(self._attrs))}"
            ) from None

    def __getitem__(self, name: str) -> Any:
        item = self._items.get(name)
        if item is None:
            item = self._attrs.get(name)
        if item is None:
            raise KeyError(name)
        return item

    def __dir__(self) -> list[str]:
        return sorted(self._attrs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._attrs)


def short_interface_name(name: str) -> str:
    return snake(name.split("/")[-1].split("@")[0])
