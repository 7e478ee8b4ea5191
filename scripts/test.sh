#!/usr/bin/env bash
# The README's test command: installs everything the suite needs, then runs it.
# Works on a fresh machine with Python 3.11 and pip: Python packages come from
# PyPI (the dev extra); Debian packages (tmux for the terminal smoke test,
# docker-registry (CNCF distribution 2.8) for the OCI distribution tests, node
# and npm for the componentize-js plugin) are installed when missing; the test
# plugins are built on first use into the user cache dir (not the clone).
# In CI (CI=true) a skipped test fails the run (tests/support/skip_policy.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"

# command -> Debian package(s) that provide it
declare -A NEEDED=([tmux]=tmux [node]=nodejs [npm]=npm [docker-registry]=docker-registry)
missing=()
for cmd in "${!NEEDED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing from Debian: ${missing[*]}"
        (apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null) \
            || echo "note: could not install ${missing[*]}; tests that need them will skip (and fail in CI)"
    else
        echo "note: missing ${missing[*]}; tests that need them will skip (and fail in CI)"
    fi
fi
exec python -m pytest "$@"
