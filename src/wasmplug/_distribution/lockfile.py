"""``wasmplug.lock``: the exact plugins of a machine, to install on another one.

Format (TOML, written by ``wasmplug lock``)::

    version = 1

    [[plugin]]
    name = "demo:csv"
    version = "0.1.0"
    source = "registry.example.com/demo/csv:0.1.0"      # where it was installed from
    manifest-digest = "sha256:..."                       # what that reference resolved to
    layer-digest = "sha256:..."                          # the component file's sha256

``sync`` installs by ``source`` pinned to ``manifest-digest`` (the tag is not
consulted), refuses a manifest whose layer is not ``layer-digest`` or whose
component has another name or version, and skips what is already installed with
that layer digest (no network). Every artifact is fetched and checked, and its
signature verified against the trust store, before the first one is installed,
so a registry that differs or a missing publisher key changes nothing. Then
each install runs the usual checks (signature, scope, rollback).

``mirror`` replaces the registry host of every source, for air-gapped copies
that were pushed the same files (pushes are reproducible, so digests match).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs
import tomli_w

from wasmplug._errors import InvalidReferenceError, LockfileError
from wasmplug._fsutil import write_atomic
from wasmplug._trust.keys import PublicKey
from wasmplug._trust.registry import OciOrigin, PluginInfo, Registry
from wasmplug._trust.store import TrustedKey, TrustStore, as_trusted

from .operations import PullResult, Session, embedded_manifest
from .reference import DIGEST_RE, Reference, parse_reference

__all__ = ["LockEntry", "SyncResult", "lock_entries", "read_lock", "sync", "write_lock"]

LOCK_VERSION = 1


@attrs.frozen
class LockEntry:
    """One pinned plugin. Digests are ``sha256:<hex>``."""

    name: str
    version: str
    source: str
    manifest_digest: str
    layer_digest: str


@attrs.frozen
class SyncResult:
    """What ``sync`` did for one entry: ``"installed"`` or ``"up to date"``."""

    entry: LockEntry
    action: str
    info: PluginInfo


def lock_entries(registry: Registry, *, skip_local: bool = False) -> list[LockEntry]:
    """One entry per installed plugin version, sorted by name and version.

    Raises:
        LockfileError: a plugin was installed from a file (no registry source),
            unless ``skip_local``.
    """
    entries, local = [], []
    for info in registry.list():
        if info.reference is None or info.manifest_digest is None:
            local.append(f"{info.name} {info.version}")
            continue
        entries.append(
            LockEntry(
                info.name,
                info.version,
                info.reference,
                info.manifest_digest,
                f"sha256:{info.sha256}",
            )
        )
    if local and not skip_local:
        raise LockfileError(
            f"installed from files, not from a registry, so another machine cannot sync them: "
            f"{', '.join(local)}; push and install them from a registry, or pass --skip-local"
        )
    return entries


def write_lock(path: str | os.PathLike[str], entries: Iterable[LockEntry]) -> None:
    """Write ``wasmplug.lock`` atomically."""
    doc = {
        "version": LOCK_VERSION,
        "plugin": [
            {
                "name": e.name,
                "version": e.version,
                "source": e.source,
                "manifest-digest": e.manifest_digest,
                "layer-digest": e.layer_digest,
            }
            for e in entries
        ],
    }
    header = b"# wasmplug.lock: written by `wasmplug lock`; install with `wasmplug sync`.\n"
    write_atomic(Path(path), header + tomli_w.dumps(doc).encode())


def read_lock(path: str | os.PathLike[str]) -> list[LockEntry]:
    """Parse and check a lockfile.

    Raises:
        LockfileError: unreadable, not TOML, another format version, a missing or
            malformed field, a bad digest or reference (every problem is listed).
    """
    file = Path(path)
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
        raise LockfileError(f"cannot read lockfile {file}: {e}") from None
    if doc.get("version") != LOCK_VERSION:
        raise LockfileError(f"{file}: version must be {LOCK_VERSION}, got {doc.get('version')!r}")
    plugins = doc.get("plugin", [])
    if not isinstance(plugins, list):
        raise LockfileError(f"{file}: 'plugin' must be an array of tables")
    problems: list[str] = []
    entries: list[LockEntry] = []
    keys = ("name", "version", "source", "manifest-digest", "layer-digest")
    for i, item in enumerate(plugins):
        where = f"plugin[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: not a table")
            continue
        if unknown := sorted(set(item) - set(keys)):
            problems.append(f"{where}: unknown keys {', '.join(unknown)}")
        values = [item.get(k) for k in keys]
        if not all(isinstance(v, str) and v for v in values):
            problems.append(f"{where}: needs string fields {', '.join(keys)}")
            continue
        entry = LockEntry(*values)  # type: ignore[arg-type]
        for key, digest in (
            ("manifest-digest", entry.manifest_digest),
            ("layer-digest", entry.layer_digest),
        ):
            if not DIGEST_RE.match(digest):
                problems.append(f"{where}: {key} {digest!r} is not sha256:<64 hex digits>")
        try:
            parse_reference(entry.source)
        except InvalidReferenceError as e:
            problems.append(f"{where}: source: {e}")
        entries.append(entry)
    if problems:
        raise LockfileError(f"{file}: " + "; ".join(problems))
    return entries


def _mirrored(source: str, mirror: str | None) -> Reference:
    ref = parse_reference(source)
    return ref if mirror is None else Reference(mirror, ref.repository, ref.tag, ref.digest)


def sync(
    entries: list[LockEntry],
    *,
    session: Session,
    registry: Registry,
    trust_store: TrustStore,
    trusted_keys: Iterable[TrustedKey | PublicKey | bytes] = (),
    allow_unsigned: bool = False,
    compile: Callable[[bytes], None] | None = None,
    mirror: str | None = None,
) -> list[SyncResult]:
    """Install exactly the lockfile's digests (see the module doc).

    Raises:
        LockfileError: an artifact differs from its entry (layer digest, name or
            version). DigestMismatchError and other DistributionErrors: the fetch
            failed. SignatureError, UnsignedPluginError: an artifact is not signed by
            a trusted key in scope. Nothing is installed if any of these fails.
        Whatever :meth:`Registry.install` raises (then earlier entries stay installed).
    """
    installed = {(i.name, i.version): i for i in registry.list()}
    todo: list[tuple[LockEntry, Reference, PullResult]] = []
    results: list[SyncResult] = []
    for entry in entries:
        have = installed.get((entry.name, entry.version))
        if have is not None and f"sha256:{have.sha256}" == entry.layer_digest:
            results.append(SyncResult(entry, "up to date", have))
            continue
        ref = _mirrored(entry.source, mirror)
        pulled = session.pull(ref.pinned(entry.manifest_digest), expect_layer=entry.layer_digest)
        manifest = embedded_manifest(pulled.data, str(ref))
        if (manifest.name, manifest.version) != (entry.name, entry.version):
            raise LockfileError(
                f"{ref.pinned(entry.manifest_digest)} holds {manifest.name} {manifest.version}, "
                f"but the lockfile pins {entry.name} {entry.version}"
            )
        todo.append((entry, ref, pulled))
    if not allow_unsigned:  # a machine missing a publisher key fails before any change
        keys = [as_trusted(k) for k in trusted_keys]
        for entry, ref, pulled in todo:
            trust_store.verify(pulled.data, entry.name, extra_keys=keys, where=str(ref))
    for entry, ref, pulled in todo:
        info = registry.install(
            pulled.data,
            trust_store=trust_store,
            trusted_keys=trusted_keys,
            allow_unsigned=allow_unsigned,
            compile=compile,
            oci=OciOrigin(str(ref), entry.manifest_digest),
        )
        results.append(SyncResult(entry, "installed", info))
    order = {e: i for i, e in enumerate(entries)}
    return sorted(results, key=lambda r: order[r.entry])
