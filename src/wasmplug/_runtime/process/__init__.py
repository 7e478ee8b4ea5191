"""The process isolation tier: a plugin's instances in worker processes that can be killed.

Owns: what a process-isolated plugin is loaded with (``launch``: the backend
factory and empty linker ``PluginHost.load`` gives the plugin instead of linking),
the application's side of such a plugin (``backend``: worker
pool, the call loop, deadline kills and fault mapping; ``hostcalls``:
serving host functions and guest output while a call waits; ``handles``: resource
handles that cross, host objects lent to a worker and tokens of guest objects
held in one), starting workers and keeping warm spares (``workers``), spawning
and reaping processes (``spawn``), the framed msgpack channel
(``wire``), the WIT-typed wire conversion (``codec``), the worker's main loop
(``worker``, which runs in the child process) and what the worker confines itself
to before the plugin's code runs (``jail``: seccomp and Landlock).

May import: ``wasmplug._runtime`` (``plugin``, ``instance``, ``engine``, ``cache``,
``faults``, ``exports``), ``wasmplug._sandbox``, ``wasmplug._bridge``, the leaf
modules, and msgpack; of a plugin, only what ``plugin.PluginPort`` offers (never its
private attributes). ``worker`` must not import ``wasmplug/__init__`` or
anything that pulls in the CLI, HTTP or signing stacks: workers start from a bare
namespace package (see ``spawn``) so that they start fast.
"""
