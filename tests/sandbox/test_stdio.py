"""Guest output lines are cut at the documented 4,096 bytes (issue 9 §9)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from wasmplug import Plugin
from wasmplug._sandbox.stdio import MAX_LINE_BYTES, GuestOutput

PLUGIN_LOGGER = "wasmplug.plugin.greeter"


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == PLUGIN_LOGGER and r.levelno == level
    ]


@pytest.mark.parametrize(
    ("line", "pieces"),
    # (wasmtime hands the stdout callback at most 8,192 bytes of one guest write)
    [("x" * 8000, ["x" * 4096, "x" * 3904]), ("é" * 3000, ["é" * 2048, "é" * 952])],
    ids=["ascii", "two-byte-chars"],
)
def test_long_guest_lines_are_cut_on_a_real_guest(
    load_greeter: Callable[..., Plugin],
    caplog: pytest.LogCaptureFixture,
    line: str,
    pieces: list[str],
) -> None:
    """A componentize-py guest prints one long line (newline-terminated, in one write)."""
    plugin = load_greeter()
    caplog.set_level(logging.INFO, logger=PLUGIN_LOGGER)
    assert plugin.call("print-stdout", line) is None
    for level in (logging.INFO, logging.WARNING):  # stdout, stderr
        records = _records(caplog, level)
        assert records == pieces
        assert all(len(r.encode()) <= MAX_LINE_BYTES for r in records)


def _collect(**kwargs: object) -> tuple[GuestOutput, list[str]]:
    logger = logging.getLogger("wasmplug.test.stdio")
    out: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())

    logger.handlers[:] = [Handler()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return GuestOutput(logger, logging.INFO, **kwargs), out  # type: ignore[arg-type]


def test_unterminated_output_is_cut_as_it_grows() -> None:
    sink, out = _collect()
    for _ in range(10):
        sink(b"y" * 1000)  # 10,000 bytes, no newline, in small writes
    assert out == ["y" * 4096, "y" * 4096]
    sink.flush()
    assert out[-1] == "y" * 1808


def test_cut_never_splits_a_character() -> None:
    sink, out = _collect()
    sink(b"a" * 4095 + "€".encode() + b"\n")  # the euro sign straddles byte 4096
    assert out == ["a" * 4095, "€"]
    assert "\ufffd" not in "".join(out)


def test_many_long_lines_are_rate_limited() -> None:
    sink, out = _collect(max_lines=5)
    sink((b"z" * 9000 + b"\n") * 100)
    assert len(out) == 5
    assert all(len(r) <= MAX_LINE_BYTES for r in out)
