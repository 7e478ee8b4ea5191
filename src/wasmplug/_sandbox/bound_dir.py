"""A granted host directory, bound to the directory it named at load.

A grant names a host path, but a path is only a name: anything that can write
to one of its parent directories (another plugin with a read-write grant, or
this plugin through an overlapping grant) can rename the directory away and
put a symlink or another directory in its place. Preopening the grant again
*by path* for the next instance would then hand the plugin a directory that
was never granted.

So a grant is bound to an identity when the plugin loads:

* its resolved real path (``os.path.realpath``: no symlink left in any
  component) and the ``(st_dev, st_ino)`` of the directory there;
* an open directory file descriptor, held for the plugin's lifetime.

Before every new instance, :meth:`BoundDir.preopen` checks that the granted
path still resolves to the same real path and the same ``(st_dev, st_ino)``.
If not, it raises :class:`~wasmplug.CapabilityError` and the instance is not
created. When the check passes, the directory is preopened through
``/proc/self/fd/N`` of the held descriptor (on Linux; wasmtime opens that magic
link, which names the held directory itself, not a path), so a swap between
the check and the preopen cannot redirect it either. Where ``/proc/self/fd``
does not exist, the real path is preopened and checked again afterwards, which
narrows that window to the preopen call.
"""

from __future__ import annotations

import os
import stat
import threading
import weakref
from pathlib import Path
from typing import Protocol

from wasmplug._errors import CapabilityError

__all__ = ["BoundDir"]

_FD_DIR = "/proc/self/fd"
_HAS_FD_DIR = os.path.isdir(_FD_DIR)
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    # The real path has no symlink left; refuse one that appeared since.
    | getattr(os, "O_NOFOLLOW", 0)
)


class _Preopener(Protocol):
    def preopen_dir(self, path: str, guest_path: str, fs_mutable: bool = ...) -> None: ...


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:  # pragma: no cover - already closed
        pass


class BoundDir:
    """A host directory held open and identified by ``(real path, st_dev, st_ino)``.

    Args:
        path: The host path as granted (absolute).
        guest_path: The guest path it is granted as (for messages).
        expect: ``(real_path, st_dev, st_ino)`` the directory must have: the
            identity bound earlier in another process (a worker of the process
            isolation tier binds the path again and checks it against the host's).

    Raises:
        CapabilityError: ``path`` does not exist, is not a directory, cannot be
            opened, or is not the ``expect`` directory.
    """

    __slots__ = ("__weakref__", "_closed", "_fd", "_finalizer", "_lock", "dev", "guest_path",
                 "ino", "path", "real_path")  # fmt: skip

    def __init__(
        self, path: Path, guest_path: str, *, expect: tuple[str, int, int] | None = None
    ) -> None:
        self.path = path
        self.guest_path = guest_path
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.real_path = os.path.realpath(path, strict=True)
            fd = os.open(self.real_path, _OPEN_FLAGS)
        except OSError as e:
            raise CapabilityError(
                f"grant for {guest_path!r} names {path}, which is not a directory "
                f"that can be opened ({e.strerror or e})"
            ) from None
        self._fd = fd
        self._finalizer = weakref.finalize(self, _close_quietly, fd)
        st = os.fstat(fd)
        self.dev, self.ino = st.st_dev, st.st_ino
        self._check()  # the path may have changed between realpath() and open()
        if expect is not None and (self.real_path, self.dev, self.ino) != tuple(expect):
            self.close()
            if self.real_path != expect[0]:
                raise self._changed(f"it now resolves to {self.real_path}, not {expect[0]}")
            raise self._changed(f"{self.real_path} is now a different directory")

    def identity(self) -> tuple[int, int]:
        """``(st_dev, st_ino)`` of the bound directory."""
        return self.dev, self.ino

    def fileno(self) -> int:
        """The held descriptor of the bound directory (valid until :meth:`close`): what a
        worker's Landlock rule for this grant is made on, so the rule is bound to the
        directory itself, not to its path."""
        return self._fd

    def _check(self) -> None:
        """Raise :class:`CapabilityError` unless ``path`` still names the bound directory."""
        try:
            real = os.path.realpath(self.path, strict=True)
            st = os.stat(real, follow_symlinks=False)
        except OSError as e:
            raise self._changed(f"it can no longer be resolved ({e.strerror or e})") from None
        if real != self.real_path:
            raise self._changed(f"it now resolves to {real}, not {self.real_path}")
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) != (self.dev, self.ino):
            raise self._changed(f"{real} is now a different directory")

    def _changed(self, why: str) -> CapabilityError:
        return CapabilityError(
            f"grant for {self.guest_path!r} ({self.path}) no longer names the directory "
            f"it named when the plugin was loaded: {why}; refusing to preopen it "
            "(a directory inside a writable grant can be replaced by the plugin)"
        )

    def preopen(self, config: _Preopener, *, writable: bool) -> None:
        """Check the identity, then preopen the bound directory at ``guest_path`` in ``config``.

        Raises:
            CapabilityError: the grant's path no longer names the bound
                directory, the plugin was closed, or wasmtime refused the preopen.
        """
        with self._lock:  # close() cannot free the descriptor while it is being opened
            if self._closed:
                raise CapabilityError(f"grant for {self.guest_path!r} was released (plugin closed)")
            self._check()
            target = f"{_FD_DIR}/{self._fd}" if _HAS_FD_DIR else self.real_path
            try:
                config.preopen_dir(target, self.guest_path, fs_mutable=writable)
            except Exception as e:
                raise CapabilityError(
                    f"cannot preopen {self.path} as {self.guest_path}: {e}"
                ) from None
            if not _HAS_FD_DIR:
                self._check()

    def close(self) -> None:
        """Release the held descriptor (idempotent); later :meth:`preopen` calls fail."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __repr__(self) -> str:
        return f"<BoundDir {self.guest_path} -> {self.real_path} dev={self.dev} ino={self.ino}>"
