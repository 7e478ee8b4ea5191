"""Argument slots kept per export and instance, rewritten in place on each call.

The generic lowerers (:mod:`.lower`) build a fresh canonical-ABI value per call,
and the call deletes it afterwards. ``wasmtime_component_func_call`` only reads
its arguments, so a top-level parameter whose value can be reused is instead
set up once, when an instance first calls the export (``allocate``), and each
call only rewrites what changes: the payloads of a record of scalars
(:class:`RecordTemplate`), the pointer and size of a string (:class:`StringParam`).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Mapping
from operator import attrgetter, itemgetter
from typing import Any

from wasmplug._errors import WitTypeError, WitValueError

from . import ffi as f
from .accept import field_value, utf8
from .convert import INT_RANGES, Lower, prefixed, type_error
from .lift import scalar_code
from .lower import name_vec, scalar
from .wit import Prim, RecordT, WitType, snake

__all__ = ["RecordTemplate", "StringParam"]

byref = ctypes.byref

_ENTRY_VAL = 16
_ENTRY_LAYOUT_KNOWN = (
    f.ValRecordEntry.name.offset == 0
    and f.ValRecordEntry.val.offset == _ENTRY_VAL
    and ctypes.sizeof(ctypes.c_void_p) == ctypes.sizeof(ctypes.c_size_t) == 8
)
"""``wasmtime_component_valrecord_entry_t`` is {name: {size_t, char*}, val} on 64-bit
hosts; elsewhere records take the generic path."""


class RecordTemplate:
    """A top-level record parameter of fixed-size primitives, lowered in place.

    ``wasmtime_component_func_call`` only reads its arguments, so the record
    value (its entries array and the 64 field-name copies of a 64-field record)
    is allocated once per export and instance (:meth:`allocate`) and each call
    only rewrites the payloads: one ``struct.pack_into`` over the entries when
    every field is a plain ``int`` (or ``float`` for float fields) in range,
    else the per-field converters, which name the bad field. The owner deletes
    the value when its instance closes.
    """

    def __init__(self, t: RecordT) -> None:
        self.t = t
        self.n = len(t.fields)
        self.names = [n for n, _ in t.fields]
        self.attrs = [snake(n) for n in self.names]
        prims = [ft for _, ft in t.fields]
        self.codes = [scalar_code(ft) for ft in prims]
        infos = [scalar(ft) for ft in prims]
        self.kinds = [info[0] for info in infos]  # type: ignore[index]
        self.converts = [info[2] for info in infos]  # type: ignore[index]
        names = {ft.name for ft in prims}  # type: ignore[union-attr]
        ints = names <= set(INT_RANGES)
        floats = names <= {"f32", "f64"} | set(INT_RANGES)
        self.allowed = {int} if ints else {int, float} if floats else None
        # struct writes every byte of its format, so each entry is written whole:
        # the name vector (size, pointer: constant once allocated), the kind tag
        # and the payload. Padding bytes are zeroed, which nothing reads.
        esize = ctypes.sizeof(f.ValRecordEntry)
        fmt = "<"
        for code, width, _ in self.codes:  # type: ignore[misc]
            pad = esize - _ENTRY_VAL - f.VAL_PAYLOAD_OFFSET - width
            code = "B" if code == "?" else code
            fmt += f"QQB{f.VAL_PAYLOAD_OFFSET - 1}x{code}{pad}x"
        self.packer = struct.Struct(fmt)
        self.total = self.n * esize
        assert self.packer.size == self.total

    @staticmethod
    def applies(t: WitType) -> bool:
        """Whether ``t`` is a record of two or more fixed-size primitives (and the
        entry layout is the one this class writes)."""
        return (
            _ENTRY_LAYOUT_KNOWN
            and isinstance(t, RecordT)
            and len(t.fields) >= 2
            and all(scalar_code(ft) is not None for _, ft in t.fields)
        )

    def allocate(self, val: Any) -> Lower:
        """Allocate the record in ``val`` (names, kinds, zero payloads) and return
        the lowerer that rewrites its payloads."""
        rec = val.of.record
        f.valrecord_new_uninit(byref(rec), self.n)
        data = rec.data
        for i, name in enumerate(self.names):
            entry = data[i]
            f.byte_vec_copy(byref(entry.name), name_vec(name))
            entry.val.kind = self.kinds[i]
        val.kind = f.RECORD
        address = ctypes.addressof(data.contents)
        view = memoryview((ctypes.c_char * self.total).from_address(address)).cast("B")
        # [name size, name pointer, kind, payload] per field; payloads start at 0.
        packed: list[Any] = []
        for i in range(self.n):
            name = data[i].name
            packed += [name.size, ctypes.cast(name.data, ctypes.c_void_p).value, self.kinds[i], 0]
        self.packer.pack_into(view, 0, *packed)
        return self._writer(view, packed)

    def _writer(self, view: memoryview, packed: list[Any]) -> Lower:
        t, pack_into, allowed = self.t, self.packer.pack_into, self.allowed
        get_attrs, get_items = attrgetter(*self.attrs), itemgetter(*self.names)
        get_snake = itemgetter(*self.attrs)
        slow = self._slow

        def lower(v: Any, _val: Any, _b: Any) -> None:
            if v.__class__ is dict or isinstance(v, Mapping):
                try:
                    values = get_items(v)
                except KeyError:
                    try:
                        values = get_snake(v)
                    except KeyError:
                        return slow(v, view, packed, mapping=True)
            elif isinstance(v, str | bytes | int | float | list | tuple) or v is None:
                raise type_error(t, v)
            else:
                try:
                    values = get_attrs(v)
                except AttributeError:
                    return slow(v, view, packed, mapping=False)
            if allowed is not None and set(map(type, values)) <= allowed:
                packed[3::4] = values
                try:
                    pack_into(view, 0, *packed)
                    return None
                except struct.error:
                    pass  # out of range: the converters say which field
            return slow(v, view, packed, mapping=v.__class__ is dict or isinstance(v, Mapping))

        return lower

    def _slow(self, v: Any, view: memoryview, packed: list[Any], *, mapping: bool) -> None:
        out = []
        for name, attr, convert in zip(self.names, self.attrs, self.converts, strict=True):
            try:
                # an f32 comes back rounded: struct would refuse one beyond float32's range
                out.append(convert(field_value(v, name, attr, mapping)))
            except (WitTypeError, WitValueError) as e:
                raise prefixed(f"field {name!r}", e) from None
        packed[3::4] = out
        self.packer.pack_into(view, 0, *packed)


class StringParam:
    """A top-level ``string`` parameter, pointed at the encoded ``bytes`` themselves.

    ``wasmtime_component_func_call`` only reads its arguments, so instead of
    allocating a ``wasm_byte_vec_t`` per call (and deleting it after), or
    copying the text into a buffer, the argument slot's data pointer is a
    ``c_char_p`` alias: assigning the UTF-8 ``bytes`` to it stores the address
    of their contents and keeps them alive (ctypes holds the last value
    assigned) until the next call replaces them. Lowering is one ``encode``,
    one pointer write and one size write, with no C call. The slot must never
    be passed to ``val_delete`` (the memory is Python's): the owner leaves it
    out of the values it deletes.
    """

    T = Prim("string")

    @staticmethod
    def applies(t: WitType) -> bool:
        return t == StringParam.T

    @staticmethod
    def slot(val: Any) -> tuple[Any, Any]:
        """``(data, size)``: the ``c_char_p`` and ``c_size_t`` aliases of the string in
        ``val``, through which a lowerer points it at UTF-8 ``bytes``."""
        address = ctypes.addressof(val) + f.VAL_PAYLOAD_OFFSET
        size = ctypes.c_size_t.from_address(address)
        data = ctypes.c_char_p.from_address(address + ctypes.sizeof(ctypes.c_size_t))
        return data, size

    def allocate(self, val: Any) -> Lower:
        """Make ``val`` an empty string and return the lowerer that points it at a value."""
        t = self.T
        data, size = self.slot(val)
        data.value = b""
        size.value = 0
        val.kind = f.STRING

        def lower(v: Any, _val: Any, _b: Any) -> None:
            raw = utf8(t, v)
            data.value = raw  # its address, and a reference that keeps it alive
            size.value = len(raw)

        return lower
