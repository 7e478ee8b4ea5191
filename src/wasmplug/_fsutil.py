"""Small file-system helpers shared by the stores, the registry, the build and the CLI.

- :func:`atomic_path` / :func:`write_atomic`: the one way a file is replaced.
  A temporary file in the same directory is written, fsynced, given its mode,
  then ``os.replace``d over the target, and the directory is fsynced: an
  interrupted write leaves the old file or the new one, never half a file.
- :func:`file_lock`: the one advisory lock (``fcntl.flock`` on a side file)
  that serialises read-modify-write changes between processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "file_lock", "fsync_dir", "write_atomic"]


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, mode: int = 0o644, tmp_dir: Path | None = None
) -> Iterator[Path]:
    """Yield a fresh temporary path; on success it atomically becomes ``path``.

    For files a tool writes by name (a compiler's output): fill the yielded
    path, and when the block ends it is fsynced, given ``mode``, renamed over
    ``path`` and the directory fsynced. If the block raises, the temporary
    file is removed and ``path`` is untouched.

    Args:
        path: The file to create or replace.
        mode: Permission bits of the result.
        tmp_dir: Where the temporary file lives (default: ``path``'s
            directory; must be on the same file system).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=tmp_dir or path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, tmp_dir: Path | None = None
) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, mode=mode, tmp_dir=tmp_dir) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0o600, parents 0o700).

    Advisory: it only orders the processes that take it, which is every
    writer of wasmplug's stores. Released when the block ends (or the process dies).

    Args:
        path: The lock file (left in place: unlinking it would let a waiter and
            a newcomer each lock a different file).
        timeout_s: Longest wait for the lock, in seconds; ``None`` waits as long
            as it is held (a store's edit takes milliseconds).

    Raises:
        TimeoutError: ``timeout_s`` passed while another process held the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if timeout_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _flock_by(fd, time.monotonic() + timeout_s, path)
        yield
    finally:
        os.close(fd)  # releases the flock


def _flock_by(fd: int, deadline: float, path: Path) -> None:
    """``flock(fd, LOCK_EX)``, polling (every 50 ms at most) until ``deadline``."""
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{path} is still locked by another process") from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)


def fsync_dir(directory: Path) -> None:
    """Fsync ``directory`` (making renames in it durable), where the OS allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # directories cannot be fsynced everywhere (e.g. Windows)
        pass
