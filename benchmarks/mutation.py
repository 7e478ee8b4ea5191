"""Mutation score of wasmplug's security-critical modules (mutmut), reported in mutation.md.

Not part of CI: it is slow (5-20 minutes per module on 2 busy cores). For each target it
copies the repository's ``src/``, ``tests/`` and ``pyproject.toml`` into a temporary
directory, runs ``mutmut run`` there with only that module mutated and only that module's
own tests selected, and reads the per-mutant results with ``mutmut results --all true``.
It prints one table row per target (copy them into mutation.md) and the survivors' names.

Usage::

    python benchmarks/mutation.py                    # every target
    python benchmarks/mutation.py signing urlpattern # some targets
    python benchmarks/mutation.py --keep DIR ...     # keep the work tree (inspect survivors
                                                     # with `cd DIR/NAME && mutmut show X`)

To re-check survivors after adding tests, copy the test file into ``DIR/NAME/tests/...``
and run ``mutmut run NAME1 NAME2 ...`` in ``DIR/NAME``: mutmut maps the new tests, runs only
the named mutants and keeps every other verdict.

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
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (module file under src/, its own tests, a note on what it is)
#:
#: Each selection holds only fast unit tests that exercise the module: no componentize-py
#: builds, no subprocesses, no sleeps. mutmut then runs, for each mutant, only the tests of
#: the selection that called the mutated function (its stats pass records them).
TARGETS: dict[str, tuple[str, list[str], str]] = {
    "signing": (
        "src/wasmplug/_trust/signing.py",
        [
            "tests/trust/test_signing.py",
            # the signing parsers' fuzz tests: every failure is a typed error
            "tests/trust/test_fuzz_parsers.py::test_signature_payload_bytes",
            "tests/trust/test_fuzz_parsers.py::test_signature_payload_structure",
            "tests/trust/test_fuzz_parsers.py::test_signature_mutations",
            "tests/trust/test_fuzz_parsers.py::test_key_readers",
        ],
        "wasmsign2 parse, sign, verify",
    ),
    "keys": (
        "src/wasmplug/_trust/keys.py",
        [
            "tests/trust/test_signing.py",
            "tests/trust/test_fuzz_parsers.py::test_key_readers",
        ],
        "Ed25519 key files (raw, PEM, DER, OpenSSH) and their ids",
    ),
    "trust-store": (
        "src/wasmplug/_trust/store.py",
        [
            "tests/trust/test_trust.py",
            "tests/trust/test_revocation.py",
            "tests/trust/test_stores.py::test_unparsable_files_raise_the_store_error",
            "tests/trust/test_stores.py::test_trust_store_fields_are_type_checked",
            "tests/trust/test_stores.py::test_scopes_given_as_a_string_in_code_are_refused",
        ],
        "trusted keys, scopes, revocation",
    ),
    "grants": (
        "src/wasmplug/_sandbox/grants.py",
        # not test_permissions.py / test_grant_identity.py: they load componentize-py plugins
        ["tests/sandbox/test_grants.py", "tests/sandbox/test_capabilities.py"],
        "declared x granted",
    ),
    "urlpattern": (
        "src/wasmplug/_sandbox/urlpattern.py",
        ["tests/sandbox/test_urlpattern.py"],
        "Spin-syntax outbound host patterns",
    ),
    "manifest": (
        "src/wasmplug/_sandbox/manifest.py",
        [
            "tests/sandbox/test_manifest.py",
            # the manifest parser's fuzz tests: every failure is a ManifestError
            "tests/trust/test_fuzz_parsers.py::test_manifest_text",
            "tests/trust/test_fuzz_parsers.py::test_manifest_bytes",
            "tests/trust/test_fuzz_parsers.py::test_manifest_structure",
            "tests/trust/test_fuzz_parsers.py::test_manifest_mutations",
            "tests/trust/test_fuzz_parsers.py::test_deeply_nested_manifest",
            "tests/trust/test_fuzz_parsers.py::test_huge_manifest_is_refused_before_parsing",
            "tests/trust/test_fuzz_parsers.py::test_messages_about_outside_values_are_bounded",
        ],
        "the manifest validator",
    ),
    "registry": (
        "src/wasmplug/_trust/registry.py",
        [
            # not test_registry_crash.py: it kills child processes mid-install (slow, sleeps)
            "tests/trust/test_registry.py",
            "tests/trust/test_registry_discovery.py",
            "tests/trust/test_registry_refusals.py",
            "tests/trust/test_stores.py::test_registry_index_fields_are_type_checked",
            "tests/trust/test_stores.py::test_registry_get_parses_the_index_once",
            "tests/trust/test_trust.py::test_install_then_load_installed",
        ],
        "rollback and conflict checks",
    ),
}

#: Per-mutant deadline, in wall seconds: (the mutant's tests' clean duration + constant) x
#: multiplier (and twice that in CPU seconds). mutmut's defaults (1 s, x15) let a looping
#: mutant burn a core for a minute or more. A tight first pass, then the mutants that timed
#: out run again with a generous deadline: on a loaded machine a slow surviving mutant can
#: miss the tight one, and a timeout counts as killed. (mutmut re-runs only the timed-out
#: mutants when just the timeout settings change.)
TIMEOUTS = [(3.0, 5.0), (30.0, 5.0)]

STATUS_LINE = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+):\s*(?P<status>[\w ]+?)\s*$")


def run_target(name: str, work: Path) -> tuple[Counter[str], float]:
    """Run mutmut on one target in ``work/name``: (mutants per status, wall seconds).

    Prints the survivors' names (``mutmut show NAME`` in ``work/name`` shows each diff).
    """
    module, tests, _ = TARGETS[name]
    tree = work / name
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    shutil.copytree(ROOT / "src", tree / "src")
    shutil.copytree(ROOT / "tests", tree / "tests")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    log = work / f"{name}.log"
    log.write_text("")
    print(f"{name}: mutmut output in {log}", file=sys.stderr)
    start = time.monotonic()
    for constant, multiplier in TIMEOUTS:
        if constant != TIMEOUTS[0][0] and "timeout" not in _statuses(tree).values():
            break  # nothing to re-check
        # mutmut 3 reads setup.cfg when pyproject.toml has no [tool.mutmut].
        selection = "\n    ".join(tests)
        (tree / "setup.cfg").write_text(
            "[mutmut]\n"
            "source_paths = src/\n"
            f"only_mutate = {module}\n"
            f"pytest_add_cli_args_test_selection =\n    {selection}\n"
            # every run (stats, clean, each mutant): no cache files shared between mutants
            "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n"
            # Fork each mutant's run from a server that never ran a test. mutmut's default
            # forks from the process that ran them all, where wasmtime's compile thread
            # pool (rayon) already exists: a fork keeps none of its threads, so the first
            # Wasm compile in the child waits forever, and the mutant "times out" (killed).
            "process_isolation = forkserver\n"
            f"timeout_constant = {constant}\n"
            f"timeout_multiplier = {multiplier}\n"
        )
        with log.open("a") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "mutmut", "run", "--max-children", "2"],
                cwd=tree, stdout=out, stderr=subprocess.STDOUT, text=True, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"mutmut run failed for {name}")
    elapsed = time.monotonic() - start
    statuses = _statuses(tree)
    counts = Counter(statuses.values())
    survivors = [m for m, status in statuses.items() if status not in ("killed", "timeout")]
    print(f"{name}: {dict(counts)} in {elapsed / 60:.0f} min", file=sys.stderr)
    for mutant in survivors:
        print(f"  {mutant}", file=sys.stderr)
    return counts, elapsed


def _statuses(tree: Path) -> dict[str, str]:
    """Mutant name -> mutmut's status (killed, survived, timeout, no tests...)."""
    results = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=tree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {
        m["name"]: m["status"] for m in map(STATUS_LINE.match, results.stdout.splitlines()) if m
    }


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
            counts, elapsed = run_target(name, work)
            killed, total, pct = score(counts)
            module, _, what = TARGETS[name]
            run = f"{date.today().isoformat()}, {elapsed / 60:.0f} min"
            path = module.removeprefix("src/wasmplug/")
            rows.append(f"| `{path}` | {what} | {killed} / {total} | {pct:.1f}% | {run} |")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    table = "\n".join(["| module | what | killed / mutants | score | run |",
                       "| --- | --- | --- | --- | --- |", *rows])  # fmt: skip
    print(table)
    if not args.targets:
        print("copy the rows into benchmarks/mutation.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
