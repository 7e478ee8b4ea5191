"""``wasmplug install|list|remove`` (the plugin registry) and ``wasmplug trust ...``.

Refusals (invalid file, bad manifest, untrusted signature, undeclared imports,
rollback, version or name conflict, unknown plugin) exit 3 through
:func:`wasmplug._cli.main`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from wasmplug._errors import WasmplugError
from wasmplug._sandbox.capabilities import declared_capabilities
from wasmplug._trust import signing as _signing
from wasmplug._trust.registry import PluginInfo, Registry
from wasmplug._trust.store import TrustedKey, TrustStore
from wasmplug.authoring import ProgressBoard

from ._common import UsageError

__all__ = ["add_commands"]

_HEX_RE = re.compile(r"[0-9a-fA-F]+")  # fullmatch: no trailing newline


def _store(args: argparse.Namespace) -> TrustStore:
    return TrustStore(args.trust_store)


def _registry(args: argparse.Namespace) -> Registry:
    return Registry(args.registry)


def _revoked(info: PluginInfo, store: TrustStore) -> bool:
    """Whether load and install would refuse the file as revoked: the same decision
    (:meth:`TrustStore.check`), so content digests and revoked signers count too."""
    if not (store.revoked_digests or store.revoked_keys):
        return False
    if info.sha256 in store.revoked_digests:
        return True
    try:
        data = info.path.read_bytes() if info.path is not None else None
    except OSError:
        data = None
    if data is None:  # an entry point inside a zip: only what the listing knows
        return info.key_id is not None and info.key_id in store.revoked_keys
    try:
        return store.is_revoked(data, info.name) is not None
    except WasmplugError:  # a damaged file: not revoked, and `list` reports it elsewhere
        return False


def _info_json(info: PluginInfo, store: TrustStore | None = None) -> dict[str, Any]:
    m = info.manifest
    revoked = store is not None and _revoked(info, store)
    return {
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "source": info.source,
        "origin": info.origin,
        "path": str(info.path) if info.path is not None else None,
        "sha256": info.sha256,
        "reference": info.reference,
        "manifest-digest": info.manifest_digest,
        "key-id": info.key_id,
        "signed": info.signed,
        "revoked": revoked,
        "capabilities": declared_capabilities(m),
        "imports": list(info.imports),
        "exports": list(info.exports),
    }


def _warn(where: str, error: Exception) -> None:
    print(f"wasmplug: warning: skipping {where}: {error}", file=sys.stderr)


def _is_oci_source(source: str) -> bool:
    from wasmplug._distribution.names import DistributionConfig
    from wasmplug._distribution.operations import resolve_source

    if Path(source).exists():
        return False
    return resolve_source(source, DistributionConfig.load()) is not None


def cmd_install(args: argparse.Namespace) -> int:
    from wasmplug._runtime.host import PluginHost

    from .distribution import install_from_registry

    store = _store(args)
    if _is_oci_source(args.source):
        info = install_from_registry(args, args.source, store)
        _print_installed(info)
        return 0
    with (
        PluginHost(cache_dir=args.cache_dir, trust_store=store) as host,
        ProgressBoard(show_after_s=1.0) as board,
    ):

        def precompile(data: bytes) -> None:
            with board.task(Path(args.source).name, "compiling (first time: 10-30 s)"):
                host.precompile([data])

        info = _registry(args).install(
            args.source,
            trust_store=store,
            allow_unsigned=args.allow_unsigned,
            force=args.force,
            compile=precompile,
            search_dirs=args.dir or (),
        )
    _print_installed(info)
    return 0


def _print_installed(info: PluginInfo) -> None:
    signer = f"signed by key {info.key_id}" if info.signed else "UNSIGNED (--allow-unsigned)"
    print(f"installed {info.name} {info.version} ({signer}, sha256 {info.sha256[:16]}...)")
    print(f"  {info.path}")


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    registry = _registry(args)
    found = registry.list() + registry.discover(
        args.dir or (), entry_points=not args.no_entry_points, on_error=_warn
    )
    rows = [_info_json(i, store) for i in found]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no plugins installed in {registry.root} or discovered")
        return 0
    header = ("NAME", "VERSION", "SOURCE", "SIGNER", "SHA256", "DESCRIPTION")
    table = [
        (
            r["name"],
            r["version"],
            r["source"],
            "REVOKED" if r["revoked"] else (r["key-id"] or "-") if r["signed"] else "unsigned",
            r["sha256"][:12],
            r["description"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(5)]
    for row in [header, *table]:
        cells = [str(v).ljust(w) for v, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, str(row[5])]).rstrip())
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    if args.forget and args.version:
        raise UsageError("--forget drops the whole record; it cannot be combined with --version")
    removed = _registry(args).remove(args.name, args.version, forget=args.forget)
    for info in removed:
        print(f"removed {info.name} {info.version}")
    if args.version is None and not args.forget:
        print(
            f"note: the registry still remembers {args.name}'s highest version and publisher "
            "(rollback protection); `remove --forget` drops them"
        )
    return 0


def cmd_trust_add(args: argparse.Namespace) -> int:
    key = _signing.load_public_key(Path(args.keyfile).read_bytes())
    trusted = TrustedKey(key, tuple(args.scope or ("*",)), args.name or "")
    store = _store(args)
    with store.modify():
        store.add(trusted)
    scopes = ", ".join(trusted.scopes)
    print(f"trusted key {trusted.key_id} ({trusted.name or 'unnamed'}) for plugins: {scopes}")
    if trusted.scopes == ("*",):
        print("note: this key may sign any plugin name; --scope 'acme:*' narrows it")
    return 0


def cmd_trust_list(args: argparse.Namespace) -> int:
    store = _store(args)
    data = {
        "path": str(store.path),
        "keys": [
            {"key-id": k.key_id, "name": k.name, "scopes": list(k.scopes)} for k in store.keys
        ],
        "revoked-keys": sorted(store.revoked_keys),
        "revoked-digests": sorted(store.revoked_digests),
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"trust store {store.path}")
    for k in store.keys:
        print(f"  {k.key_id}  {k.name or '(unnamed)'}  scopes: {', '.join(k.scopes)}")
    if not store.keys:
        print("  no trusted keys")
    for kid in data["revoked-keys"]:
        print(f"  revoked key {kid}")
    for digest in data["revoked-digests"]:
        print(f"  revoked sha256 {digest}")
    return 0


def cmd_trust_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    with store.modify():
        if not store.remove(args.key_id.lower()):
            raise UsageError(f"no trusted key with id {args.key_id} in {store.path}")
    print(f"no longer trusting key {args.key_id.lower()}")
    return 0


def cmd_trust_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.key is not None and not _HEX_RE.fullmatch(args.key):
        raise UsageError(f"--key {args.key!r} is not a hex key id")
    if args.digest is not None and not (_HEX_RE.fullmatch(args.digest) and len(args.digest) == 64):
        raise UsageError(f"--digest {args.digest!r} is not a hex SHA-256 (64 digits)")
    key = None
    if args.key_file is not None:
        try:
            key = _signing.load_public_key(Path(args.key_file).read_bytes())
        except OSError as e:
            raise UsageError(f"cannot read {args.key_file}: {e}") from None
    with store.modify():
        if key is not None:
            store.revoke_key(key)
            what = f"key {key.key_id.hex()}"
        elif args.key is not None:
            store.revoke_key(args.key)
            what = f"key {args.key.lower()}"
        else:
            store.revoke_digest(args.digest)
            what = f"sha256 {args.digest.lower()}"
    print(f"revoked {what}: it is refused by install and load from now on")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register install/list/remove and the trust sub-commands."""

    def registry_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--registry", metavar="DIR", help="registry directory (default: data dir)")

    def store_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--trust-store", metavar="FILE", help="trust store (default: config dir)")

    def dir_opt(p: argparse.ArgumentParser, help: str) -> None:
        p.add_argument("--dir", action="append", metavar="D", help=help)

    p = sub.add_parser("install", help="verify, check, precompile and install a plugin")
    p.add_argument(
        "source",
        metavar="PATH|NAME|REF",
        help="a .wasm file; NAME[@SPEC] to discover (or, if its namespace is mapped to a "
        "registry, to fetch); or an OCI reference [oci://]HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]",
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow plain HTTP to a non-loopback registry"
    )
    p.add_argument("--force", action="store_true", help="allow rollback / replace / new publisher")
    p.add_argument("--allow-unsigned", action="store_true", help="install without a signature")
    registry_opt(p)
    store_opt(p)
    dir_opt(p, "also look for NAME in this directory (repeatable)")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("list", help="list installed and discovered plugins (nothing compiled)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-entry-points", action="store_true", help="skip Python entry points")
    registry_opt(p)
    store_opt(p)
    dir_opt(p, "also list *.wasm plugins in this directory (repeatable)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("remove", help="uninstall a plugin (every version, or --version V)")
    p.add_argument("name")
    p.add_argument("--version", help="remove only this version")
    p.add_argument(
        "--forget", action="store_true", help="also forget its highest version and publisher"
    )
    registry_opt(p)
    p.set_defaults(func=cmd_remove)

    trust = sub.add_parser("trust", help="manage trusted publisher keys and revocations")
    tsub = trust.add_subparsers(dest="trust_command", required=True)
    p = tsub.add_parser("add", help="trust a publisher's public key")
    p.add_argument("keyfile", help="public key: wasmsign2 raw, PEM or OpenSSH")
    p.add_argument(
        "--scope", action="append", metavar="PATTERN", help="plugin names it may sign ('acme:*')"
    )
    p.add_argument("--name", help="the publisher's display name")
    store_opt(p)
    p.set_defaults(func=cmd_trust_add)

    p = tsub.add_parser("list", help="show trusted keys and revocations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    store_opt(p)
    p.set_defaults(func=cmd_trust_list)

    p = tsub.add_parser("remove", help="stop trusting a key")
    p.add_argument("key_id", metavar="KEYID")
    store_opt(p)
    p.set_defaults(func=cmd_trust_remove)

    p = tsub.add_parser("revoke", help="refuse a key or a component digest from now on")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--key",
        metavar="KEYID",
        help="revoke a key by id (matched by verification if the store knows the key)",
    )
    group.add_argument(
        "--key-file",
        metavar="FILE",
        help="revoke a public key (wasmsign2 raw, PEM or OpenSSH): every signature it made",
    )
    group.add_argument("--digest", metavar="SHA256", help="revoke this component file")
    store_opt(p)
    p.set_defaults(func=cmd_trust_revoke)
