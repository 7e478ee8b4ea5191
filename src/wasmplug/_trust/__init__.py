"""Trust and distribution: signatures, trusted keys, the plugin registry.

Owns: reading and writing Wasm sections (``wasm_sections``), component import/export names
read without compiling (``component_info``), Ed25519 keys and key files (``keys``), wasmsign2
signatures (``signing``), the trust
store with scopes and revocations (``store``) and the local registry of installed plugins with
rollback protection (``registry``).

May import: ``wasmplug._sandbox``, ``wasmplug._bridge`` and the leaf modules.
"""
