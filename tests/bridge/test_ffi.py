"""wasmtime-py's private layer is used in one module, and every name it uses is pinned.

An upgrade of wasmtime-py that renames, removes or re-signs anything wasmplug
relies on fails here, by name, instead of corrupting memory at run time.
"""

from __future__ import annotations

import ast
import ctypes
import gc
import importlib
import pathlib
from typing import Any

import pytest
import wasmtime
from wasmtime import _bindings as b

import wasmplug
from wasmplug._bridge import ffi

SRC = pathlib.Path(wasmplug.__file__).parent
FFI = SRC / "_bridge" / "ffi.py"

# Raw ctypes functions: (number of arguments, return type name). A change in either
# means the C API changed shape.
SIGNATURES: dict[str, tuple[int, str | None]] = {
    "_wasm_byte_vec_copy": (2, None),
    "_wasm_byte_vec_new_uninitialized": (2, None),
    "_wasmtime_component_func_call": (6, "LP_wasmtime_error"),
    "_wasmtime_component_instance_get_func": (4, "c_bool"),
    "_wasmtime_component_linker_instance_add_func": (6, "LP_wasmtime_error"),
    "_wasmtime_component_linker_instance_add_resource": (7, "LP_wasmtime_error"),
    "_wasmtime_component_linker_instantiate": (4, "LP_wasmtime_error"),
    "_wasmtime_component_resource_any_clone": (1, "LP_wasmtime_component_resource_any"),
    "_wasmtime_component_resource_any_delete": (1, None),
    "_wasmtime_component_resource_any_drop": (2, "LP_wasmtime_error"),
    "_wasmtime_component_resource_any_to_host": (3, "LP_wasmtime_error"),
    "_wasmtime_component_resource_host_delete": (1, None),
    "_wasmtime_component_resource_host_new": (3, "LP_wasmtime_component_resource_host"),
    "_wasmtime_component_resource_host_rep": (1, "c_uint"),
    "_wasmtime_component_resource_host_to_any": (3, "LP_wasmtime_error"),
    "_wasmtime_component_val_delete": (1, None),
    "_wasmtime_component_val_new": (1, "LP_wasmtime_component_val"),
    "_wasmtime_component_valflags_new_uninit": (2, None),
    "_wasmtime_component_vallist_new": (3, None),
    "_wasmtime_component_vallist_new_uninit": (2, None),
    "_wasmtime_component_valrecord_new_uninit": (2, None),
    "_wasmtime_component_valtuple_new_uninit": (2, None),
    "_wasmtime_context_set_epoch_deadline": (2, None),
    "_wasmtime_context_set_fuel": (2, "LP_wasmtime_error"),
    "_wasmtime_context_set_wasi": (2, "LP_wasmtime_error"),
    "_wasmtime_engine_increment_epoch": (1, None),
    "_wasmtime_config_host_memory_creator_set": (2, None),
    "_wasmtime_config_memory_init_cow_set": (2, None),
    "_wasmtime_pooling_allocation_config_delete": (1, None),
    "_wasmtime_pooling_allocation_config_linear_memory_keep_resident_set": (2, None),
    "_wasmtime_pooling_allocation_config_max_core_instances_per_component_set": (2, None),
    "_wasmtime_pooling_allocation_config_max_memories_per_component_set": (2, None),
    "_wasmtime_pooling_allocation_config_max_memories_per_module_set": (2, None),
    "_wasmtime_pooling_allocation_config_max_memory_size_set": (2, None),
    "_wasmtime_pooling_allocation_config_max_tables_per_component_set": (2, None),
    "_wasmtime_pooling_allocation_config_max_tables_per_module_set": (2, None),
    "_wasmtime_pooling_allocation_config_new": (0, "LP_wasmtime_pooling_allocation_config_t"),
    "_wasmtime_pooling_allocation_config_table_elements_set": (2, None),
    "_wasmtime_pooling_allocation_config_total_component_instances_set": (2, None),
    "_wasmtime_pooling_allocation_config_total_core_instances_set": (2, None),
    "_wasmtime_pooling_allocation_config_total_memories_set": (2, None),
    "_wasmtime_pooling_allocation_config_total_tables_set": (2, None),
    "_wasmtime_pooling_allocation_strategy_set": (2, None),
    "_wasmtime_store_context": (1, "LP_wasmtime_context"),
    "_wasmtime_store_delete": (1, None),
    "_wasmtime_store_epoch_deadline_callback": (4, None),
    "_wasmtime_store_limiter": (6, None),
    "_wasmtime_store_new": (3, "LP_wasmtime_store"),
}

# Private attributes of public wasmtime objects that ffi.py reaches into.
PRIVATE_ATTRIBUTES = {"_context", "_func", "_from_ptr", "_consume"}


def _ffi_uses() -> dict[str, set[str]]:
    """Names ffi.py reads from each private module alias (b, f, component_types)."""
    used: dict[str, set[str]] = {"b": set(), "f": set(), "component_types": set()}
    for node in ast.walk(ast.parse(FFI.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in used
        ):
            used[node.value.id].add(node.attr)
    return used


def test_every_raw_function_ffi_uses_is_pinned() -> None:
    raw = {n for n in _ffi_uses()["b"] if n.startswith("_wasm")}
    assert raw == set(SIGNATURES), "pin the signature of every raw function ffi.py uses"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_raw_function_signatures(name: str) -> None:
    fn = getattr(b, name)
    nargs, restype = SIGNATURES[name]
    assert len(fn.argtypes) == nargs
    assert (fn.restype.__name__ if fn.restype is not None else None) == restype


def test_every_private_name_ffi_uses_exists() -> None:
    modules: dict[str, Any] = {
        "b": b,
        "f": importlib.import_module("wasmtime._ffi"),
        "component_types": importlib.import_module("wasmtime.component._types"),
    }
    missing = [
        f"{alias}.{name}"
        for alias, names in _ffi_uses().items()
        for name in names
        if not hasattr(modules[alias], name)
    ]
    assert missing == []


def test_value_layout() -> None:
    # The bridge writes wasmtime_component_val_t by offset: kind (u8) then the payload union.
    assert ctypes.sizeof(ffi.Val) == 32
    assert ffi.Val.kind.offset == 0
    assert ffi.Val.of.offset == ffi.VAL_PAYLOAD_OFFSET == 8
    assert ffi.VAL_SIZE == 32
    assert ctypes.sizeof(ffi.ByteVec) == 16
    assert ctypes.sizeof(ffi.ValRecordEntry) == 48
    kinds = ("BOOL", "S8", "U8", "S16", "U16", "S32", "U32", "S64", "U64", "F32", "F64")
    kinds += ("CHAR", "STRING", "LIST", "RECORD", "TUPLE", "VARIANT", "ENUM", "OPTION")
    kinds += ("RESULT", "FLAGS", "RESOURCE")
    assert [getattr(ffi, k) for k in kinds] == list(range(len(kinds)))


def _signature(fn_type: Any) -> tuple[str | None, list[str]]:
    """``(restype, argtypes)`` of a CFUNCTYPE class, by type name."""
    restype = fn_type._restype_
    return (
        restype.__name__ if restype is not None else None,
        [t.__name__ for t in fn_type._argtypes_],
    )


def test_memory_creator_layout() -> None:
    # _bridge/memcreator.py fills these structs and implements these callbacks
    # (wasmtime's config.h): a change of shape must fail here, not in a guest.
    assert [n for n, _ in ffi.MemoryCreator._fields_] == ["env", "new_memory", "finalizer"]
    assert [n for n, _ in ffi.LinearMemory._fields_] == [
        "env",
        "get_memory",
        "grow_memory",
        "finalizer",
    ]
    assert ctypes.sizeof(ffi.MemoryCreator) == 3 * ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(ffi.LinearMemory) == 4 * ctypes.sizeof(ctypes.c_void_p)
    size = "c_ulong"  # size_t
    assert _signature(ffi.NewMemoryCallback) == (
        size,  # wasmtime_error_t*, as an integer
        ["c_void_p", "LP_wasm_memorytype_t", size, size, size, size, "LP_wasmtime_linear_memory"],
    )
    assert _signature(ffi.GetMemoryCallback) == (size, ["c_void_p", f"LP_{size}", f"LP_{size}"])
    assert _signature(ffi.GrowMemoryCallback) == (size, ["c_void_p", size])
    assert _signature(ffi.MemoryFinalizer) == (None, ["c_void_p"])
    assert _signature(ffi.CreatorFinalizer) == (None, ["c_void_p"])


def test_private_attributes_of_public_objects() -> None:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    assert ffi.store_context(store)
    component = wasmtime.component.Component(
        engine,
        """(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func (export "f") (canon lift (core func $i "f"))))""",
    )
    instance = wasmtime.component.Linker(engine).instantiate(store, component)
    func = instance.get_func(store, "f")
    assert func is not None
    assert ffi.func_handle(func)
    raw = ctypes.cast(ffi.new_error("boom"), ctypes.POINTER(b.wasmtime_error_t))
    err = ffi.error_from_ptr(raw)  # round trip through a raw pointer
    assert isinstance(err, wasmtime.WasmtimeError)
    assert "boom" in str(err)
    for attr in PRIVATE_ATTRIBUTES:
        owner = {
            "_context": wasmtime.Store,
            "_from_ptr": wasmtime.WasmtimeError,
            "_consume": wasmtime.WasmtimeError,
        }.get(attr)
        if owner is not None:
            assert hasattr(owner, attr), attr
    assert hasattr(func, "_func")


def test_raw_store_instantiates_and_calls() -> None:
    engine = wasmtime.Engine()
    component = wasmtime.component.Component(
        engine,
        """(component
             (core module $m (func (export "f") (result i32) (i32.const 7)))
             (core instance $i (instantiate $m))
             (func (export "f") (result u32) (canon lift (core func $i "f"))))""",
    )
    store = ffi.RawStore(engine)
    store.set_limits(65536, 10, 1, 1, 1)
    store.set_wasi(wasmtime.WasiConfig())  # consumed: wasmtime owns it now
    assert hasattr(wasmtime.WasiConfig, "_consume")
    instance = store.instantiate(wasmtime.component.Linker(engine), component)
    index = component.get_export_index("f")
    assert index is not None
    func = ffi.export_func(ctypes.byref(instance), store.context, index.ptr())
    result = ffi.Val()
    assert not ffi.func_call(func, store.context, None, 0, ctypes.byref(result), 1)
    assert (result.kind, result.of.u32) == (ffi.U32, 7)
    missing = wasmtime.component.Component(
        engine,
        """(component (import "x" (func)))""",
    )
    with pytest.raises(wasmtime.WasmtimeError):
        store.instantiate(wasmtime.component.Linker(engine), missing)
    store.close()
    store.close()  # idempotent
    assert store.ptr is None
    assert store.context is None


def test_a_raw_store_interrupted_while_created_is_finalized_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C can raise inside ``RawStore.__init__`` (a new instance after a fault):
    its finalizer then runs on a half-built object and must not raise (pytest turns
    an exception in a finalizer into a failure)."""

    def interrupted(*_args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(ffi, "store_new", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ffi.RawStore(wasmtime.Engine())
    gc.collect()  # the half-built store is gone; its __del__ raised nothing


def _wasmtime_private_names() -> set[str]:
    """Every private (single-underscore) name wasmtime-py's own source defines or uses."""
    names: set[str] = set()
    root = pathlib.Path(wasmtime.__file__).parent
    for path in root.rglob("*.py"):
        if path.name.startswith("_bindings"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                name = node.name
            else:
                continue
            if name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return names


def _wasmplug_own_names() -> set[str]:
    """Attribute names wasmplug's own classes define (``self._x = ...``, ``__slots__``)."""
    own: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                own.add(node.name)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                value = ast.literal_eval(node.value)
                own.update([value] if isinstance(value, str) else value)
    return own


def test_no_other_module_touches_wasmtime_private_names() -> None:
    private = _wasmtime_private_names() - (_wasmplug_own_names() - PRIVATE_ATTRIBUTES)
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == FFI:
            continue
        rel = path.relative_to(SRC)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wasmtime"):
                modules = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
                if any(part.startswith("_") for m in modules for part in m.split(".")):
                    offenders.append(f"{rel}:{node.lineno}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("wasmtime") and "._" in alias.name:
                        offenders.append(f"{rel}:{node.lineno}: import {alias.name}")
            elif isinstance(node, ast.Attribute) and node.attr in private:
                offenders.append(f"{rel}:{node.lineno}: .{node.attr}")
    assert offenders == [], "private wasmtime use belongs in _bridge/ffi.py"


def test_the_scan_sees_a_private_use() -> None:
    # The scan above must be able to fail: these are the uses it moved into ffi.py.
    private = _wasmtime_private_names()
    assert {"_context", "_func", "_from_ptr"} <= private
