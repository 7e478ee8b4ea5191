"""The CI skip policy (tests/support/skip_policy.py) turns unexpected skips into failures."""

from __future__ import annotations

import pytest

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
