"""The plugin registry: installed plugins on disk, and discovery of installable ones.

Layout, under ``platformdirs.user_data_dir("wasmplug")/registry`` (created 0o700)::

    index.json                              the source of truth
    plugins/<name>/<version>/plugin.wasm    (':' in a name is stored as '+')
    .lock                                   flock()ed by every change
    .staging/<random>/                      scratch space of the change in progress

Every change runs under an exclusive ``fcntl.flock`` on ``.lock``, so processes
queue instead of corrupting the index. A change first deletes what killed
processes left (everything in ``.staging``, plugin files the index does not
name), re-reads the index, moves staged files to *fresh* paths (a file the
index names is never overwritten), then fsyncs the new index and
``os.replace`` it over ``index.json``: the commit point. Killed before it,
the index is exactly as it was; readers (no lock) see the old or the new index.
Reading, verifying and compiling happen before the lock is taken.

Install refuses, each with its own exception (``force=True`` overrides the last
three): no embedded ``wasmplug-manifest``; no trusted, in-scope signature
(``allow_unsigned`` records the entry as unsigned; revoked is always refused);
a non-``wasi:`` import not declared, semver-compatibly, in the manifest's
host-interfaces (``LinkError``); a name pinned to another publisher key by its
first signed install (``NameConflictError``); a version lower than the highest
ever installed under that name, remembered after ``remove`` unless forgotten
(``RollbackError``); the same version with other bytes (``VersionConflictError``).

Versions live side by side; :meth:`Registry.get` picks the highest, or the
highest matching a Cargo-style caret spec (``"1.2"``: ``>=1.2.0, <2.0.0``;
``"0.3"``: ``>=0.3.0, <0.4.0``; ``"=1.2.3"``: exactly that)."""

from __future__ import annotations

import builtins
import contextlib
import datetime
import hashlib
import importlib.metadata
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import attrs
import platformdirs

from wasmplug._errors import (
    InvalidComponentError,
    LinkError,
    ManifestError,
    NameConflictError,
    PluginNotFoundError,
    RollbackError,
    SignatureError,
    VersionConflictError,
)
from wasmplug._fsutil import file_lock, fsync_dir, write_atomic
from wasmplug._sandbox.manifest import MANIFEST_SECTION, Manifest, undeclared_imports
from wasmplug._semver import matches_spec, version_key

from . import signing as _signing
from . import wasm_sections as ws
from .component_info import ComponentInfo, read_component_info
from .index import Entry, Index, OciOrigin, PluginRecord, index_store
from .store import TrustedKey, TrustStore, as_trusted

__all__ = [
    "ENTRY_POINT_GROUP",
    "OciOrigin",
    "PluginInfo",
    "Registry",
    "default_registry_dir",
    "version_key",
]

log = logging.getLogger("wasmplug.registry")

ENTRY_POINT_GROUP = "wasmplug.plugins"
"""Entry-point group a distribution uses to ship plugins: each value names a module
attribute (or a callable returning one) that is a path or Traversable to a ``.wasm``."""

Source = Literal["registry", "dir", "entry-point"]


def default_registry_dir() -> Path:
    """``platformdirs.user_data_dir("wasmplug")/registry``."""
    return Path(platformdirs.user_data_dir("wasmplug")) / "registry"


@attrs.frozen
class PluginInfo:
    """What the registry knows about one plugin file, read without compiling it.

    Attributes:
        name, version, description: From the embedded manifest.
        sha256: Hex SHA-256 of the whole file.
        key_id: Installed: the trusted key that verified it (``None`` if installed
            unsigned). Discovered: the key id the signature claims (unverified).
        signed: Installed: verified at install. Discovered: carries a signature.
        path: The file (``None`` for an entry-point resource inside a zip).
        manifest: The embedded manifest (declared capabilities).
        imports, exports: The component's top-level import / export names.
        source: ``"registry"``, ``"dir"`` or ``"entry-point"``.
        origin: Where it came from, for humans (a path, or the entry point).
        reference: Installed from an OCI registry: the reference it was
            installed from (``host/repo:tag``), else ``None``.
        manifest_digest: Installed from an OCI registry: the manifest digest
            (``sha256:...``) the reference resolved to, else ``None``. The layer
            digest is ``"sha256:" + sha256``.
    """

    name: str
    version: str
    description: str
    sha256: str
    key_id: str | None
    signed: bool
    path: Path | None
    manifest: Manifest
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    source: Literal["registry", "dir", "entry-point"]
    origin: str = ""
    reference: str | None = None
    manifest_digest: str | None = None


@attrs.frozen
class _Candidate:
    data: bytes
    where: str
    manifest: Manifest
    manifest_text: str
    component: ComponentInfo
    sha256: str


def _inspect(data: bytes, where: str) -> _Candidate:
    component = read_component_info(data)
    raw = ws.get_custom_section(data, MANIFEST_SECTION)
    if raw is None:
        raise ManifestError(
            where,
            [
                f"no embedded {MANIFEST_SECTION} section: a plugin is one file; embed the manifest"
                " with `wasmplug pack COMPONENT -m wasmplug.toml -o OUT`, then sign OUT"
            ],
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{where} (embedded)", ["not UTF-8 text"]) from None
    manifest = Manifest.from_toml(text, source=f"{where} (embedded)")
    return _Candidate(data, where, manifest, text, component, hashlib.sha256(data).hexdigest())


def _info(c: _Candidate, source: Source, path: Path | None, origin: str) -> PluginInfo:
    """Describe a discovered file; its signature is reported as claimed, not verified."""
    try:
        sigs = _signing.signatures(c.data)
    except (SignatureError, InvalidComponentError):
        sigs = []
    key = next((s.key_id.hex() for s in sigs if s.key_id), None)
    return PluginInfo(
        c.manifest.name, c.manifest.version, c.manifest.description, c.sha256, key, bool(sigs),
        path, c.manifest, tuple(c.component.import_names), tuple(c.component.export_names),
        source, origin,
    )  # fmt: skip


def _default_on_error(where: str, error: Exception) -> None:
    log.warning("skipping %s: %s", where, error)


class Registry:
    """Installed plugins (``install``/``remove``/``list``/``get``) and ``discover``.

    Args:
        root: The registry directory; defaults to
            ``platformdirs.user_data_dir("wasmplug")/registry``. Created (0o700) by
            the first change; a missing one is an empty registry.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_registry_dir()
        self._index = index_store(self.root)
        self.index_path = self._index.path
        self._staging = self.root / ".staging"

    def __repr__(self) -> str:
        return f"<wasmplug.Registry {str(self.root)!r}>"

    # -- reading -----------------------------------------------------------------------

    def list(self) -> list[PluginInfo]:
        """Every installed plugin version, sorted by name then version.

        Raises:
            RegistryError: the index cannot be read or parsed.
        """
        return self._list(self._index.read())

    def _list(self, index: Index) -> builtins.list[PluginInfo]:
        out = [
            self._entry_info(name, version, entry)
            for name, record in index.plugins.items()
            for version, entry in record.versions.items()
        ]
        return sorted(out, key=lambda i: (i.name, version_key(i.version)))

    def get(self, name: str, version_spec: str | None = None) -> PluginInfo:
        """The installed version of ``name`` to use.

        Args:
            name: The plugin (manifest) name.
            version_spec: ``None`` for the highest release (pre-releases only if
                nothing else is installed); ``"1.2"``/``"^1.2"`` for the highest
                semver-compatible with 1.2.0; ``"=1.2.3"`` for exactly that version.

        Raises:
            PluginNotFoundError: nothing installed matches (the message lists what is).
            ValueError: ``version_spec`` is not a valid spec.
        """
        versions = [i for i in self.list() if i.name == name]
        if version_spec is None:
            pool = [i for i in versions if version_key(i.version)[3] == 1] or versions
        else:
            pool = [i for i in versions if matches_spec(i.version, version_spec)]
        if not pool:
            have = ", ".join(i.version for i in versions) or "none"
            wanted = f" matching {version_spec!r}" if version_spec else ""
            raise PluginNotFoundError(
                f"no installed plugin {name!r}{wanted} (installed versions: {have})"
            )
        return max(pool, key=lambda i: version_key(i.version))

    def discover(
        self,
        dirs: Iterable[str | os.PathLike[str]] = (),
        *,
        entry_points: bool = True,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> builtins.list[PluginInfo]:
        """Find installable plugins: ``*.wasm`` files in ``dirs`` and the entry points of
        group ``wasmplug.plugins``. Nothing is compiled or verified.

        Files that are not components with an embedded manifest, and entry points
        that fail to load, are skipped and reported to ``on_error(where, error)``
        (default: a logged warning).
        """
        return [info for info, _ in self._discover(dirs, entry_points, on_error)]

    def _discover(
        self,
        dirs: Iterable[str | os.PathLike[str]],
        entry_points: bool,
        on_error: Callable[[str, Exception], None] | None,
    ) -> Iterator[tuple[PluginInfo, bytes]]:
        report = on_error or _default_on_error
        for d in [dirs] if isinstance(dirs, str | os.PathLike) else dirs:
            directory = Path(d)
            if not directory.is_dir():
                report(str(directory), FileNotFoundError(f"{directory} is not a directory"))
                continue
            for path in sorted(directory.glob("*.wasm")):
                try:
                    c = _inspect(path.read_bytes(), str(path))
                except (OSError, InvalidComponentError, ManifestError) as e:
                    report(str(path), e)
                    continue
                yield _info(c, "dir", path, str(path)), c.data
        if not entry_points:
            return
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = f" ({ep.dist.name})" if ep.dist is not None else ""
            origin = f"entry point {ep.name} = {ep.value}{dist}"
            try:
                ep_path, data = _load_entry_point(ep)
                c = _inspect(data, origin)
            except Exception as e:  # third-party code: report and go on
                report(origin, e)
                continue
            yield _info(c, "entry-point", ep_path, origin), c.data

    # -- changing ----------------------------------------------------------------------

    def install(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        trust_store: TrustStore,
        trusted_keys: Iterable[TrustedKey | _signing.PublicKey | bytes] = (),
        allow_unsigned: bool = False,
        force: bool = False,
        compile: Callable[[bytes], None] | None = None,
        search_dirs: Iterable[str | os.PathLike[str]] = (),
        oci: OciOrigin | None = None,
    ) -> PluginInfo:
        """Verify, check, precompile and install a plugin, atomically (see the module doc).

        Args:
            source: A ``.wasm`` path, its bytes, or a plugin NAME (``name`` or
                ``name@spec``) found by :meth:`discover` in ``search_dirs`` and entry
                points (the highest matching version).
            trust_store: Trusted keys and revocations; ``trusted_keys`` adds keys.
            allow_unsigned: Install without a trusted signature, recorded as unsigned.
            force: Override name-conflict, rollback and version-conflict refusals.
            compile: Called with the bytes before anything is written (the CLI passes
                a PluginHost's compile, filling its cache); if it raises, nothing changes.
            oci: The bytes came from an OCI registry: recorded with the entry
                (``wasmplug lock`` reads it). Messages name ``oci.reference``.

        Returns:
            The installed plugin (the existing entry if these exact bytes are installed).

        Raises:
            InvalidComponentError, ManifestError: not a component with a valid embedded
                manifest. UnsignedPluginError, SignatureError (UntrustedKeyError,
                RevokedError...): the trust check failed. LinkError: undeclared imports.
            NameConflictError, RollbackError, VersionConflictError: see the module doc.
            PluginNotFoundError: NAME matched nothing. RegistryError: damaged index.
        """
        if oci is not None and isinstance(source, bytes | bytearray):
            c = _inspect(bytes(source), oci.reference)
        else:
            c = self._resolve(source, search_dirs)
        name = c.manifest.name
        keys = [as_trusted(k) for k in trusted_keys]
        signer = trust_store.check(
            c.data, name, extra_keys=keys, where=c.where, allow_unsigned=allow_unsigned
        )
        key_id = None if signer is None else signer.key_id
        problems = undeclared_imports(c.manifest, [item.name for item in c.component.imports])
        if problems:
            raise LinkError(name, problems)
        self._check(self._index.read(), c, key_id, force)  # fail fast, before compiling
        if compile is not None:
            compile(c.data)
        with self._locked() as index:
            existing = self._check(index, c, key_id, force)
            if (
                existing is not None
                and existing.key_id == key_id
                and (oci is None or existing.oci == oci)
            ):
                return self._entry_info(name, c.manifest.version, existing)  # already installed
            record = index.plugins.setdefault(name, PluginRecord())
            versions = record.versions
            stage = self._new_stage()
            if existing is not None:
                file = existing.file
            else:
                staged = stage / "plugin.wasm"
                self._stage_file(staged, c.data)
                file = self._place(staged, name, c.manifest.version, c.sha256)
            for v in [v for v in versions if version_key(v) == version_key(c.manifest.version)]:
                del versions[v]
            versions[c.manifest.version] = Entry(
                file=file,
                sha256=c.sha256,
                key_id=key_id,
                signed=key_id is not None,
                forced=force,
                installed=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                manifest_text=c.manifest_text,
                manifest=c.manifest,
                imports=tuple(c.component.import_names),
                exports=tuple(c.component.export_names),
                oci=oci if oci is not None else (existing.oci if existing else None),
            )
            highest = record.highest_version
            if highest is None or version_key(c.manifest.version) > version_key(highest):
                record.highest_version = c.manifest.version
            if key_id is not None:
                record.publisher = key_id
            self._commit_index(index, stage)
            return self._entry_info(name, c.manifest.version, versions[c.manifest.version])

    def remove(
        self, name: str, version: str | None = None, *, forget: bool = False
    ) -> builtins.list[PluginInfo]:
        """Uninstall one version of ``name``, or all of them.

        The highest installed version and the pinned publisher key are remembered
        after removal (rollback protection); ``forget=True`` (only with every
        version removed) drops them too.

        Returns:
            The removed versions.

        Raises:
            PluginNotFoundError: ``name`` (or that version) is not installed.
            ValueError: ``forget`` was given with a ``version``.
        """
        if forget and version is not None:
            raise ValueError("forget=True drops the whole record: remove every version")
        with self._locked() as index:
            record = index.plugins.get(name)
            versions = record.versions if record else {}
            chosen = list(versions) if version is None else [version]
            if (not chosen and not (forget and record)) or any(v not in versions for v in chosen):
                have = ", ".join(versions) or "none"
                what = f"{name!r} {version}" if version else repr(name)
                raise PluginNotFoundError(f"plugin {what} is not installed (versions: {have})")
            removed = [self._entry_info(name, v, versions.pop(v)) for v in chosen]
            if forget:
                del index.plugins[name]
            self._commit_index(index, self._new_stage())
            return removed

    # -- internals ---------------------------------------------------------------------

    def _resolve(
        self, source: str | os.PathLike[str] | bytes, dirs: Iterable[str | os.PathLike[str]]
    ) -> _Candidate:
        if isinstance(source, bytes | bytearray):
            return _inspect(bytes(source), "<bytes>")
        text = os.fspath(source)
        path = Path(text)
        if not isinstance(source, str) or path.exists() or "/" in text or text.endswith(".wasm"):
            try:
                return _inspect(path.read_bytes(), str(path))
            except OSError as e:
                raise InvalidComponentError(f"cannot read {path}: {e}") from None
        name, _, spec = text.partition("@")
        dirs = list(dirs)
        found = [
            (info, data)
            for info, data in self._discover(dirs, True, None)
            if info.name == name and (not spec or matches_spec(info.version, spec))
        ]
        if not found:
            where = ", ".join(map(str, dirs)) + ", " if dirs else ""
            raise PluginNotFoundError(
                f"no plugin {text!r} found in {where}entry points ({ENTRY_POINT_GROUP}); "
                "give a path to install a file"
            )
        top = max(version_key(i.version) for i, _ in found)
        best = [(i, d) for i, d in found if version_key(i.version) == top]
        if len({i.sha256 for i, _ in best}) > 1:
            raise NameConflictError(
                f"{name} {best[0][0].version} is offered by different files: "
                + "; ".join(i.origin for i, _ in best)
                + ". Install one of them by path"
            )
        info, data = best[0]
        return _inspect(data, info.origin)

    @staticmethod
    def _check(index: Index, c: _Candidate, key_id: str | None, force: bool) -> Entry | None:
        """Apply name/rollback/version-conflict rules; return the identical entry, if any."""
        name, version = c.manifest.name, c.manifest.version
        record = index.plugins.get(name) or PluginRecord()
        same = [e for v, e in record.versions.items() if version_key(v) == version_key(version)]
        for entry in same:
            if entry.sha256 == c.sha256:
                return entry
        if force:
            return None
        pinned = record.publisher
        if pinned is not None and key_id != pinned:
            who = f"key {key_id}" if key_id else "an unsigned build"
            raise NameConflictError(
                f"{name!r} is installed from publisher key {pinned}; refusing {who} under the "
                "same name (use --force / force=True to switch publisher)"
            )
        highest = record.highest_version
        if highest is not None and version_key(version) < version_key(highest):
            raise RollbackError(
                f"{name} {version} is lower than {highest}, the highest version installed; "
                "refusing a rollback (use --force / force=True to downgrade deliberately)"
            )
        if same:
            raise VersionConflictError(
                f"{name} {version} is already installed with different content "
                f"(sha256 {same[0].sha256}, new {c.sha256}); bump the version, or use "
                "--force / force=True to replace it"
            )
        return None

    def _entry_info(self, name: str, version: str, entry: Entry) -> PluginInfo:
        path = self.root / entry.file
        oci = entry.oci
        return PluginInfo(
            name, version, entry.manifest.description, entry.sha256, entry.key_id, entry.signed,
            path, entry.manifest, entry.imports, entry.exports, "registry", str(path),
            oci.reference if oci else None, oci.manifest_digest if oci else None,
        )  # fmt: skip

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Index]:
        """Hold the registry lock; clean up after killed processes; yield the index."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with file_lock(self.root / ".lock"):
            index = self._index.read()
            if self._staging.exists():
                for leftover in self._staging.iterdir():
                    log.info("removing %s, left by an interrupted change", leftover)
                    shutil.rmtree(leftover, ignore_errors=True)
            self._remove_unreferenced(index)
            try:
                yield index
            finally:
                if self._staging.exists():
                    for stage in self._staging.iterdir():
                        shutil.rmtree(stage, ignore_errors=True)

    def _new_stage(self) -> Path:
        self._staging.mkdir(exist_ok=True, mode=0o700)
        stage = self._staging / secrets.token_hex(8)
        stage.mkdir(mode=0o700)
        return stage

    def _stage_file(self, path: Path, data: bytes) -> None:
        """Write and fsync a staged file (a seam for the interruption tests)."""
        write_atomic(path, data)

    def _place(self, staged: Path, name: str, version: str, sha: str) -> str:
        """Move a staged file to a fresh path under ``plugins/``; returns it, relative."""
        target_dir = self.root / "plugins" / name.replace(":", "+") / version
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / "plugin.wasm"
        while target.exists():
            target = target_dir / f"plugin-{sha[:12]}-{secrets.token_hex(3)}.wasm"
        os.rename(staged, target)
        fsync_dir(target_dir)
        return target.relative_to(self.root).as_posix()

    def _commit_index(self, index: Index, stage: Path) -> None:
        """Write the index atomically (its temporary file in the stage, so a killed
        process leaves nothing outside it): the commit point of every change."""
        self._index.write(index, tmp_dir=stage)
        self._remove_unreferenced(index)

    def _remove_unreferenced(self, index: Index) -> None:
        plugins = self.root / "plugins"
        if not plugins.is_dir():
            return
        referenced = {
            self.root / e.file for r in index.plugins.values() for e in r.versions.values()
        }
        for file in plugins.glob("*/*/plugin*.wasm"):
            if file not in referenced:
                file.unlink(missing_ok=True)
        for directory in [*plugins.glob("*/*"), *plugins.glob("*")]:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only succeeds when empty


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> tuple[Path | None, bytes]:
    obj = ep.load()
    if callable(obj) and not isinstance(obj, str | os.PathLike | Traversable):
        obj = obj()
    if isinstance(obj, str | os.PathLike):
        path = Path(os.fspath(obj))
        return path, path.read_bytes()
    if isinstance(obj, Traversable):
        return None, obj.read_bytes()
    raise TypeError(
        f"entry point must name a path or importlib.resources Traversable to a .wasm "
        f"(or a callable returning one), got {type(obj).__name__}"
    )
