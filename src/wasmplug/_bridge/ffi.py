"""The one module that touches wasmtime-py's private ctypes layer.

wasmplug's bridge writes canonical-ABI values (``wasmtime_component_val_t``)
directly and calls ``wasmtime_component_func_call`` itself, because the public
``wasmtime.component.Func.__call__`` re-reflects the function type on every
call (~36 µs) and its host-function path stores exceptions in a module-global
``LAST_EXCEPTION`` that is not thread-safe. Everything private is imported
here, so an upgrade of wasmtime-py breaks in one place:

- the ctypes bindings (``wasmtime._bindings``) and constants (``wasmtime._ffi``);
- the component type classes (``wasmtime.component._types``, read by
  :mod:`wasmplug._bridge.wit`);
- private attributes of public objects: a Store's raw context
  (:func:`store_context`), a component Func's C struct (:func:`func_handle`) and
  building a ``WasmtimeError`` from a raw pointer (:func:`error_from_ptr`).

``tests/bridge/test_ffi.py`` pins every private name used here (and their ctypes
signatures and layouts), and fails if any other module uses one.
"""

from __future__ import annotations

import ctypes
from typing import Any

from wasmtime import Store, WasmtimeError
from wasmtime import _bindings as b
from wasmtime import _ffi as f
from wasmtime.component import Func
from wasmtime.component import _types as component_types

__all__ = [
    "Val",
    "ValPtr",
    "component_types",
    "error_from_ptr",
    "error_message",
    "func_handle",
    "new_error",
    "store_context",
]

Val = b.wasmtime_component_val_t
ValPtr = ctypes.POINTER(Val)
ByteVec = b.wasm_byte_vec_t
ValRecordEntry = b.wasmtime_component_valrecord_entry_t
VAL_SIZE = ctypes.sizeof(Val)
VAL_PAYLOAD_OFFSET = Val.of.offset

# Value kinds (wasmtime_component_valkind_t).
BOOL = f.WASMTIME_COMPONENT_BOOL.value
S8 = f.WASMTIME_COMPONENT_S8.value
U8 = f.WASMTIME_COMPONENT_U8.value
S16 = f.WASMTIME_COMPONENT_S16.value
U16 = f.WASMTIME_COMPONENT_U16.value
S32 = f.WASMTIME_COMPONENT_S32.value
U32 = f.WASMTIME_COMPONENT_U32.value
S64 = f.WASMTIME_COMPONENT_S64.value
U64 = f.WASMTIME_COMPONENT_U64.value
F32 = f.WASMTIME_COMPONENT_F32.value
F64 = f.WASMTIME_COMPONENT_F64.value
CHAR = f.WASMTIME_COMPONENT_CHAR.value
STRING = f.WASMTIME_COMPONENT_STRING.value
LIST = f.WASMTIME_COMPONENT_LIST.value
RECORD = f.WASMTIME_COMPONENT_RECORD.value
TUPLE = f.WASMTIME_COMPONENT_TUPLE.value
VARIANT = f.WASMTIME_COMPONENT_VARIANT.value
ENUM = f.WASMTIME_COMPONENT_ENUM.value
OPTION = f.WASMTIME_COMPONENT_OPTION.value
RESULT = f.WASMTIME_COMPONENT_RESULT.value
FLAGS = f.WASMTIME_COMPONENT_FLAGS.value
RESOURCE = f.WASMTIME_COMPONENT_RESOURCE.value

# Raw ctypes functions: calling these skips wasmtime-py's Python wrappers.
func_call = b._wasmtime_component_func_call
set_epoch_deadline = b._wasmtime_context_set_epoch_deadline
set_fuel = b._wasmtime_context_set_fuel
val_delete = b._wasmtime_component_val_delete
val_new = b._wasmtime_component_val_new
byte_vec_new_uninitialized = b._wasm_byte_vec_new_uninitialized
byte_vec_copy = b._wasm_byte_vec_copy
vallist_new_uninit = b._wasmtime_component_vallist_new_uninit
vallist_new = b._wasmtime_component_vallist_new
valrecord_new_uninit = b._wasmtime_component_valrecord_new_uninit
valtuple_new_uninit = b._wasmtime_component_valtuple_new_uninit
valflags_new_uninit = b._wasmtime_component_valflags_new_uninit
resource_any_clone = b._wasmtime_component_resource_any_clone
resource_any_delete = b._wasmtime_component_resource_any_delete
resource_any_to_host = b._wasmtime_component_resource_any_to_host
resource_host_new = b._wasmtime_component_resource_host_new
resource_host_to_any = b._wasmtime_component_resource_host_to_any
resource_host_rep = b._wasmtime_component_resource_host_rep
resource_host_delete = b._wasmtime_component_resource_host_delete
resource_any_drop = b._wasmtime_component_resource_any_drop
linker_instance_add_func = b._wasmtime_component_linker_instance_add_func
linker_instance_add_resource = b._wasmtime_component_linker_instance_add_resource
store_epoch_deadline_callback = b._wasmtime_store_epoch_deadline_callback
ResourceAnyPtr = ctypes.POINTER(b.wasmtime_component_resource_any_t)
ResourceHostPtr = ctypes.POINTER(b.wasmtime_component_resource_host_t)

HostCallback = b.wasmtime_component_func_callback_t
ResourceDestructor = b.wasmtime_component_resource_destructor_t
Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# (context, data, *epoch_deadline_delta, *update_kind) -> wasmtime_error_t* (0: continue)
EpochDeadlineCallback = b._wasmtime_store_epoch_deadline_callback.argtypes[1]
NO_FINALIZER: Any = b._wasmtime_store_epoch_deadline_callback.argtypes[3](0)


def new_error(message: str) -> int:
    """Allocate a ``wasmtime_error_t`` and return its address, for a callback's return value."""
    err = WasmtimeError(message)
    return ctypes.cast(err._consume(), ctypes.c_void_p).value or 0


def error_from_ptr(ptr: Any) -> WasmtimeError:
    """Take ownership of a ``wasmtime_error_t*`` as a ``WasmtimeError``."""
    return WasmtimeError._from_ptr(ptr)


def error_message(ptr: Any) -> str:
    """Take ownership of a ``wasmtime_error_t*`` and return its message text."""
    return str(WasmtimeError._from_ptr(ptr))


def store_context(store: Store) -> Any:
    """The raw ``wasmtime_context_t*`` of a Store (for the fast call path)."""
    return store._context()


def func_handle(func: Func) -> Any:
    """``byref`` of a component Func's ``wasmtime_component_func_t``, for :data:`func_call`."""
    return ctypes.byref(func._func)


def bytes_to_vec(data: bytes, vec: Any) -> None:
    """Fill an uninitialised ``wasm_byte_vec_t`` struct (in place) with a copy of ``data``."""
    n = len(data)
    byte_vec_new_uninitialized(ctypes.byref(vec), n)
    if n:
        ctypes.memmove(vec.data, data, n)
