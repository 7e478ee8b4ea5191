"""Tools for plugin authors: build, pack, sign and generate bindings.

May import: ``wasmplug._runtime`` and everything below it.
"""
