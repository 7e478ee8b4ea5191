"""Guest stdout/stderr → Python logging, line-buffered and rate-limited."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Literal

from wasmplug import _telemetry

from .stdiopipe import GuestPipe, open_pipe

if TYPE_CHECKING:
    from wasmtime import WasiConfig

__all__ = ["MAX_LINE_BYTES", "GuestOutput"]

MAX_LINE_BYTES = 4096
"""Longest log record made from guest output, in bytes of UTF-8: longer lines are
split into pieces of at most this size, cut between characters."""


def _cut(data: bytes, limit: int) -> int:
    """Where to cut ``data`` (longer than ``limit``): at ``limit``, moved back to the
    start of a UTF-8 character (at most 3 bytes; invalid data is cut at ``limit``)."""
    cut = limit
    while cut > limit - 3 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if data[cut] & 0xC0 != 0x80 else limit


class GuestOutput:
    """Logs each line one guest stream (stdout or stderr of one instance) writes.

    :meth:`wire` connects it to a ``WasiConfig``: through a pipe where possible (see
    :mod:`wasmplug._sandbox.stdiopipe`: a guest write of up to 1 MiB arrives whole),
    else as the ``stdout_custom`` callback (8,192 bytes per guest write; CPython
    guests drop the rest of longer writes). Call :meth:`drain` after running guest
    code to log what it wrote, and :meth:`close` when the instance is freed.

    Lines go to ``logger`` at ``level``; a line longer than :data:`MAX_LINE_BYTES`
    is logged as several records of at most that many bytes, cut between UTF-8
    characters. At most ``max_lines`` records are logged per
    ``per_s`` seconds; the rest are counted and reported once as "N lines
    suppressed", so a chatty or hostile plugin cannot flood the application's
    logs. The last ``tail_bytes`` bytes are kept in :attr:`tail` for fault
    classification (an out-of-memory abort is recognised by its message).

    Args:
        logger: Destination, normally ``logging.getLogger("wasmplug.plugin.<name>")``.
        level: Logging level for every line.
        max_lines: Lines allowed per window.
        per_s: Window length, in seconds.
        discard: Drop everything (manifest ``stdio = "discard"``), keeping only the tail.
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        *,
        max_lines: int = 100,
        per_s: float = 1.0,
        discard: bool = False,
        tail_bytes: int = 2048,
    ) -> None:
        self.logger = logger
        self.level = level
        # Structured fields of every record (docs/observability.md, "Logs").
        self.plugin = logger.name.removeprefix("wasmplug.plugin.")
        # The trace and span ids of the call running on the instance, set by the
        # runtime while tracing: output is logged from another thread (the stdio pump,
        # or wasmtime's for the callback stream), where
        # the call's span is not the current one.
        self.call_fields: dict[str, str] = {}
        self.max_lines = max_lines
        self.per_s = per_s
        self.discard = discard
        self.tail_bytes = tail_bytes
        self.tail = ""
        self._partial = b""
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0
        self._lock = threading.RLock()
        self.pipe: GuestPipe | None = None

    def wire(self, config: WasiConfig, stream: Literal["stdout", "stderr"]) -> None:
        """Make this the guest's ``stream`` in ``config``: a pipe, else the callback."""
        opened = open_pipe(self.__call__)
        if opened is not None:
            pipe, write_fd = opened
            try:
                # wasmtime opens its own descriptor on the pipe's write end.
                if stream == "stdout":
                    config.stdout_file = pipe.path
                else:
                    config.stderr_file = pipe.path
            except Exception:  # no descriptor left for wasmtime: use the callback
                pipe.close()
                opened = None
            finally:
                os.close(write_fd)
            if opened is not None:
                self.pipe = pipe
                return
        if stream == "stdout":
            config.stdout_custom = self
        else:
            config.stderr_custom = self

    @property
    def reading(self) -> bool:
        """Whether the pipe's reader holds output not yet logged (see GuestPipe.busy)."""
        pipe = self.pipe
        return pipe is not None and pipe.busy

    def drain(self) -> None:
        """Log what the guest has written to the pipe so far (no-op for the callback)."""
        pipe = self.pipe
        if pipe is not None:
            pipe.drain()

    def close(self) -> None:
        """Drain and close the pipe, then log any unterminated last line (idempotent)."""
        pipe = self.pipe
        if pipe is not None:
            pipe.close()
        self.flush()

    def __call__(self, data: bytes) -> int:
        # Called from inside wasmtime (via a ctypes callback) or by the pipe's reader,
        # on any thread: never raise.
        try:
            with self._lock:
                self._write(data)
        except Exception:  # pragma: no cover - logging handlers failing
            pass
        return len(data)

    def _write(self, data: bytes) -> None:
        # The tail is for classification only: decode just what it can hold.
        recent = data[-4 * self.tail_bytes :].decode("utf-8", "replace")
        self.tail = (self.tail + recent)[-self.tail_bytes :]
        if self.discard:
            return
        *lines, partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._emit_line(line)
        # A line that never ends is logged in pieces as it grows.
        while len(partial) > MAX_LINE_BYTES:
            cut = _cut(partial, MAX_LINE_BYTES)
            self._emit(partial[:cut].decode("utf-8", "replace"))
            partial = partial[cut:]
        self._partial = partial

    def _emit_line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        while len(line) > MAX_LINE_BYTES:
            cut = _cut(line, MAX_LINE_BYTES)
            self._emit(line[:cut].decode("utf-8", "replace"))
            line = line[cut:]
        self._emit(line.decode("utf-8", "replace"))

    def _emit(self, line: str) -> None:
        now = time.monotonic()
        extra = {"plugin": self.plugin, **(_telemetry.log_fields() or self.call_fields)}
        if now - self._window_start >= self.per_s:
            if self._suppressed:
                self.logger.log(
                    self.level,
                    "(%d lines suppressed by rate limit)",
                    self._suppressed,
                    extra=extra,
                )
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count < self.max_lines:
            self._count += 1
            self.logger.log(self.level, "%s", line, extra=extra)
        else:
            self._suppressed += 1

    def flush(self) -> None:
        """Log any unterminated last line."""
        with self._lock:
            if self._partial and not self.discard:
                self._emit(self._partial.decode("utf-8", "replace"))
            self._partial = b""
