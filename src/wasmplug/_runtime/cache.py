"""The compile cache: compiled components on disk, checked before any native code loads.

``Component.deserialize`` maps native machine code into the process, so a
tampered or truncated cache entry must never reach it. Each entry is::

    b"WPLGCACH" | u32 version | 32-byte SHA-256 of the payload | payload

The file name is the SHA-256 of (component SHA-256, wasmtime version, engine
settings), so a different wasmtime or engine configuration never reads an
incompatible entry. The directory is created ``0o700`` and refused if another
user owns it or it is group/world-writable. Writes go to a temporary file in
the same directory, are fsynced, then ``os.replace``d into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import struct
from pathlib import Path

import platformdirs
import wasmtime

from wasmplug._errors import CacheError
from wasmplug._fsutil import write_atomic

__all__ = ["CompileCache"]

log = logging.getLogger("wasmplug.cache")

MAGIC = b"WPLGCACH"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sI32s")


def default_cache_dir() -> Path:
    """``platformdirs.user_cache_dir("wasmplug")/compiled``."""
    return Path(platformdirs.user_cache_dir("wasmplug")) / "compiled"


def _wasmtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:  # pragma: no cover - wasmtime always has metadata when installed
        return getattr(wasmtime, "__version__", "unknown")


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
        self._salt = f"{_wasmtime_version()}|{engine_settings}|{FORMAT_VERSION}"
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

    def path_for(self, component_sha256: str) -> Path:
        """The entry path for a component with this SHA-256 (hex)."""
        key = hashlib.sha256(f"{component_sha256}|{self._salt}".encode()).hexdigest()
        return self.directory / f"{key}.cwasm"

    def get(self, component_sha256: str) -> bytes | None:
        """Return the verified serialized payload, or ``None`` if absent or invalid.

        An invalid entry (bad magic, wrong version, checksum mismatch,
        truncation) is logged, deleted and reported as absent: it is never
        handed to ``Component.deserialize``.
        """
        path = self.path_for(component_sha256)
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

    def put(self, component_sha256: str, payload: bytes) -> None:
        """Store a serialized component atomically. Failures are logged, not raised."""
        path = self.path_for(component_sha256)
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(payload).digest())
        try:
            write_atomic(path, header + payload, mode=0o600)
        except OSError as e:
            log.warning("cannot write compile-cache entry %s: %s", path, e)
