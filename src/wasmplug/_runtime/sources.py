"""Reading a plugin source: a path, component bytes or WAT text, and the manifest it carries.

A load, ``inspect()`` and ``precompile()`` all start here: :func:`read_source` turns what
the application passed into component bytes (and the path they came from), and
:func:`find_manifest` finds the manifest those bytes load with: the embedded
``wasmplug-manifest`` section, else a sidecar ``wasmplug.toml`` next to the file, else a
default manifest (no capabilities) named after the file.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import wasmtime
from wasmtime import WasmtimeError

from wasmplug._errors import InvalidComponentError, ManifestError
from wasmplug._sandbox.manifest import MANIFEST_SECTION, SIDECAR_NAME, Manifest
from wasmplug._trust import wasm_sections as ws

from .describe import ManifestSource

__all__ = ["default_name", "find_manifest", "read_source"]


def read_source(source: str | os.PathLike[str] | bytes) -> tuple[Path | None, bytes]:
    """The component bytes of ``source``, and its path (``None`` for bytes).

    Raises:
        InvalidComponentError: the file cannot be read, or the WAT text does not parse.
    """
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        if data.lstrip()[:1] == b"(":
            try:
                data = bytes(wasmtime.wat2wasm(data.decode()))
            except (WasmtimeError, UnicodeDecodeError) as e:
                raise InvalidComponentError(f"invalid WAT text: {e}") from None
        return None, data
    path = Path(source)
    try:
        return path, path.read_bytes()
    except OSError as e:
        raise InvalidComponentError(f"cannot read {path}: {e}") from None


def default_name(path: Path | None) -> str:
    """The plugin name of a component without a manifest: its file stem, as a WIT-style
    kebab-case name (``My_Plugin.wasm`` -> ``my-plugin``), or ``plugin``."""
    stem = path.stem if path is not None else "plugin"
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"plugin-{name}" if name else "plugin"
    return name


def find_manifest(data: bytes, path: Path | None) -> tuple[Manifest, ManifestSource]:
    """The manifest a load uses (embedded, sidecar or default), and which it was.

    Raises:
        ManifestError: the embedded or sidecar manifest is invalid.
    """
    try:
        embedded = ws.get_custom_section(data, MANIFEST_SECTION)
    except InvalidComponentError:
        embedded = None
    if embedded is not None:
        try:
            text = embedded.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError("<embedded>", ["not UTF-8 text"]) from None
        manifest = Manifest.from_toml(text, source=f"{path or 'component'} (embedded)")
        return manifest, "embedded"
    if path is not None:
        sidecar = path.with_name(SIDECAR_NAME)
        if sidecar.is_file():
            return Manifest.from_path(sidecar), "sidecar"
    return _default_manifest(default_name(path)), "default"


@functools.lru_cache(maxsize=256)
def _default_manifest(name: str) -> Manifest:
    """The default manifest named ``name``: one (frozen) object for every load of a
    component without a manifest under that name."""
    return Manifest(name=name)
