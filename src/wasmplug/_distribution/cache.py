"""Blobs and manifests cached by digest, under the user cache dir.

Layout (directories 0o700, created on first use)::

    platformdirs.user_cache_dir("wasmplug")/oci/
        blobs/sha256/<hex>              verified content, written atomically
        partial/sha256/<hex>.partial    a download in progress (resumed next time)
        partial/sha256/<hex>.lock       flock()ed while one process downloads that digest

Content is addressed by its digest, so an entry is re-hashed when read: a
corrupt or altered file is deleted and fetched again, never trusted. A second
install of the same digest downloads nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from wasmplug._errors import RegistryUnavailableError
from wasmplug._fsutil import file_lock, write_atomic

from .reference import DIGEST_RE

__all__ = ["BlobCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``platformdirs.user_cache_dir("wasmplug")/oci``."""
    return Path(platformdirs.user_cache_dir("wasmplug")) / "oci"


class BlobCache:
    """Content-addressed storage of OCI blobs and manifests.

    Args:
        root: Default ``platformdirs.user_cache_dir("wasmplug")/oci``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def _path(self, kind: str, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise ValueError(f"{digest!r} is not a sha256 digest")
        return self.root / kind / "sha256" / digest.split(":", 1)[1]

    def _dir(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def get(self, digest: str) -> bytes | None:
        """The cached content for ``digest``, re-verified; ``None`` if absent or corrupt."""
        path = self._path("blobs", digest)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Store ``data`` under ``digest``, which the caller has verified (a no-op if present)."""
        path = self._path("blobs", digest)
        if not path.is_file():
            write_atomic(self._dir(path), data, mode=0o600)

    def partial(self, digest: str) -> Path:
        """Where a download of ``digest`` in progress is kept (resumable)."""
        path = self._path("partial", digest)
        return self._dir(path.with_name(path.name + ".partial"))

    @contextlib.contextmanager
    def downloading(self, digest: str, *, timeout_s: float) -> Iterator[Path]:
        """Hold the download lock of ``digest`` (an exclusive ``flock``); yield its partial file.

        Two processes installing the same digest take turns instead of writing one
        partial file at once; the second then finds the blob cached.

        Args:
            timeout_s: Longest wait for another process's download, in seconds (its
                own transfer deadline bounds how long it may hold the lock).

        Raises:
            RegistryUnavailableError: another process held the lock for ``timeout_s``.
        """
        partial = self.partial(digest)
        lock = partial.with_name(partial.name[: -len(".partial")] + ".lock")
        held = contextlib.ExitStack()
        try:
            held.enter_context(file_lock(lock, timeout_s=timeout_s))
        except TimeoutError:
            raise RegistryUnavailableError(
                f"{digest}: another process has been downloading it for {timeout_s:g} s; giving up"
            ) from None
        with held:
            yield partial

    def adopt(self, digest: str, partial: Path) -> bytes:
        """Move a completed, verified download into the cache; returns its bytes."""
        data = partial.read_bytes()
        target = self._dir(self._path("blobs", digest))
        os.replace(partial, target)
        return data
