"""A tiny component that can block in WASI, the way a hostile plugin would.

It imports ``wasi:io/poll`` and ``wasi:clocks/monotonic-clock`` (linked by
``add_wasip2``, no grant needed) and asks to wait as long as it likes:

- ``sleep-block(ns)``: ``subscribe-duration(ns)``, then ``pollable.block``;
- ``sleep-poll(ns)``: the same through ``poll([pollable])``;
- ``spin``: an infinite loop in Wasm (the epoch deadline's case);
- ``add(a, b)``, and ``call-cb(x)``, which calls the host function ``cb``.
"""

from .wasi_wat import bump_memory, stream_imports

BLOCKING_WAT = (
    r"""(component $C
  (import "cb" (func $cb (param "x" u32) (result u32)))
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))
    (export "poll" (func (param "in" (list (borrow 0))) (result (list u32))))
  ))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer $C $pollable (type $p))
    (export "pollable" (type $ep (eq $p)))
    (export "subscribe-duration" (func (param "when" u64) (result (own $ep))))
  ))
"""
    + "  "
    + bump_memory()
    + r"""
  (core instance $mem (instantiate $mem))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $pollf (canon lower (func $poll "poll")
    (memory (core memory $mem "memory")) (realloc (core func $mem "realloc"))))
  (core func $drop (canon resource.drop $pollable))
  (core func $cb_lowered (canon lower (func $cb)))
  (core module $m
    (import "h" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "h" "block" (func $block (param i32)))
    (import "h" "poll" (func $poll (param i32 i32 i32)))
    (import "h" "drop" (func $drop (param i32)))
    (import "h" "memory" (memory 1))
    (import "h" "cb" (func $cb (param i32) (result i32)))
    (func (export "sleep-block") (param i64)
      (local $h i32)
      (local.set $h (call $subscribe (local.get 0)))
      (call $block (local.get $h))
      (call $drop (local.get $h)))
    (func (export "sleep-poll") (param i64)
      (local $h i32)
      (local.set $h (call $subscribe (local.get 0)))
      (i32.store (i32.const 0) (local.get $h))
      (call $poll (i32.const 0) (i32.const 1) (i32.const 16))
      (call $drop (local.get $h)))
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    (func (export "spin") (loop $l br $l))
    (func (export "call-cb") (param i32) (result i32) (call $cb (local.get 0))))
  (core instance $i (instantiate $m (with "h" (instance
    (export "subscribe" (func $subscribe))
    (export "block" (func $block))
    (export "poll" (func $pollf))
    (export "drop" (func $drop))
    (export "memory" (memory $mem "memory"))
    (export "cb" (func $cb_lowered))))))
  (func (export "sleep-block") (param "ns" u64) (canon lift (core func $i "sleep-block")))
  (func (export "sleep-poll") (param "ns" u64) (canon lift (core func $i "sleep-poll")))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "spin") (canon lift (core func $i "spin")))
  (func (export "call-cb") (param "x" u32) (result u32) (canon lift (core func $i "call-cb")))
)
"""
)

NEVER_NS = 2**64 - 1
"""The longest wait a guest can ask for (about 585 years)."""

STDIN_WAT = (
    "\n(component $C\n"
    + stream_imports(reads=("blocking-read",), cli=("stdin",))
    + "\n  "
    + bump_memory("(i32.add (local.get 3) (i32.const 8))")
    + r"""
  (core instance $mem (instantiate $mem))
  (core func $get (canon lower (func $stdin "get-stdin")))
  (core func $read (canon lower (func $streams "[method]input-stream.blocking-read")
    (memory (core memory $mem "memory")) (realloc (core func $mem "realloc"))))
  (core module $m
    (import "h" "get" (func $get (result i32)))
    (import "h" "read" (func $read (param i32 i64 i32)))
    (import "h" "memory" (memory 1))
    ;; read one byte from stdin: 0 = ok (data), 1 = err; then the error case
    (func (export "read-stdin") (result i32)
      (call $read (call $get) (i64.const 1) (i32.const 64))
      (i32.add (i32.mul (i32.load8_u (i32.const 64)) (i32.const 10))
               (i32.load8_u (i32.const 68)))))
  (core instance $i (instantiate $m (with "h" (instance
    (export "get" (func $get)) (export "read" (func $read))
    (export "memory" (memory $mem "memory"))))))
  (func (export "read-stdin") (result u32) (canon lift (core func $i "read-stdin")))
)
"""
)
"""Reads one byte from ``wasi:cli/stdin`` with ``input-stream.blocking-read``;
``read-stdin`` returns 10 * (0 ok, 1 err) + the error case (0 failed, 1 closed)."""
