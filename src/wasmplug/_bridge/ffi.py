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
  (:func:`store_context`), a component Func's C struct (:func:`func_handle`),
  handing a ``WasiConfig`` over (:meth:`RawStore.set_wasi`) and building a
  ``WasmtimeError`` from a raw pointer (:func:`error_from_ptr`);
- the engine options wasmtime-py does not wrap: the pooling allocator
  (:func:`use_pooling_allocator`) and a host memory creator
  (:func:`use_memory_creator`, used by :mod:`wasmplug._bridge.memcreator`).

A plugin instance lives in a :class:`RawStore`: the store, the component
instance and its export functions are held as C structs, not as wasmtime-py's
``Store``/``Instance``/``Func`` wrappers, which cost about as much as wasmtime's
own work when an instance is created and thrown away (``reset()`` + first call).

``tests/bridge/test_ffi.py`` pins every private name used here (and their ctypes
signatures and layouts), and fails if any other module uses one.
"""

from __future__ import annotations

import ctypes
from typing import Any

from wasmtime import Config, Engine, Store, WasiConfig, WasmtimeError
from wasmtime import _bindings as b
from wasmtime import _ffi as f
from wasmtime.component import Component, Func, Linker
from wasmtime.component import _types as component_types

__all__ = [
    "RawStore",
    "Val",
    "ValPtr",
    "address_arg",
    "call_args",
    "component_types",
    "engine_address",
    "error_from_ptr",
    "error_message",
    "error_message_at",
    "export_func",
    "func_call_args",
    "func_handle",
    "increment_epoch",
    "new_error",
    "set_fuel_to",
    "store_context",
    "use_memory_creator",
    "use_pooling_allocator",
]

Val = b.wasmtime_component_val_t
ValPtr = ctypes.POINTER(Val)
ByteVec = b.wasm_byte_vec_t
ValRecordEntry = b.wasmtime_component_valrecord_entry_t
VAL_SIZE = ctypes.sizeof(Val)
VAL_PAYLOAD_OFFSET = Val.of.offset
_byref = ctypes.byref

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
func_call_args: Any = ctypes.CFUNCTYPE(ctypes.c_void_p)(
    ctypes.cast(func_call, ctypes.c_void_p).value or 0
)
"""``wasmtime_component_func_call`` (the same C function as :data:`func_call`) with no
argument types, returning the error's address (or ``None``). Call it with arguments
prebuilt once (:func:`call_args`): ctypes then passes a ``byref`` object as its
address and a ``c_size_t`` as its value, with no ``from_param`` conversion per
argument. Through the bindings' typed pointers a scalar call costs about 1.3 µs more;
through ``c_void_p``/``c_size_t`` argument types (addresses as ``int``), about 0.5 µs
more (benchmarks/README.md, "Sixth round")."""


def address_arg(address: int) -> Any:
    """An argument for :data:`func_call_args` that passes ``address`` (a
    ``byref`` of a ``c_char`` placed there: it reads nothing and owns nothing, so
    the caller keeps what it points at alive)."""
    return ctypes.byref(ctypes.c_char.from_address(address))


def call_args(
    func_ref: Any, context: Any, params: Any, nparams: int, result: Any, nresults: int
) -> tuple[Any, ...]:
    """The six arguments of :data:`func_call_args` for one function on one store,
    built once: ``func_ref`` (``byref`` of its ``wasmtime_component_func_t``), the
    store's ``context`` (a pointer object), the ``params`` array (its first
    ``nparams`` values are the arguments) and the ``result`` array or value. The
    tuple keeps ``func_ref``, ``params`` and ``result`` alive, not the store."""
    return (
        func_ref,
        address_arg(ctypes.cast(context, ctypes.c_void_p).value or 0),
        ctypes.byref(params),
        ctypes.c_size_t(nparams),
        ctypes.byref(result),
        ctypes.c_size_t(nresults),
    )


set_epoch_deadline = b._wasmtime_context_set_epoch_deadline
increment_epoch: Any = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)(
    ctypes.cast(b._wasmtime_engine_increment_epoch, ctypes.c_void_p).value or 0
)
"""``increment_epoch(engine_address)``: ``wasmtime_engine_increment_epoch``, one atomic
add, called *without* releasing the GIL (a ``PYFUNCTYPE`` function, as ctypes calls the
Python C API). Through the bindings, each increment released the GIL and the epoch
ticker then waited to take it back from a thread running Python: a thread switch per
tick. Pass :func:`engine_address`."""


def engine_address(engine: Engine) -> int:
    """The address of ``engine``'s ``wasm_engine_t`` (valid while ``engine`` lives)."""
    return ctypes.cast(engine.ptr(), ctypes.c_void_p).value or 0


set_fuel = b._wasmtime_context_set_fuel
set_fuel_to: Any = ctypes.CFUNCTYPE(ctypes.c_void_p)(
    ctypes.cast(set_fuel, ctypes.c_void_p).value or 0
)
""":data:`set_fuel` with no argument types: ``set_fuel_to(context, fuel)`` with the
store's context (its pointer object) and a ``c_uint64`` made once, as for
:data:`func_call_args` (about 0.5 µs less than the bindings' prototype)."""
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
instance_get_func = b._wasmtime_component_instance_get_func
linker_instantiate = b._wasmtime_component_linker_instantiate
store_new = b._wasmtime_store_new
store_delete = b._wasmtime_store_delete
store_context_of = b._wasmtime_store_context
store_limiter = b._wasmtime_store_limiter
context_set_wasi = b._wasmtime_context_set_wasi
NO_DATA_FINALIZER: Any = b._wasmtime_store_new.argtypes[2](0)
ComponentInstance = b.wasmtime_component_instance_t
ComponentFunc = b.wasmtime_component_func_t
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
    """Take ownership of a ``wasmtime_error_t*`` (a ctypes pointer, or its address as
    :data:`func_call_args` returns it) as a ``WasmtimeError``."""
    if isinstance(ptr, int):
        ptr = ctypes.cast(ptr, ctypes.POINTER(b.wasmtime_error_t))
    return WasmtimeError._from_ptr(ptr)


def error_message(ptr: Any) -> str:
    """Take ownership of a ``wasmtime_error_t*`` and return its message text."""
    return str(WasmtimeError._from_ptr(ptr))


def error_message_at(address: int) -> str:
    """Take ownership of the ``wasmtime_error_t`` at ``address`` (the integer a
    callback returned, as a C function pointer call gives it back) and return its text."""
    return error_message(ctypes.cast(address, ctypes.POINTER(b.wasmtime_error_t)))


def store_context(store: Store) -> Any:
    """The raw ``wasmtime_context_t*`` of a Store (for the fast call path)."""
    return store._context()


def func_handle(func: Func) -> Any:
    """``byref`` of a component Func's ``wasmtime_component_func_t``, for :data:`func_call`."""
    return ctypes.byref(func._func)


class RawStore:
    """A ``wasmtime_store_t`` (without host data) and its ``wasmtime_context_t``.

    Attributes:
        ptr: The ``wasmtime_store_t*``; ``None`` once closed.
        context: Its ``wasmtime_context_t*``; ``None`` once closed.
    """

    __slots__ = ("context", "ptr")

    def __init__(self, engine: Engine, engine_ptr: Any = None) -> None:
        """``engine_ptr``: ``engine.ptr()``, if the caller has it (one Python call less)."""
        self.ptr: Any = store_new(
            engine.ptr() if engine_ptr is None else engine_ptr, None, NO_DATA_FINALIZER
        )
        self.context: Any = store_context_of(self.ptr)

    def set_limits(
        self, memory_size: int, table_elements: int, instances: int, tables: int, memories: int
    ) -> None:
        """``Store.set_limits``: a negative value leaves that limit unset."""
        store_limiter(self.ptr, memory_size, table_elements, instances, tables, memories)

    def set_wasi(self, config: WasiConfig) -> None:
        """Give the store its WASI context (``config`` is consumed)."""
        err = context_set_wasi(self.context, config._consume())
        if err:
            raise WasmtimeError._from_ptr(err)

    def instantiate(self, linker: Linker, component: Component) -> Any:
        """Instantiate ``component`` in this store.

        Returns:
            The ``wasmtime_component_instance_t`` (for :func:`export_func`).

        Raises:
            WasmtimeError: wasmtime refused (a trap in a start function, a missing
                import, a limit).
        """
        return self.instantiate_raw(linker.ptr(), component.ptr())

    def instantiate_raw(self, linker_ptr: Any, component_ptr: Any) -> Any:
        """:meth:`instantiate`, given ``linker.ptr()`` and ``component.ptr()`` (looked
        up once per plugin: each is a Python call). The caller keeps both alive."""
        instance = ComponentInstance()
        err = linker_instantiate(linker_ptr, self.context, component_ptr, _byref(instance))
        if err:
            raise WasmtimeError._from_ptr(err)
        return instance

    def close(self) -> None:
        """Delete the store and everything in it (idempotent)."""
        # getattr: a Ctrl-C raised inside __init__ leaves the slots unset, and then
        # the finalizer calls this.
        ptr = getattr(self, "ptr", None)
        if ptr is not None:
            self.ptr = self.context = None
            store_delete(ptr)

    def __del__(self) -> None:
        self.close()


def export_func(instance_ref: Any, context: Any, index_ptr: Any) -> Any:
    """``byref`` of the ``wasmtime_component_func_t`` of one export of a component
    instance, for :data:`func_call`.

    Args:
        instance_ref: ``byref`` of the instance (from :meth:`RawStore.instantiate`).
        context: Its store's context.
        index_ptr: ``ExportIndex.ptr()`` of the export (looked up once per component).

    Raises:
        LookupError: ``index_ptr`` is not a function export of the instance's component.
    """
    func = ComponentFunc()
    if not instance_get_func(instance_ref, context, index_ptr, _byref(func)):
        raise LookupError("not a function export of this instance")
    return _byref(func)


_POOLING: dict[str, Any] = {
    "total_component_instances": (
        b._wasmtime_pooling_allocation_config_total_component_instances_set
    ),
    "total_core_instances": b._wasmtime_pooling_allocation_config_total_core_instances_set,
    "total_memories": b._wasmtime_pooling_allocation_config_total_memories_set,
    "total_tables": b._wasmtime_pooling_allocation_config_total_tables_set,
    "max_core_instances_per_component": (
        b._wasmtime_pooling_allocation_config_max_core_instances_per_component_set
    ),
    "max_memories_per_component": (
        b._wasmtime_pooling_allocation_config_max_memories_per_component_set
    ),
    "max_tables_per_component": b._wasmtime_pooling_allocation_config_max_tables_per_component_set,
    "max_memories_per_module": b._wasmtime_pooling_allocation_config_max_memories_per_module_set,
    "max_tables_per_module": b._wasmtime_pooling_allocation_config_max_tables_per_module_set,
    "max_memory_size": b._wasmtime_pooling_allocation_config_max_memory_size_set,
    "table_elements": b._wasmtime_pooling_allocation_config_table_elements_set,
    "linear_memory_keep_resident": (
        b._wasmtime_pooling_allocation_config_linear_memory_keep_resident_set
    ),
}
"""The pooling allocator's settings wasmplug uses, by the name of their C setter."""


def use_pooling_allocator(config: Config, settings: dict[str, int]) -> None:
    """Make engines built from ``config`` use wasmtime's pooling instance allocator.

    Args:
        config: The engine configuration (not yet used to build an engine).
        settings: ``wasmtime_pooling_allocation_config_<name>_set`` values by
            ``<name>`` (keys of :data:`_POOLING`); the rest keep wasmtime's defaults.

    Raises:
        KeyError: an unknown setting name.
    """
    setters = [(_POOLING[name], value) for name, value in settings.items()]
    pooling = b._wasmtime_pooling_allocation_config_new()
    try:
        for setter, value in setters:
            setter(pooling, value)
        b._wasmtime_pooling_allocation_strategy_set(config.ptr(), pooling)  # copies it
    finally:
        b._wasmtime_pooling_allocation_config_delete(pooling)


# A host memory creator (wasmtime's ``MemoryCreator`` through the C API, config.h):
# new_memory(env, const wasm_memorytype_t*, minimum, maximum, reserved_size_in_bytes,
#            guard_size_in_bytes, wasmtime_linear_memory_t* out) -> wasmtime_error_t*
# get_memory(env, size_t* byte_size, size_t* byte_capacity) -> uint8_t* base
# grow_memory(env, size_t new_size) -> wasmtime_error_t*
# Sizes are in bytes; ``maximum`` is SIZE_MAX for "none" and ``reserved`` 0 for "none".
MemoryCreator = b.wasmtime_memory_creator_t
LinearMemory = b.wasmtime_linear_memory_t
NewMemoryCallback = b.wasmtime_new_memory_callback_t
GetMemoryCallback = b.wasmtime_memory_get_callback_t
GrowMemoryCallback = b.wasmtime_memory_grow_callback_t
# The finalizer fields' CFUNCTYPE(None, c_void_p), as the bindings declare them.
MemoryFinalizer: Any = next(fd[1] for fd in LinearMemory._fields_ if fd[0] == "finalizer")
CreatorFinalizer: Any = next(fd[1] for fd in MemoryCreator._fields_ if fd[0] == "finalizer")


def use_memory_creator(config: Config, creator: Any) -> None:
    """Make engines built from ``config`` allocate every linear memory through
    ``creator`` (a filled :data:`MemoryCreator`; wasmtime copies it), and turn off
    copy-on-write memory images, which wasmtime supports only in memories it
    mapped itself: with them on, instantiating a module that has data segments
    panics ("memory_image is Some only for mmap-based memories").

    Only the on-demand instance allocator calls a memory creator; wasmtime's
    pooling allocator places memories in its own slots.
    """
    b._wasmtime_config_memory_init_cow_set(config.ptr(), False)
    b._wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(creator))


def bytes_to_vec(data: bytes, vec: Any) -> None:
    """Fill an uninitialised ``wasm_byte_vec_t`` struct (in place) with a copy of ``data``."""
    n = len(data)
    byte_vec_new_uninitialized(ctypes.byref(vec), n)
    if n:
        ctypes.memmove(vec.data, data, n)
