"""The ``wasmplug`` command line.

Exit codes (stable, documented in ``docs/cli.md``):

====  =========================================================================
0     success
1     unexpected internal error (a bug: please report it)
2     usage error: bad flags, bad JSON, unknown export, wrong argument types
3     refused: the component was not loaded (invalid file, unsigned or
      untrusted signature, bad manifest, imports not provided/declared/granted)
4     plugin fault: trap, timeout, fuel, resource limit, host function error,
      start-up failure, quarantine
5     the export returned ``err(E)``; E is printed as JSON on stdout
6     OCI registry failure: unreachable, authentication refused (401/403),
      not found (404), digest mismatch, not a Wasm artifact, lockfile differs
====  =========================================================================

Failures print one line, ``wasmplug: error: ...``, on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wasmplug._bridge.jsonvalues import from_json, to_json
from wasmplug._errors import (
    CapabilityError,
    DistributionError,
    ErrorResult,
    InstantiationError,
    InvalidReferenceError,
    LoadError,
    ManifestError,
    PluginError,
    SignatureError,
    WasmplugError,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.host import PluginHost
from wasmplug._runtime.plugin import export_names, find_export
from wasmplug._sandbox.capability import grant_kinds
from wasmplug._sandbox.grants import Grants
from wasmplug._sandbox.limits import Limits
from wasmplug._trust.store import TrustStore
from wasmplug.authoring import ProgressBoard

from ._common import (
    EXIT_ERR_RESULT,
    EXIT_FAULT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_REGISTRY,
    EXIT_USAGE,
    UsageError,
)
from .author import add_commands as add_author_commands
from .distribution import add_commands as add_distribution_commands
from .grants import add_commands as add_grants_commands
from .registry import add_commands as add_registry_commands
from .sign import add_commands as add_signing_commands

__all__ = ["main"]


def _grant_usage() -> str:
    return " | ".join(k.cli_usage for k in grant_kinds() if k.cli_prefix)


def _parse_grant(spec: str, granted: dict[str, Any]) -> None:
    """One ``--grant PREFIX:...``, parsed by the capability kind with that prefix
    (``fs:/guest=/host[:rw]``, ``env:KEY=VALUE``, ``iface:NAME``, ``http:PATTERN``,
    ``cap:NAMESPACE:NAME``...) into ``granted`` (grant key -> grant)."""
    prefix, _, rest = spec.partition(":")
    kind = next((k for k in grant_kinds() if k.cli_prefix and k.cli_prefix == prefix), None)
    if kind is None:
        raise UsageError(f"bad --grant {spec!r}; use {_grant_usage()}")
    assert kind.grant_key is not None
    try:
        value = kind.parse_cli_grant(rest, granted.get(kind.grant_key))
        kind.convert_grant(value)  # what Grants() will check (e.g. an env value WASI can carry)
        granted[kind.grant_key] = value
    except (TypeError, ValueError) as e:
        raise UsageError(f"bad --grant {spec!r} ({e}); use {_grant_usage()}") from None


def cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.path)
    doing = "compiling to read its types (first time: 10-30 s for a large component)"
    with (
        ProgressBoard(show_after_s=1.0) as board,
        board.task(path.name, doing),
        PluginHost(cache_dir=args.cache_dir) as host,
    ):
        info = host.inspect(path)
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
        return EXIT_OK
    print(f"{info.path}  {info.size} bytes  sha256 {info.sha256}")
    print(f"content sha256 (without signatures) {info.content_sha256}")
    m = info.to_json()["manifest"]
    print(f"manifest ({info.manifest_source}): {info.manifest.name} {info.manifest.version}")
    for key, values in m.items():
        if key not in ("source", "name", "version") and values:
            print(f"  {key}: {', '.join(map(str, values))}")
    keys = [k or "(anonymous)" for k in info.signatures]
    print(f"signatures: {', '.join(keys) or 'none'}")
    for title, ifaces, funcs in (
        ("imports", info.imports, info.import_functions),
        ("exports", info.exports, info.export_functions),
    ):
        print(f"{title}:")
        for iface in ifaces:
            print(f"  {iface.name}")
            for f in iface.functions:
                print(f"    {f}")
            for r in iface.resources:
                print(f"    resource {r}")
        for f in funcs:
            print(f"  {f}")
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    granted: dict[str, Any] = {}
    for spec in args.grant:
        _parse_grant(spec, granted)
    limits = Limits(timeout_ms=args.timeout_ms, memory_bytes=args.memory_bytes)
    store = TrustStore(args.trust_store) if args.trust_store else None
    with PluginHost(
        cache_dir=args.cache_dir,
        limits=limits,
        trust_store=store,
        isolation=args.isolation,
        spare_workers=0,  # one call: a spare would only cost a process start
    ) as host:
        path = Path(args.path)
        with (
            ProgressBoard(show_after_s=1.0) as board,
            board.task(path.name, "verifying and compiling (first time: 10-30 s)"),
        ):
            plugin = host.load(
                path,
                allow_unsigned=args.allow_unsigned,
                grants=Grants(granted=granted),
            )
        sig = find_export(plugin, args.export)
        if sig is None:
            raise UsageError(
                f"no export {args.export!r}; exports are: {', '.join(export_names(plugin))}"
            )
        if len(args.args) != sig.nparams:
            raise UsageError(
                f"{args.export} takes {sig.nparams} argument(s) "
                f"({', '.join(sig.param_names)}), got {len(args.args)}"
            )
        values = []
        for text, (pname, ptype) in zip(args.args, sig.sig.params, strict=True):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError:
                decoded = text  # a bare word is taken as a JSON string
            except RecursionError:
                raise UsageError(f"argument {pname!r}: JSON nested too deeply") from None
            except ValueError as e:  # e.g. an integer with more digits than Python allows
                raise UsageError(f"argument {pname!r}: {e}") from None
            try:
                values.append(from_json(ptype, decoded))
            except (WitTypeError, WitValueError) as e:
                raise UsageError(f"argument {pname!r}: {e}") from None
        try:
            result = plugin.call(args.export, *values)
        except ErrorResult as e:
            print(json.dumps({"err": to_json(e.value)}))
            return EXIT_ERR_RESULT
        print(json.dumps(to_json(result)))
    return EXIT_OK


def _positive_ms(text: str) -> float:
    """An argparse type: a finite number of milliseconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasmplug", description="Inspect and run sandboxed WebAssembly component plugins."
    )
    parser.add_argument(
        "--cache-dir", default=None, help="compile cache directory (default: user cache dir)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="show a component's imports, exports, manifest, sha256")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("call", help="call one export with JSON arguments; prints JSON")
    p.add_argument("path")
    p.add_argument("export", help="WIT name: 'greet' or 'ns:pkg/iface@1.0.0#func'")
    p.add_argument("args", nargs="*", help="one JSON value per parameter")
    p.add_argument("--allow-unsigned", action="store_true", help="load without a signature")
    p.add_argument("--trust-store", help="trust store file (default: the user config dir)")
    p.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="SPEC",
        help=f"{_grant_usage()} (repeatable)",
    )
    p.add_argument(
        "--timeout-ms", type=_positive_ms, default=1000.0, help="per-call time limit, ms (> 0)"
    )
    p.add_argument(
        "--memory-bytes",
        type=_positive_int,
        default=256 * 2**20,
        help="total linear memory limit, bytes (> 0)",
    )
    p.add_argument(
        "--isolation",
        choices=["inprocess", "process"],
        default="inprocess",
        help="run the plugin in this process, or in a worker process that is killed "
        "at the deadline or if it crashes",
    )
    p.set_defaults(func=cmd_call)

    add_signing_commands(sub)
    add_grants_commands(sub)
    add_registry_commands(sub)
    add_distribution_commands(sub)
    add_author_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, WitTypeError, WitValueError) as e:
        code, message = EXIT_USAGE, str(e)
    except (LoadError, SignatureError, ManifestError, CapabilityError) as e:
        code, message = EXIT_REFUSED, str(e)
        if isinstance(e, InstantiationError):
            code = EXIT_FAULT
    except PluginError as e:
        code, message = EXIT_FAULT, str(e)
    except InvalidReferenceError as e:
        code, message = EXIT_USAGE, str(e)
    except DistributionError as e:
        code, message = EXIT_REGISTRY, str(e)
    except (WasmplugError, OSError) as e:
        # Unreadable files, trust store or cache: nothing was loaded.
        code, message = EXIT_REFUSED, str(e)
    # One line on stderr: multi-line messages (a LinkError's list) are joined.
    first, *rest = [ln.strip(" -") for ln in message.strip().splitlines() if ln.strip()] or ["?"]
    print(f"wasmplug: error: {' '.join([first, '; '.join(rest)]).strip()}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
