"""The smallest useful plugin: one ``add(s32, s32) -> s32`` export, no memory, no imports.

Density tests and ``benchmarks/bench_instances.py`` load thousands of it: what it costs
is what wasmplug and wasmtime hold per loaded plugin, with nothing of the guest's own.
"""

from __future__ import annotations

__all__ = ["TINY_WAT"]

TINY_WAT = """
(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add"))))
"""
