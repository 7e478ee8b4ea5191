"""The component the process-tier tests load: small exports that each exercise one
thing a worker process must do."""

from __future__ import annotations

from wasmplug import Manifest

__all__ = ["MANIFEST", "WAT"]

# add, spin, a host callback, a counter (instance state), and a guest that sleeps
# in wasi:io/poll (host-side blocking that no epoch deadline reaches).
WAT = r"""
(component
  (import "cb" (func $cb (param "x" u32) (result u32)))
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type))
    (export "pollable" (type (eq 0)))
    (export "subscribe-duration" (func (param "when" u64) (result (own 1))))))
  (core func $cb_lowered (canon lower (func $cb)))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $sub (canon lower (func $clock "subscribe-duration")))
  (core func $drop (canon resource.drop $pollable))
  (core module $m
    (import "h" "cb" (func $cb (param i32) (result i32)))
    (import "h" "block" (func $block (param i32)))
    (import "h" "sub" (func $sub (param i64) (result i32)))
    (import "h" "drop" (func $drop (param i32)))
    (global $n (mut i32) (i32.const 0))
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "spin") (loop $l br $l))
    (func (export "call-cb") (param i32) (result i32) local.get 0 call $cb)
    (func (export "count") (result i32)
      (global.set $n (i32.add (global.get $n) (i32.const 1))) global.get $n)
    (func (export "sleep") (param i64) (local $p i32)
      (local.set $p (call $sub (local.get 0)))
      (call $block (local.get $p))
      (call $drop (local.get $p))))
  (core instance $i (instantiate $m (with "h" (instance
    (export "cb" (func $cb_lowered)) (export "block" (func $block))
    (export "sub" (func $sub)) (export "drop" (func $drop))))))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "spin") (canon lift (core func $i "spin")))
  (func (export "call-cb") (param "x" u32) (result u32) (canon lift (core func $i "call-cb")))
  (func (export "count") (result u32) (canon lift (core func $i "count")))
  (func (export "sleep") (param "ns" u64) (canon lift (core func $i "sleep")))
)
"""

MANIFEST = Manifest(name="worker-test", host_interfaces=("cb",))
