"""The registry's ``index.json``, as typed records: parsed (and checked) once per read.

Format 1::

    {"format": 1,
     "plugins": {
       "<name>": {
         "highest-version": "1.2.0",       rollback protection (kept after remove)
         "publisher": "<key id hex>",      pinned by the first signed install (or absent)
         "versions": {
           "<version>": {"file": "plugins/<name>/<version>/plugin.wasm", "sha256": "...",
                         "key-id": "..." | null, "signed": bool, "forced": bool,
                         "installed": "<ISO 8601>", "manifest": "<TOML text>",
                         "imports": [...], "exports": [...],
                         "oci": {"reference": "...", "manifest-digest": "sha256:..."}}}}}}

Every failure to read it (bad JSON, deep nesting, a field of the wrong type, a
version that is not semver, a file path outside the registry, an embedded
manifest that does not parse) is a :class:`~wasmplug.RegistryError` naming the
field, and the registry then refuses to change anything.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from wasmplug._errors import ManifestError, RegistryError
from wasmplug._jsonstore import (
    Invalid,
    JsonStore,
    as_bool,
    as_dict,
    as_opt_str,
    as_str,
    as_str_list,
    field,
)
from wasmplug._sandbox.manifest import Manifest
from wasmplug._semver import version_key

__all__ = ["FORMAT", "Entry", "Index", "OciOrigin", "PluginRecord", "index_store"]

FORMAT = 1


@attrs.frozen
class OciOrigin:
    """Where an installed plugin came from in an OCI registry (recorded in the index).

    Attributes:
        reference: The reference as the user gave it, resolved (``host/repo:tag``).
        manifest_digest: The manifest digest the reference resolved to.
    """

    reference: str
    manifest_digest: str


@attrs.frozen
class Entry:
    """One installed version."""

    file: str  # relative to the registry root, POSIX
    sha256: str
    key_id: str | None
    signed: bool
    forced: bool
    installed: str
    manifest_text: str
    manifest: Manifest = attrs.field(eq=False)
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    oci: OciOrigin | None = None


@attrs.define
class PluginRecord:
    """Everything about one plugin name."""

    versions: dict[str, Entry] = attrs.Factory(dict)
    highest_version: str | None = None
    publisher: str | None = None


@attrs.define
class Index:
    """The whole index."""

    plugins: dict[str, PluginRecord] = attrs.Factory(dict)


def _semver(value: Any, where: str) -> str:
    text = as_str(value, where)
    try:
        version_key(text)
    except ValueError as e:
        raise Invalid(f"{where}: {e}") from None
    return text


def _relative_file(value: Any, where: str) -> str:
    file = as_str(value, where)
    parts = PurePosixPath(file).parts
    if not file or PurePosixPath(file).is_absolute() or ".." in parts or "\0" in file:
        raise Invalid(f"{where}: file {file!r} is outside the registry")
    return file


def _parse_entry(name: str, value: Any, where: str, source: str) -> Entry:
    entry = as_dict(value, where)
    text = field(entry, "manifest", where, as_str)
    try:
        manifest = Manifest.from_toml(text, source=f"{source} ({name})")
    except ManifestError as e:
        raise Invalid(f"{where}.manifest: {e}") from None
    return Entry(
        file=field(entry, "file", where, _relative_file),
        sha256=field(entry, "sha256", where, as_str),
        key_id=field(entry, "key-id", where, as_opt_str),
        signed=field(entry, "signed", where, as_bool),
        forced=field(entry, "forced", where, as_bool, False),
        installed=field(entry, "installed", where, as_str, ""),
        manifest_text=text,
        manifest=manifest,
        imports=tuple(field(entry, "imports", where, as_str_list)),
        exports=tuple(field(entry, "exports", where, as_str_list)),
        oci=field(entry, "oci", where, _oci, None),
    )


def _oci(value: Any, where: str) -> OciOrigin | None:
    if value is None:
        return None
    table = as_dict(value, where)
    return OciOrigin(
        field(table, "reference", where, as_str), field(table, "manifest-digest", where, as_str)
    )


def _parser(source: str) -> Any:
    def parse(data: Any) -> Index:
        doc = as_dict(data, "")
        if doc.get("format") != FORMAT:
            raise Invalid(f"not a format-{FORMAT} registry index")
        plugins: dict[str, PluginRecord] = {}
        for name, value in field(doc, "plugins", "", as_dict).items():
            where = f"plugins.{name}"
            record = as_dict(value, where)
            versions = {
                _semver(version, f"{where}.versions.{version}"): _parse_entry(
                    name, entry, f"{where}.versions.{version}", source
                )
                for version, entry in field(record, "versions", where, as_dict).items()
            }
            highest = record.get("highest-version")
            plugins[name] = PluginRecord(
                versions,
                None if highest is None else _semver(highest, f"{where}.highest-version"),
                field(record, "publisher", where, as_opt_str, None),
            )
        return Index(plugins)

    return parse


def _dump(index: Index) -> dict[str, Any]:
    plugins: dict[str, Any] = {}
    for name, record in index.plugins.items():
        out: dict[str, Any] = {
            "versions": {
                version: {
                    "file": e.file,
                    "sha256": e.sha256,
                    "key-id": e.key_id,
                    "signed": e.signed,
                    "forced": e.forced,
                    "installed": e.installed,
                    "manifest": e.manifest_text,
                    "imports": list(e.imports),
                    "exports": list(e.exports),
                    **(
                        {}
                        if e.oci is None
                        else {
                            "oci": {
                                "reference": e.oci.reference,
                                "manifest-digest": e.oci.manifest_digest,
                            }
                        }
                    ),
                }
                for version, e in record.versions.items()
            }
        }
        if record.highest_version is not None:
            out["highest-version"] = record.highest_version
        if record.publisher is not None:
            out["publisher"] = record.publisher
        plugins[name] = out
    return {"format": FORMAT, "plugins": plugins}


def index_store(root: Path) -> JsonStore[Index]:
    """The index file of the registry at ``root``."""
    path = root / "index.json"

    def error(message: str) -> RegistryError:
        return RegistryError(
            f"{message.replace('is malformed', 'is damaged', 1)}; nothing was changed. "
            f"Fix or delete it (plugin files are under {root / 'plugins'})"
        )

    return JsonStore(
        path,
        parse=_parser(str(path)),
        dump=_dump,
        empty=Index,
        error=error,
        what="registry index",
        mode=0o644,
    )
