"""WAT for test components that use WASI: the streams import header, written once, and
:data:`ENV_WAT`, a component that reads ``wasi:cli/environment``.

A component that writes to stdout or reads stdin imports ``wasi:io/error``,
``wasi:io/streams`` (the stream resource, ``stream-error`` and the methods it calls) and
``wasi:cli/stdout`` / ``stderr`` / ``stdin``, each of the last re-exporting the stream
type. :func:`stream_imports` writes that header for the methods a component uses;
the component must be named ``$C``, and the header defines the instances ``$streams``,
``$stdout``, ``$stderr``, ``$stdin`` (those asked for) and the resource types
``$output`` / ``$input``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ENV_WAT", "INPUT_METHODS", "OUTPUT_METHODS", "bump_memory", "stream_imports"]

_SEV = "(error $sev)"
OUTPUT_METHODS = {
    "check-write": f'(param "self" (borrow $os)) (result (result u64 {_SEV}))',
    "write": f'(param "self" (borrow $os)) (param "contents" (list u8)) (result (result {_SEV}))',
    "blocking-flush": f'(param "self" (borrow $os)) (result (result {_SEV}))',
    "blocking-write-and-flush": (
        f'(param "self" (borrow $os)) (param "contents" (list u8)) (result (result {_SEV}))'
    ),
}
"""``wasi:io/streams@0.2.0`` methods of ``output-stream``: WIT name -> parameters and result."""
INPUT_METHODS = {
    "blocking-read": (
        f'(param "self" (borrow $is)) (param "len" u64) (result (result (list u8) {_SEV}))'
    ),
}
"""``wasi:io/streams@0.2.0`` methods of ``input-stream``: WIT name -> parameters and result."""

_CLI = {
    "stdout": ("output-stream", "$output"),
    "stderr": ("output-stream", "$output"),
    "stdin": ("input-stream", "$input"),
}


def stream_imports(
    *,
    writes: Iterable[str] = (),
    reads: Iterable[str] = (),
    cli: Iterable[str] = (),
) -> str:
    """The import header of a component that uses WASI streams.

    Args:
        writes: The ``output-stream`` methods it calls (keys of :data:`OUTPUT_METHODS`).
        reads: The ``input-stream`` methods it calls (keys of :data:`INPUT_METHODS`).
        cli: Which of ``"stdout"``, ``"stderr"``, ``"stdin"`` it gets a stream from
            (``get-stdout``...).
    """
    output, input_, cli = list(writes), list(reads), list(cli)
    lines = [
        '(import "wasi:io/error@0.2.0" (instance $err',
        '  (export "error" (type (sub resource)))))',
        '(alias export $err "error" (type $error))',
        '(import "wasi:io/streams@0.2.0" (instance $streams',
        "  (alias outer $C $error (type $e))",
        '  (export "error" (type $ee (eq $e)))',
    ]
    if output:
        lines.append('  (export "output-stream" (type $os (sub resource)))')
    if input_:
        lines.append('  (export "input-stream" (type $is (sub resource)))')
    lines += [
        '  (type $se (variant (case "last-operation-failed" (own $ee)) (case "closed")))',
        '  (export "stream-error" (type $sev (eq $se)))',
    ]
    lines += [f'  (export "[method]output-stream.{m}" (func {OUTPUT_METHODS[m]}))' for m in output]
    lines += [f'  (export "[method]input-stream.{m}" (func {INPUT_METHODS[m]}))' for m in input_]
    lines[-1] += "))"  # the instance and the import
    if output:
        lines.append('(alias export $streams "output-stream" (type $output))')
    if input_:
        lines.append('(alias export $streams "input-stream" (type $input))')
    for name in cli:
        resource, alias = _CLI[name]
        lines += [
            f'(import "wasi:cli/{name}@0.2.0" (instance ${name}',
            f"  (alias outer $C {alias} (type $t))",
            f'  (export "{resource}" (type $te (eq $t)))',
            f'  (export "get-{name}" (func (result (own $te))))))',
        ]
    return "\n".join(f"  {line}" for line in lines)


def bump_memory(step: str = "(i32.const 64)") -> str:
    """A core module ``$mem`` exporting one page of ``memory`` and a ``realloc`` that
    hands out blocks from offset 1024 on, each ``step`` bytes (a WAT expression that
    may use the requested size, ``(local.get 3)``) further, and never frees."""
    return f"""(core module $mem
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $heap))
      (global.set $heap (i32.add (global.get $heap) {step}))
      (local.get $p)))"""


ENV_WAT = r"""
(component
  (import "wasi:cli/environment@0.2.0" (instance $env
    (export "get-environment" (func (result (list (tuple string string)))))
    (export "get-arguments" (func (result (list string))))))
  (core module $mem
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $heap))
      (global.set $heap  ;; the next block, 8-aligned
        (i32.and (i32.add (i32.add (global.get $heap) (local.get 3)) (i32.const 15))
                 (i32.const -8)))
      (local.get $p)))
  (core instance $mem (instantiate $mem))
  (core func $getenv (canon lower (func $env "get-environment")
    (memory (core memory $mem "memory")) (realloc (core func $mem "realloc"))))
  (core func $getargs (canon lower (func $env "get-arguments")
    (memory (core memory $mem "memory")) (realloc (core func $mem "realloc"))))
  (core module $m
    (import "h" "getenv" (func $getenv (param i32)))
    (import "h" "getargs" (func $getargs (param i32)))
    (import "h" "memory" (memory 1))
    (func (export "env-count") (result i32)
      (call $getenv (i32.const 16))
      (i32.load (i32.const 20)))
    (func (export "arg-count") (result i32)
      (call $getargs (i32.const 16))
      (i32.load (i32.const 20)))
    (func (export "arg0-first-byte") (result i32)
      (call $getargs (i32.const 16))
      (i32.load8_u (i32.load (i32.load (i32.const 16))))))
  (core instance $i (instantiate $m (with "h" (instance
    (export "getenv" (func $getenv))
    (export "getargs" (func $getargs))
    (export "memory" (memory $mem "memory"))))))
  (func (export "env-count") (result u32) (canon lift (core func $i "env-count")))
  (func (export "arg-count") (result u32) (canon lift (core func $i "arg-count")))
  (func (export "arg0-first-byte") (result u32) (canon lift (core func $i "arg0-first-byte")))
)
"""
"""Reads ``wasi:cli/environment``: ``env-count`` (how many variables it sees),
``arg-count`` (how many program arguments) and ``arg0-first-byte``."""
