"""The typed host-call bridge: WIT types, the canonical ABI through ctypes, host functions.

Owns: reading component types into a WIT model (``wit``), the converter closures that lower
Python values into ``wasmtime_component_val_t`` and lift them back (``convert``, ``accept``,
``lower``, ``lift``; ``params``: argument slots reused across calls), the value types
(``values``), resource handles (``resources``), host functions linked into a component
linker (``hostfuncs``), the JSON form of values (``jsonvalues``), the per-thread call
context (``callctx``) and every private wasmtime binding (``ffi``).

May import: ``wasmplug._errors``, ``wasmplug._semver`` and wasmtime. Nothing else in wasmplug.
"""
