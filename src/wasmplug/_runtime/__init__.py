"""The runtime: the host, plugins, instances, and crash isolation.

Owns: ``PluginHost`` (``host``), ``Plugin`` and its call path (``plugin``, ``exports``),
one live component instance (``instance``), the wasmtime engine and epoch ticker
(``engine``), the compile cache (``cache``), fault classification (``faults``) and the
restart policy's bookkeeping (``supervisor``).

May import: ``wasmplug._trust``, ``wasmplug._sandbox``, ``wasmplug._bridge`` and the leaf
modules. Never ``wasmplug._cli``, ``wasmplug.authoring`` or ``wasmplug.testing``.
"""
