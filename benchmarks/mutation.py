"""Mutation score of wasmplug's security-critical modules (mutmut), written to mutation.md.

Not part of CI: it is slow (minutes per module on 2 cores). For each target it copies the
repository's ``src/``, ``tests/`` and ``pyproject.toml`` into a temporary directory, runs
``mutmut run`` there with only that module mutated and only that module's own tests
selected, and reads the per-mutant results with ``mutmut results --all true``.

Usage::

    python benchmarks/mutation.py                    # every target; rewrites mutation.md
    python benchmarks/mutation.py signing urlpattern # some targets (prints, keeps the file)
    python benchmarks/mutation.py --keep DIR ...     # keep the work tree (inspect survivors
                                                     # with `cd DIR/NAME && mutmut show X`)

Needs ``pip install mutmut`` (3.x). The goal (the test-evidence issue): at least 85% of
mutants killed in every module.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (module file under src/, its own tests, a note on what it is)
TARGETS: dict[str, tuple[str, list[str], str]] = {
    "signing": (
        "src/wasmplug/_trust/signing.py",
        ["tests/trust/test_signing.py"],
        "wasmsign2 signatures: parse, sign, verify",
    ),
    "trust-store": (
        "src/wasmplug/_trust/store.py",
        ["tests/trust/test_trust.py"],
        "trusted keys, scopes, revocation, the trust decision",
    ),
    "grants": (
        "src/wasmplug/_sandbox/grants.py",
        ["tests/sandbox/test_grants.py", "tests/sandbox/test_permissions.py"],
        "declared x granted -> the effective sandbox",
    ),
    "urlpattern": (
        "src/wasmplug/_sandbox/urlpattern.py",
        ["tests/sandbox/test_urlpattern.py"],
        "Spin-syntax outbound host patterns",
    ),
    "manifest": (
        "src/wasmplug/_sandbox/manifest.py",
        ["tests/sandbox/test_manifest.py"],
        "the manifest validator",
    ),
    "registry": (
        "src/wasmplug/_trust/registry.py",
        ["tests/trust/"],
        "install checks: names, rollback, version conflicts",
    ),
}

STATUS_LINE = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+):\s*(?P<status>[\w ]+?)\s*$")


def run_target(name: str, work: Path) -> Counter[str]:
    """Run mutmut on one target in ``work/name``; return the count of mutants per status."""
    module, tests, _ = TARGETS[name]
    tree = work / name
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    shutil.copytree(ROOT / "src", tree / "src")
    shutil.copytree(ROOT / "tests", tree / "tests")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    # mutmut 3 reads setup.cfg when pyproject.toml has no [tool.mutmut].
    selection = "\n    ".join([*tests, "-x", "-q", "-p", "no:cacheprovider", "-p", "no:timeout"])
    (tree / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = src/\n"
        f"only_mutate = {module}\n"
        f"pytest_add_cli_args_test_selection =\n    {selection}\n"
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", "2"],
        cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"mutmut run failed for {name}")
    results = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=tree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    counts: Counter[str] = Counter()
    for line in results.stdout.splitlines():
        m = STATUS_LINE.match(line)
        if m:
            counts[m["status"]] += 1
    print(f"{name}: {dict(counts)} in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return counts


def score(counts: Counter[str]) -> tuple[int, int, float]:
    """(killed, total, percent): timeouts count as killed, skipped/no-tests as survivors."""
    killed = counts["killed"] + counts["timeout"]
    total = sum(counts.values())
    return killed, total, 100.0 * killed / total if total else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"some of: {', '.join(TARGETS)}")
    parser.add_argument("--keep", type=Path, help="work directory to keep")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    names = args.targets or list(TARGETS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="wasmplug-mutation-"))
    rows = []
    try:
        for name in names:
            killed, total, pct = score(run_target(name, work))
            module, _, what = TARGETS[name]
            rows.append(f"| `{module.removeprefix('src/')}` | {what} | {killed} / {total} | "
                        f"{pct:.1f}% |")  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    table = "\n".join(["| module | what | killed / mutants | score |",
                       "| --- | --- | --- | --- |", *rows])  # fmt: skip
    print(table)
    if not args.targets:
        print("copy the rows into benchmarks/mutation.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
