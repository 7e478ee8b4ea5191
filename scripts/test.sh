#!/usr/bin/env bash
# The README's test command: installs everything the suite needs, then runs it.
# Works on a fresh machine with Python 3.11 and pip: Python packages come from
# PyPI (the dev extra), tmux from Debian for the terminal smoke test, and the
# test plugins are built on first use into the user cache dir (not the clone).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
if ! command -v tmux >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && apt-get install -y -qq tmux >/dev/null) \
            || echo "note: could not install tmux; the terminal smoke test will be skipped"
    else
        echo "note: tmux is missing; the terminal smoke test will be skipped"
    fi
fi
exec python -m pytest "$@"
