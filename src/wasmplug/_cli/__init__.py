"""The ``wasmplug`` command line: argument parsing, output, exit codes.

Owns: the entry point (``main``), the exit codes and :class:`UsageError` (``_common``), and one
module per command group (``author``, ``grants``, ``registry``, ``sign``).

May import: anything in wasmplug. Nothing in wasmplug imports it.
"""
