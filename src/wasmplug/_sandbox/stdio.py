"""Guest stdout/stderr → Python logging, line-buffered and rate-limited."""

from __future__ import annotations

import logging
import time

__all__ = ["GuestOutput"]


class GuestOutput:
    """A ``WasiConfig.stdout_custom`` callback that logs each line the guest writes.

    Lines go to ``logger`` at ``level``. At most ``max_lines`` lines are logged per
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
        self.max_lines = max_lines
        self.per_s = per_s
        self.discard = discard
        self.tail_bytes = tail_bytes
        self.tail = ""
        self._partial = b""
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0

    def __call__(self, data: bytes) -> int:
        # Called from inside wasmtime (via a ctypes callback): never raise.
        try:
            self._write(data)
        except Exception:  # pragma: no cover - logging handlers failing
            pass
        return len(data)

    def _write(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        self.tail = (self.tail + text)[-self.tail_bytes :]
        if self.discard:
            return
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        if len(self._partial) > 4096:  # a line that never ends
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._emit(line.decode("utf-8", "replace").rstrip("\r"))

    def _emit(self, line: str) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.per_s:
            if self._suppressed:
                self.logger.log(self.level, "(%d lines suppressed by rate limit)", self._suppressed)
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count < self.max_lines:
            self._count += 1
            self.logger.log(self.level, "%s", line)
        else:
            self._suppressed += 1

    def flush(self) -> None:
        """Log any unterminated last line."""
        if self._partial and not self.discard:
            self._emit(self._partial.decode("utf-8", "replace"))
        self._partial = b""
