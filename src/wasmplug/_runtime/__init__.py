"""The runtime: the host, plugins, instances, and crash isolation.

Owns: ``PluginHost`` (``host``) and what it loads with: the steps from a verified
component to a plugin (``loader``), reading a source and finding its manifest
(``sources``), compiling (``compiler``, with the on-disk ``cache``), checking and
linking imports against the application's interfaces (``linking``), the engine, ticker,
threads and event loop it shares with its plugins (``services``, ``engine``, ``aio``).
``Plugin`` (``plugin``) and its in-process call path (``callpath``, ``exports``,
``deadline``, ``callthread``), one live component instance (``instance``) and the pool
of them (``pool``), fault classification (``faults``), the restart policy's bookkeeping
(``supervisor``), ``inspect()`` (``describe``), telemetry and stats, and the
process-isolation tier (``process``).

A module that needs something of a module that imports it sees it through a small
protocol (``instance.InstanceOwner``, ``exports.PluginCalls``, ``callpath.Backend``,
``telemetry.Instrumented``): no import cycle, not even a type-only one. The process tier
(a package of its own) sees a plugin only through ``plugin.PluginPort``, never through
its private attributes (``tests/test_architecture.py`` checks that for every package).

May import: ``wasmplug._trust``, ``wasmplug._sandbox``, ``wasmplug._bridge`` and the leaf
modules. Never ``wasmplug._cli``, ``wasmplug.authoring`` or ``wasmplug.testing``.
"""
