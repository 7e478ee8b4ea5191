"""``wasmplug push|pull|lock|sync|login|logout`` and OCI sources for ``install``.

Registry failures (unreachable, 401/403, 404, digest mismatch, not a Wasm
artifact, lockfile differences) exit 6 through :func:`wasmplug._cli.main`; a
malformed reference exits 2; trust refusals of what was pulled exit 3, as for
a file.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wasmplug._distribution.credentials import CredentialStore
from wasmplug._distribution.lockfile import lock_entries, read_lock, sync, write_lock
from wasmplug._distribution.operations import Session
from wasmplug._distribution.reference import parse_reference
from wasmplug._errors import InvalidComponentError, SignatureError
from wasmplug._fsutil import write_atomic
from wasmplug._trust import signing as _signing
from wasmplug._trust.registry import PluginInfo, Registry
from wasmplug._trust.store import TrustStore

if TYPE_CHECKING:
    from wasmplug._runtime.host import PluginHost

__all__ = ["add_commands", "install_from_registry"]


def _session(args: argparse.Namespace) -> Session:
    return Session(insecure=getattr(args, "insecure", False))


def _precompiler(host: PluginHost) -> Callable[[bytes], None]:
    """Compile into the host's cache before anything is installed (as a file install does)."""

    def precompile(data: bytes) -> None:
        host.precompile([data])

    return precompile


def install_from_registry(args: argparse.Namespace, source: str, store: TrustStore) -> PluginInfo:
    """``wasmplug install REF`` (called by the install command for OCI sources)."""
    from wasmplug._runtime.host import PluginHost

    with PluginHost(cache_dir=args.cache_dir, trust_store=store) as host, _session(args) as s:
        info, pulled = s.install(
            source,
            registry=Registry(args.registry),
            trust_store=store,
            allow_unsigned=args.allow_unsigned,
            force=args.force,
            compile=_precompiler(host),
        )
    fetched = f"{pulled.downloaded} bytes downloaded" if pulled.downloaded else "from cache"
    print(f"from {info.reference} ({pulled.manifest_digest}, {fetched})")
    return info


def cmd_push(args: argparse.Namespace) -> int:
    path = Path(args.file)
    data = path.read_bytes()
    with _session(args) as s:
        pushed = s.push(data, args.ref, where=str(path))
    print(pushed.manifest_digest)
    print(f"pushed {path} to {pushed.reference} (layer {pushed.layer_digest})", file=sys.stderr)
    if not _is_signed(data):
        print(
            f"wasmplug: note: {path} is not signed; installing it will need --allow-unsigned "
            "(sign it with `wasmplug sign` and push again)",
            file=sys.stderr,
        )
    return 0


def _is_signed(data: bytes) -> bool:
    try:
        return bool(_signing.signatures(data))
    except (SignatureError, InvalidComponentError):
        return False


def cmd_pull(args: argparse.Namespace) -> int:
    with _session(args) as s:
        pulled = s.pull(args.ref)
    out = Path(args.output)
    write_atomic(out, pulled.data)
    print(pulled.manifest_digest)
    print(
        f"pulled {pulled.reference} to {out} ({len(pulled.data)} bytes, layer "
        f"{pulled.layer_digest}); it is verified when installed or loaded, not now",
        file=sys.stderr,
    )
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    entries = lock_entries(Registry(args.registry), skip_local=args.skip_local)
    write_lock(args.output, entries)
    print(f"wrote {args.output}: {len(entries)} plugin(s)")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from wasmplug._runtime.host import PluginHost

    entries = read_lock(args.lockfile)
    store = TrustStore(args.trust_store)
    with PluginHost(cache_dir=args.cache_dir, trust_store=store) as host, _session(args) as s:
        results = sync(
            entries,
            session=s,
            registry=Registry(args.registry),
            trust_store=store,
            allow_unsigned=args.allow_unsigned,
            compile=_precompiler(host),
            mirror=args.mirror,
        )
    for r in results:
        print(f"{r.action:10}  {r.entry.name} {r.entry.version}  {r.entry.manifest_digest}")
    changed = sum(r.action == "installed" for r in results)
    print(f"{len(results)} plugin(s) in {args.lockfile}: {changed} installed")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from wasmplug._distribution.client import RegistryClient
    from wasmplug._distribution.credentials import Credentials

    registry = parse_reference(f"{args.registry_host}/x").registry
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
    creds = Credentials(username, password, "the command line")
    with _session(args) as s:
        options = s.client(registry).options
    with RegistryClient(registry, options=options, credentials=creds) as client:
        client.ping()  # refuse to store credentials the registry rejects
    store = CredentialStore()
    store.set(registry, username, password)
    print(f"login succeeded; credentials for {registry} saved in {store.path}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    registry = parse_reference(f"{args.registry_host}/x").registry
    store = CredentialStore()
    if store.remove(registry):
        print(f"removed the credentials for {registry} from {store.path}")
    else:
        print(f"no credentials for {registry} in {store.path}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register push, pull, lock, sync, login and logout."""

    def insecure_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--insecure",
            action="store_true",
            help="allow plain HTTP to a non-loopback registry (loopback always may)",
        )

    p = sub.add_parser("push", help="publish a packed plugin as a Wasm OCI artifact")
    p.add_argument("file", help="the packed (and signed) .wasm")
    p.add_argument("ref", help="HOST[:PORT]/REPO[:TAG] (default tag: the plugin's version)")
    insecure_opt(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="download a plugin from a registry (digest-checked)")
    p.add_argument("ref", help="HOST[:PORT]/REPO[:TAG|@sha256:DIGEST] or NS:NAME[@SPEC]")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    insecure_opt(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("lock", help="write wasmplug.lock: every installed plugin's digests")
    p.add_argument("-o", "--output", default="wasmplug.lock", metavar="FILE")
    p.add_argument("--registry", metavar="DIR", help="registry directory (default: data dir)")
    p.add_argument(
        "--skip-local", action="store_true", help="leave out plugins installed from files"
    )
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("sync", help="install exactly the digests a lockfile pins")
    p.add_argument("lockfile", nargs="?", default="wasmplug.lock")
    p.add_argument(
        "--mirror", metavar="HOST[:PORT]", help="fetch from this registry instead (same digests)"
    )
    p.add_argument("--allow-unsigned", action="store_true", help="install without a signature")
    p.add_argument("--registry", metavar="DIR", help="registry directory (default: data dir)")
    p.add_argument("--trust-store", metavar="FILE", help="trust store (default: config dir)")
    insecure_opt(p)
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("login", help="check and save credentials for an OCI registry")
    p.add_argument("registry_host", metavar="HOST[:PORT]")
    p.add_argument("-u", "--username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    insecure_opt(p)
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="forget saved credentials for an OCI registry")
    p.add_argument("registry_host", metavar="HOST[:PORT]")
    p.set_defaults(func=cmd_logout)
