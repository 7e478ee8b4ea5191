"""No silent skips in CI: a pytest plugin, registered by ``tests/conftest.py``.

In CI (``CI=true``) a skipped test is reported as a failure unless its node id starts with an
entry of :data:`SKIP_ALLOWLIST`, which says why it may skip. Outside CI a skip stays a skip (a
developer's machine may lack tmux or node); in CI, ``scripts/test.sh`` installs everything the
suite needs. Expected failures (``xfail``) are not skips and are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: node-id prefix -> the reason this test may skip even in CI.
SKIP_ALLOWLIST: dict[str, str] = {
    "docs/": 'a guide\'s code block preceded by a `% skip: next "why"` marker in the page '
    "(a fragment or top-level await); the reason is written next to the block",
}


def in_ci() -> bool:
    """True when the ``CI`` environment variable says this run is CI."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Turn an unexpected skip into a failure that names the fix."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    if any(item.nodeid.startswith(allowed) for allowed in SKIP_ALLOWLIST):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"unexpected skip in CI ({reason}); install what the test needs in scripts/test.sh, "
        "or add the test to SKIP_ALLOWLIST in tests/support/skip_policy.py with a reason"
    )
