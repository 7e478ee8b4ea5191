"""The process isolation tier: a plugin's instances in worker processes that can be killed.

Owns: the application's side of a process-isolated plugin (``backend``: worker
pool, warm spares, the call loop that serves host calls, deadline kills and fault
mapping), starting and reaping workers (``spawn``), the framed msgpack channel
(``wire``), the WIT-typed wire conversion (``codec``) and the worker's main loop
(``worker``, which runs in the child process).

May import: ``wasmplug._runtime`` (``plugin``, ``instance``, ``engine``, ``cache``,
``faults``, ``exports``), ``wasmplug._sandbox``, ``wasmplug._bridge``, the leaf
modules, and msgpack. ``worker`` must not import ``wasmplug/__init__`` or
anything that pulls in the CLI, HTTP or signing stacks: workers start from a bare
namespace package (see ``spawn``) so that they start fast.
"""
