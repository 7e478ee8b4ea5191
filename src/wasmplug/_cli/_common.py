"""What every command module shares: the exit codes and :class:`UsageError`.

Kept apart from :mod:`wasmplug._cli.main` so that command modules need not import the
entry point that imports them (no cycle).
"""

from __future__ import annotations

__all__ = [
    "EXIT_ERR_RESULT",
    "EXIT_FAULT",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_REGISTRY",
    "EXIT_USAGE",
    "UsageError",
]

EXIT_OK = 0
"""Success."""
EXIT_INTERNAL = 1
"""An unexpected internal error (a bug)."""
EXIT_USAGE = 2
"""Bad flags, bad JSON, unknown export, wrong argument types."""
EXIT_REFUSED = 3
"""The component was not loaded or installed (invalid, untrusted, bad manifest, imports)."""
EXIT_FAULT = 4
"""The plugin faulted (trap, timeout, fuel, resource limit, host function error)."""
EXIT_ERR_RESULT = 5
"""The export returned ``err(E)``."""
EXIT_REGISTRY = 6
"""An OCI registry failed: unreachable, refused, not found, digest mismatch."""


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""
