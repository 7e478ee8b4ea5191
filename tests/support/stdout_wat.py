"""A tiny component that writes to ``wasi:cli/stdout`` / ``stderr`` the ways guests do.

Every export takes ``which`` (1 = stdout, 2 = stderr) and ``n``, fills ``n`` bytes at
:data:`DATA_AT` with ``x`` and a newline every :data:`LINE` bytes (so the data is
``n // LINE`` whole lines of ``LINE - 1`` ``x``, each under the 4,096-byte cut, plus a
newline-terminated rest), gets the stream, writes and drops it:

- ``write-all(which, n, chunk)``: the ``check-write`` / ``write`` / ``blocking-flush``
  loop of a correct guest, at most ``chunk`` bytes per write; returns bytes written.
- ``write-blocking(which, n, chunk)``: ``blocking-write-and-flush`` in ``chunk``-byte
  pieces (at most 4,096); returns bytes written.
- ``write-once(which, n)``: what wasi-libc's ``write(2)`` does: one ``check-write``,
  one ``write`` of ``min(permit, n)`` bytes, ``blocking-flush``; returns that count
  (a short write when the host grants less than ``n``).

``status()`` says how the last one ended: 0 ok, else 10 * step + error case (steps
1 check-write, 2 write, 3 flush, 4 blocking-write-and-flush; case 0 failed, 1 closed).
"""

from .wasi_wat import stream_imports

DATA_AT = 1024
LINE = 4000

STDOUT_WAT = (
    "\n(component $C\n"
    + stream_imports(
        writes=("check-write", "write", "blocking-flush", "blocking-write-and-flush"),
        cli=("stdout", "stderr"),
    )
    + r"""
  (core module $mem (memory (export "memory") 64))
  (core instance $mem (instantiate $mem))
  (core func $get-stdout (canon lower (func $stdout "get-stdout")))
  (core func $get-stderr (canon lower (func $stderr "get-stderr")))
  (core func $check (canon lower (func $streams "[method]output-stream.check-write")
    (memory (core memory $mem "memory"))))
  (core func $write (canon lower (func $streams "[method]output-stream.write")
    (memory (core memory $mem "memory"))))
  (core func $flush (canon lower (func $streams "[method]output-stream.blocking-flush")
    (memory (core memory $mem "memory"))))
  (core func $bwf (canon lower (func $streams "[method]output-stream.blocking-write-and-flush")
    (memory (core memory $mem "memory"))))
  (core func $drop (canon resource.drop $output))
  (core module $m
    (import "h" "get-stdout" (func $get-stdout (result i32)))
    (import "h" "get-stderr" (func $get-stderr (result i32)))
    (import "h" "check" (func $check (param i32 i32)))
    (import "h" "write" (func $write (param i32 i32 i32 i32)))
    (import "h" "flush" (func $flush (param i32 i32)))
    (import "h" "bwf" (func $bwf (param i32 i32 i32 i32)))
    (import "h" "drop" (func $drop (param i32)))
    (import "h" "memory" (memory 64))
    (global $status (mut i32) (i32.const 0))
    (func (export "status") (result i32) (global.get $status))
    ;; Return areas at 0 (check-write), 16 (write), 32 (flush); the data at 1024.
    (func $fill (param $n i32)
      (local $i i32)
      (memory.fill (i32.const 1024) (i32.const 120) (local.get $n))
      (local.set $i (i32.const 3999))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.const 10))
        (local.set $i (i32.add (local.get $i) (i32.const 4000)))
        (br $l)))
      (if (local.get $n)
        (then (i32.store8 (i32.add (i32.const 1023) (local.get $n)) (i32.const 10)))))
    (func $open (param $which i32) (param $n i32) (result i32)
      (global.set $status (i32.const 0))
      (call $fill (local.get $n))
      (if (result i32) (i32.eq (local.get $which) (i32.const 2))
        (then (call $get-stderr)) (else (call $get-stdout))))
    ;; check-write; 0 on error (status set), else the permit (at most 2^31)
    (func $permit (param $s i32) (result i32)
      (call $check (local.get $s) (i32.const 0))
      (if (i32.load8_u (i32.const 0))
        (then (global.set $status (i32.add (i32.const 10) (i32.load8_u (i32.const 8))))
              (return (i32.const 0))))
      (if (i64.gt_u (i64.load (i32.const 8)) (i64.const 0x7fffffff))
        (then (return (i32.const 0x7fffffff))))
      (i32.wrap_i64 (i64.load (i32.const 8))))
    ;; write then blocking-flush; false on error (status set)
    (func $put (param $s i32) (param $at i32) (param $k i32) (result i32)
      (call $write (local.get $s) (i32.add (i32.const 1024) (local.get $at)) (local.get $k)
        (i32.const 16))
      (if (i32.load8_u (i32.const 16))
        (then (global.set $status (i32.add (i32.const 20) (i32.load8_u (i32.const 20))))
              (return (i32.const 0))))
      (call $flush (local.get $s) (i32.const 32))
      (if (i32.load8_u (i32.const 32))
        (then (global.set $status (i32.add (i32.const 30) (i32.load8_u (i32.const 36))))
              (return (i32.const 0))))
      (i32.const 1))
    (func $min (param i32 i32) (result i32)
      (select (local.get 0) (local.get 1) (i32.lt_u (local.get 0) (local.get 1))))
    (func (export "write-all") (param $which i32) (param $n i32) (param $chunk i32) (result i32)
      (local $s i32) (local $done i32) (local $k i32)
      (local.set $s (call $open (local.get $which) (local.get $n)))
      (block $out (loop $l
        (br_if $out (i32.ge_u (local.get $done) (local.get $n)))
        (local.set $k (call $min (call $permit (local.get $s))
          (call $min (local.get $chunk) (i32.sub (local.get $n) (local.get $done)))))
        (br_if $out (i32.eqz (local.get $k)))
        (br_if $out (i32.eqz (call $put (local.get $s) (local.get $done) (local.get $k))))
        (local.set $done (i32.add (local.get $done) (local.get $k)))
        (br $l)))
      (call $drop (local.get $s))
      (local.get $done))
    (func (export "write-blocking") (param $which i32) (param $n i32) (param $chunk i32)
      (result i32)
      (local $s i32) (local $done i32) (local $k i32)
      (local.set $s (call $open (local.get $which) (local.get $n)))
      (block $out (loop $l
        (br_if $out (i32.ge_u (local.get $done) (local.get $n)))
        (local.set $k (call $min (local.get $chunk) (i32.sub (local.get $n) (local.get $done))))
        (call $bwf (local.get $s) (i32.add (i32.const 1024) (local.get $done)) (local.get $k)
          (i32.const 16))
        (if (i32.load8_u (i32.const 16))
          (then (global.set $status (i32.add (i32.const 40) (i32.load8_u (i32.const 20))))
                (br $out)))
        (local.set $done (i32.add (local.get $done) (local.get $k)))
        (br $l)))
      (call $drop (local.get $s))
      (local.get $done))
    (func (export "write-once") (param $which i32) (param $n i32) (result i32)
      (local $s i32) (local $k i32)
      (local.set $s (call $open (local.get $which) (local.get $n)))
      (local.set $k (call $min (call $permit (local.get $s)) (local.get $n)))
      (if (local.get $k)
        (then (if (i32.eqz (call $put (local.get $s) (i32.const 0) (local.get $k)))
          (then (local.set $k (i32.const 0))))))
      (call $drop (local.get $s))
      (local.get $k)))
  (core instance $i (instantiate $m (with "h" (instance
    (export "get-stdout" (func $get-stdout)) (export "get-stderr" (func $get-stderr))
    (export "check" (func $check)) (export "write" (func $write))
    (export "flush" (func $flush)) (export "bwf" (func $bwf)) (export "drop" (func $drop))
    (export "memory" (memory $mem "memory"))))))
  (func (export "status") (result u32) (canon lift (core func $i "status")))
  (func (export "write-all") (param "which" u32) (param "n" u32) (param "chunk" u32)
    (result u32) (canon lift (core func $i "write-all")))
  (func (export "write-blocking") (param "which" u32) (param "n" u32) (param "chunk" u32)
    (result u32) (canon lift (core func $i "write-blocking")))
  (func (export "write-once") (param "which" u32) (param "n" u32) (result u32)
    (canon lift (core func $i "write-once")))
)
"""
)
"""Writes ``n`` bytes to stdout or stderr; see the module docstring."""
