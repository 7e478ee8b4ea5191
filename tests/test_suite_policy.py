"""The suite's own rules: no silent skips in CI, no lost thread exceptions, a deadline per test."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SKIPPING = """
import pytest

def test_skips():
    pytest.skip("tool missing")

@pytest.mark.xfail(strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_skip_fails_the_run_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest("-p", "support.skip_policy")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*unexpected skip in CI (Skipped: tool missing)*"])


def test_a_skip_stays_a_skip_outside_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest("-p", "support.skip_policy")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)


def test_an_allow_listed_skip_is_allowed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support import skip_policy

    monkeypatch.setenv("CI", "true")
    monkeypatch.setitem(
        skip_policy.SKIP_ALLOWLIST,
        "test_an_allow_listed_skip_is_allowed.py",
        "test of the allow-list",
    )
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest_inprocess("-p", "support.skip_policy")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)


THREAD_RAISES = """
import threading

def test_starts_a_failing_thread():
    t = threading.Thread(target=lambda: 1 / 0)
    t.start()
    t.join()
"""


def test_an_exception_in_a_test_thread_fails_the_test(pytester: pytest.Pytester) -> None:
    """The suite's own filterwarnings (pyproject.toml) make a lost thread exception fatal."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "error::pytest.PytestUnhandledThreadExceptionWarning" in config["filterwarnings"]
    pytester.makepyfile(THREAD_RAISES)
    args = [f"-W{w}" for w in config["filterwarnings"]]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ZeroDivisionError*"])


def test_every_test_has_a_deadline() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(config["timeout"]) <= 900
