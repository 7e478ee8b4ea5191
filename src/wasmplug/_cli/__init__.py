"""The ``wasmplug`` command line: argument parsing, output, exit codes.

Owns: the entry point and shared CLI errors (``main``) and one module per command group
(``author``, ``grants``, ``registry``, ``sign``).

May import: anything in wasmplug. Nothing in wasmplug imports it.
"""
