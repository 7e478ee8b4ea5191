"""The blob cache's download lock: one download per digest across processes, with a deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wasmplug import RegistryUnavailableError
from wasmplug._distribution.cache import BlobCache
from wasmplug._fsutil import file_lock

DIGEST = "sha256:" + "ab" * 32


def test_a_download_lock_held_elsewhere_is_waited_for_with_a_deadline(tmp_path: Path) -> None:
    """Another process downloading the digest holds its lock (a flock on another open file
    description, as here); the wait ends at the deadline with a registry error instead of
    hanging the install for as long as the other process lives."""
    cache = BlobCache(tmp_path / "oci")
    partial = cache.partial(DIGEST)
    with file_lock(partial.with_name(partial.name.removesuffix(".partial") + ".lock")):
        start = time.monotonic()
        with (
            pytest.raises(RegistryUnavailableError, match="another process has been downloading"),
            cache.downloading(DIGEST, timeout_s=0.2),
        ):
            pytest.fail("the lock was taken twice")
        assert time.monotonic() - start >= 0.2
    with cache.downloading(DIGEST, timeout_s=0.2) as path:  # released: taken at once
        assert path == partial


def test_an_error_inside_the_download_is_not_taken_for_a_lock_timeout(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "oci")
    with pytest.raises(TimeoutError, match="the transfer"), cache.downloading(DIGEST, timeout_s=1):
        raise TimeoutError("the transfer")
