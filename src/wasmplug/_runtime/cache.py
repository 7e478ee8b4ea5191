"""The compile cache: compiled components on disk, checked before any native code loads.

``Component.deserialize`` maps native machine code into the process, so a
tampered or truncated cache entry must never reach it. Each entry is::

    b"WPLGCACH" | u32 version | 32-byte SHA-256 of the payload | payload

The file name is the SHA-256 of (code digest, wasmtime version, engine
settings), so a different wasmtime or engine configuration never reads an
incompatible entry. The code digest (:func:`code_digest`) hashes the component
without its ``signature``/``signature_delimiter`` sections and its embedded
``wasmplug-manifest`` section: wasmtime ignores those custom sections when it
compiles, so re-signing unchanged code, or re-packing it with a new manifest,
reuses the compiled entry instead of recompiling (10-30 s for a
componentize-py plugin). This is safe because nothing read from the cache
stands for those sections: signatures are verified and the manifest is read
from the file being loaded, every time, before the cache is consulted; the
entry only ever holds the machine code, which is the same for both files.

The directory is created ``0o700`` and refused if another user owns it or it
is group/world-writable. Writes go to a temporary file in the same directory,
are fsynced, then ``os.replace``d into place.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import stat
import struct
from pathlib import Path

import wasmtime

from wasmplug._errors import CacheError, InvalidComponentError
from wasmplug._fsutil import write_atomic
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import wasm_sections as ws

__all__ = ["CompileCache", "code_digest", "wasmtime_version"]

log = logging.getLogger("wasmplug.cache")

MAGIC = b"WPLGCACH"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sI32s")


def default_cache_dir() -> Path:
    """``platformdirs.user_cache_dir("wasmplug")/compiled``."""
    import platformdirs  # here: worker processes use the cache without it

    return Path(platformdirs.user_cache_dir("wasmplug")) / "compiled"


@functools.cache
def wasmtime_version() -> str:
    """The installed wasmtime's version (part of every entry's key), read once per process:
    a confined worker process can no longer list the directories on ``sys.path`` that
    ``importlib.metadata`` reads, so it reads this before it is confined."""
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:  # pragma: no cover - wasmtime always has metadata when installed
        return getattr(wasmtime, "__version__", "unknown")


_NOT_CODE = frozenset({ws.SIGNATURE_SECTION, ws.DELIMITER_SECTION, MANIFEST_SECTION})
"""Top-level custom sections that wasmplug itself writes and wasmtime never compiles."""


def code_digest(data: bytes) -> str:
    """The hex SHA-256 of a component without its signature and manifest sections.

    Hashes the 8-byte header and every top-level section byte for byte, in
    file order, except custom sections named ``signature``,
    ``signature_delimiter`` (wasmsign2) and ``wasmplug-manifest``. Every other
    section, other custom sections included (``name``, producers, DWARF), is
    part of the digest, so two files with the same digest compile to the same
    code. Signing, re-signing with another key and re-packing a manifest keep
    the digest.

    A binary whose outer section layout does not parse is hashed whole, under a
    different prefix, so it still gets wasmtime's own error when compiled.

    Args:
        data: The component (or core module) bytes.

    Returns:
        64 hex characters.
    """
    view = memoryview(data)
    hasher = hashlib.sha256(b"wasmplug-code-digest-1\0")
    try:
        spans = [
            (start, end)
            for section, start, end in ws.iter_section_spans(data)
            if section.name not in _NOT_CODE
        ]
    except InvalidComponentError:
        hasher.update(b"raw\0")
        hasher.update(view)
        return hasher.hexdigest()
    hasher.update(view[:8])
    for start, end in spans:
        hasher.update(view[start:end])
    return hasher.hexdigest()


class CompileCache:
    """Stores serialized compiled components under ``directory``.

    Args:
        directory: Where entries live; created with mode 0o700 if missing.
        engine_settings: A string describing every engine option that affects
            compiled code (part of the key).

    Raises:
        CacheError: if the directory cannot be created, is owned by another
            user, or is writable by group or others.
    """

    def __init__(self, directory: Path, engine_settings: str) -> None:
        self.directory = directory
        self._salt = f"{wasmtime_version()}|{engine_settings}|{FORMAT_VERSION}"
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = directory.stat()
        except OSError as e:
            raise CacheError(f"cannot create cache directory {directory}: {e}") from None
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CacheError(f"cache directory {directory} is owned by another user")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CacheError(
                f"cache directory {directory} is writable by group or others; "
                f"run: chmod 700 {directory}"
            )

    def path_for(self, code_sha256: str) -> Path:
        """The entry path for a component with this :func:`code_digest`."""
        key = hashlib.sha256(f"{code_sha256}|{self._salt}".encode()).hexdigest()
        return self.directory / f"{key}.cwasm"

    def get(self, code_sha256: str) -> bytes | None:
        """Return the verified serialized payload, or ``None`` if absent or invalid.

        An invalid entry (bad magic, wrong version, checksum mismatch,
        truncation) is logged, deleted and reported as absent: it is never
        handed to ``Component.deserialize``.
        """
        path = self.path_for(code_sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read cache entry %s: %s", path, e)
            return None
        if len(data) >= _HEADER.size:
            magic, version, digest = _HEADER.unpack_from(data)
            payload = data[_HEADER.size :]
            if (
                magic == MAGIC
                and version == FORMAT_VERSION
                and hashlib.sha256(payload).digest() == digest
            ):
                return payload
        log.warning("discarding corrupt compile-cache entry %s", path)
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def put(self, code_sha256: str, payload: bytes) -> None:
        """Store a serialized component atomically. Failures are logged, not raised."""
        path = self.path_for(code_sha256)
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(payload).digest())
        try:
            write_atomic(path, header + payload, mode=0o600)
        except OSError as e:
            log.warning("cannot write compile-cache entry %s: %s", path, e)
