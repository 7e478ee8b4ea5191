"""Every exception wasmplug raises, in one place.

The hierarchy says whose fault a failure was, in the manner of trio's
``ClosedResourceError`` ("you closed it") versus ``BrokenResourceError``
("it broke")::

    WasmplugError                       root: catch this to catch every wasmplug failure
    ├── ManifestError (ValueError)      the manifest is malformed; lists every problem at once
    ├── HostInterfaceError (ValueError) provide(): invalid WIT, or the implementation lacks part
    ├── LoadError                       a component could not be turned into a Plugin
    │   ├── InvalidComponentError (ValueError)  not a valid component binary / WAT
    │   ├── UnsignedPluginError         also a SignatureMissingError, see below
    │   ├── LinkError                   imports that are missing, undeclared or not granted
    │   ├── InstantiationError          start-up failed (start code trapped, limits too low)
    │   └── PluginNotFoundError (LookupError)  no installed or discoverable plugin by that name
    ├── InstallRefusedError             a registry rule refused an install (force=True overrides)
    │   ├── RollbackError               lower than the highest version seen
    │   ├── VersionConflictError        same version, different bytes
    │   └── NameConflictError           the name belongs to another publisher
    ├── CapabilityError                 a grant names something the host cannot honour
    ├── WitTypeError (TypeError)        a value does not have the WIT type's Python shape
    ├── WitValueError (ValueError)      a value has the right shape but is out of range
    ├── CacheError                      the compile cache directory is unusable
    ├── TrustStoreError                 the trust store file cannot be read or parsed
    ├── GrantStoreError                 the grant store (remembered answers) is unreadable
    ├── GrantPolicyError (ValueError)   the application's grants file is invalid (every problem)
    ├── RegistryError                   the plugin registry's index cannot be read or parsed
    ├── BuildError                      building a component from source failed
    ├── DistributionError               an OCI registry could not give or take an artifact
    │   ├── InvalidReferenceError (ValueError)  not an OCI reference / package name we can map
    │   ├── RegistryUnavailableError    unreachable: refused, DNS, TLS, timeout, 5xx after retries
    │   ├── RegistryAuthError           401/403: credentials missing, wrong, or not allowed
    │   ├── ArtifactNotFoundError (LookupError)  404: no such repository, tag or digest
    │   ├── DigestMismatchError         the bytes served do not hash to the digest asked for
    │   ├── ArtifactFormatError (ValueError)  not a Wasm OCI artifact, malformed, or too large
    │   └── LockfileError               wasmplug.lock is malformed, or a registry differs from it
    ├── SignatureError                  a wasmsign2 signature could not be made, read or trusted
    │   ├── SignatureMissingError       the binary (or detached signature) holds no signature
    │   │   └── UnsignedPluginError (LoadError)  ...when loading/installing without allow_unsigned
    │   ├── SignatureInvalidError       none verifies: wrong key, tampered bytes, malformed data
    │   │   └── SignatureFormatError    the signature section itself is malformed (parse error)
    │   ├── UntrustedKeyError           a signature verifies, but with a key that is not trusted
    │   ├── RevokedError                the signer's key or the component digest is revoked
    │   └── KeyFormatError (ValueError) key bytes are not a supported Ed25519 key encoding
    └── PluginError                     a call into a plugin did not return a value
        ├── ErrorResult                 the export returned ``err(E)``; ``.value`` is E (no fault)
        ├── PluginClosedError           you closed the plugin or its host ("you closed it")
        ├── PluginQuarantinedError      the restart policy gave up; calls fail fast until reset()
        ├── ReentrantCallError          a host function called back into the same plugin
        ├── StaleResourceError          a resource handle outlived the instance that made it
        └── PluginFault                 the instance broke and was discarded ("it broke")
            ├── PluginTrapped           guest trap: unreachable, out-of-bounds, stack overflow...
            ├── PluginTimeout           the per-call epoch deadline passed (Limits.timeout_ms)
            ├── PluginInterrupted       Ctrl-C ended the call (the caller gets KeyboardInterrupt)
            ├── FuelExhausted           the per-call fuel budget ran out (Limits.fuel)
            ├── ResourceLimitExceeded   memory/table limit hit and the guest gave up
            │   └── ResultTooLarge      a lifted result exceeded Limits.max_result_bytes
            ├── HostFunctionError       a host function the app provided raised; see __cause__
            └── PluginCrashed           the worker process died (isolation="process")

Every :class:`PluginError` carries ``.plugin`` (the plugin's name) and
``.export`` (the WIT export name, or ``None``); they are attached in one place,
around every call, by the plugin's call context. Low-level causes
(``wasmtime.WasmtimeError``) are kept in ``__cause__`` and never raised bare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ArtifactFormatError",
    "ArtifactNotFoundError",
    "BuildError",
    "CacheError",
    "CapabilityError",
    "DigestMismatchError",
    "DistributionError",
    "ErrorResult",
    "FuelExhausted",
    "GrantPolicyError",
    "GrantStoreError",
    "HostFunctionError",
    "HostInterfaceError",
    "InstallRefusedError",
    "InstantiationError",
    "InvalidComponentError",
    "InvalidReferenceError",
    "KeyFormatError",
    "LinkError",
    "LoadError",
    "LockfileError",
    "ManifestError",
    "NameConflictError",
    "PluginClosedError",
    "PluginCrashed",
    "PluginError",
    "PluginFault",
    "PluginInterrupted",
    "PluginNotFoundError",
    "PluginQuarantinedError",
    "PluginTimeout",
    "PluginTrapped",
    "ReentrantCallError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailableError",
    "ResourceLimitExceeded",
    "ResultTooLarge",
    "RevokedError",
    "RollbackError",
    "SignatureError",
    "SignatureFormatError",
    "SignatureInvalidError",
    "SignatureMissingError",
    "StaleResourceError",
    "TrustStoreError",
    "UnsignedPluginError",
    "UntrustedKeyError",
    "VersionConflictError",
    "WasmplugError",
    "WitTypeError",
    "WitValueError",
]


class WasmplugError(Exception):
    """Root of every exception raised by wasmplug."""


class ManifestError(WasmplugError, ValueError):
    """A plugin manifest (``wasmplug.toml``) is invalid.

    All problems are collected before raising, so one run shows every fix
    needed.

    Attributes:
        source: Where the manifest came from (a path, or ``"<embedded>"``).
        problems: One ``"key: message"`` string per problem, in file order.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid manifest {source}: {count} {noun}\n{lines}")


class HostInterfaceError(WasmplugError, ValueError):
    """``PluginHost.provide`` was given WIT that does not parse or does not define the
    interface, or an implementation that lacks something the WIT defines.

    The application's fault, found when it provides the interface, before any
    plugin is loaded.

    Attributes:
        source: The WIT source (a path, ``"<text>"``) or the interface name.
        problems: One message per problem (wasm-tools' own lines for invalid WIT).
    """

    __module__ = "wasmplug"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"cannot provide {source}:\n{lines}")


class LoadError(WasmplugError):
    """A component could not be loaded as a plugin."""


class InvalidComponentError(LoadError, ValueError):
    """The bytes are not a valid WebAssembly component (or WAT text)."""


class LinkError(LoadError):
    """The component's imports cannot be satisfied under the current grants.

    Attributes:
        problems: One message per offending import, each naming the interface
            or function and why it was refused (not provided, not declared in
            the manifest, not granted, or a signature mismatch).
    """

    def __init__(self, plugin: str, problems: Sequence[str]) -> None:
        self.plugin = plugin
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"cannot link plugin {plugin!r}:\n{lines}")


class InstantiationError(LoadError):
    """Instantiating the component failed (its start code trapped, or a limit is too low)."""


class CapabilityError(WasmplugError):
    """A grant or policy cannot be applied (for example a preopen's host directory is missing)."""


class WitTypeError(WasmplugError, TypeError):
    """A Python value does not have the shape its WIT type needs.

    The message names the function, the parameter (or field path) and the
    WIT type, for example ``add: parameter 'a' expects s32 (int), got str``.
    """


class WitValueError(WasmplugError, ValueError):
    """A Python value has the right shape but is outside its WIT type's range."""


class CacheError(WasmplugError):
    """The compile cache directory is unusable (not private, not writable)."""


class BuildError(WasmplugError):
    """Building a component from source (componentize-py, jco) failed.

    Attributes:
        output: The tool's combined stdout/stderr, for display.
    """

    def __init__(self, message: str, output: str = "") -> None:
        self.output = output
        super().__init__(message if not output else f"{message}\n{output}")


class PluginError(WasmplugError):
    """A call into a plugin did not produce a return value.

    Attributes:
        plugin: The plugin's name, or ``None`` if not yet known.
        export: The export being called (WIT name), or ``None``.
    """

    plugin: str | None = None
    export: str | None = None

    def __str__(self) -> str:
        base = super().__str__()
        where = []
        if self.plugin is not None:
            where.append(f"plugin {self.plugin!r}")
        if self.export is not None:
            where.append(f"export {self.export!r}")
        return f"{', '.join(where)}: {base}" if where else base


class ErrorResult(PluginError):
    """The export returned the ``err`` case of its ``result<T, E>`` return type.

    This is the plugin answering "no", not a fault: the instance is kept.

    Attributes:
        value: The error payload, converted to Python (``None`` for ``result<T>``).
    """

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(f"returned err({value!r})")


class PluginClosedError(PluginError):
    """The plugin (or its host) was closed by the application before this call."""


class PluginQuarantinedError(PluginError):
    """Too many faults in the restart policy's window; calls fail fast until ``reset()``."""


class ReentrantCallError(PluginError):
    """A host function tried to call back into the plugin that is calling it.

    Component instances are not re-entrant (Component Model), so this is
    refused instead of deadlocking or poisoning the instance.
    """


class StaleResourceError(PluginError, ValueError):
    """A resource handle was used after the instance that created it was discarded."""


class PluginFault(PluginError):
    """The plugin instance broke during the call and has been discarded.

    The next call runs on a fresh instance (subject to the restart policy).

    Attributes:
        fault: Short fault class name (``"trap"``, ``"timeout"``, ``"fuel"``,
            ``"resource-limit"``, ``"host-function"``).
        wasm_backtrace: The guest backtrace reported by wasmtime, or ``""``.
        guest_stderr: The tail of what the instance wrote to stderr during the
            call (e.g. a componentize-py guest's Python traceback), or ``""``.
    """

    fault: str = "fault"

    guest_stderr: str = ""

    def __init__(self, message: str, *, wasm_backtrace: str = "") -> None:
        self.wasm_backtrace = wasm_backtrace
        super().__init__(message)


class PluginTrapped(PluginFault):
    """The guest trapped (unreachable, out-of-bounds access, stack overflow, panic...).

    Attributes:
        trap: The trap description from wasmtime, e.g.
            ``"wasm `unreachable` instruction executed"``.
    """

    fault = "trap"

    def __init__(self, trap: str, *, wasm_backtrace: str = "") -> None:
        self.trap = trap
        super().__init__(f"trapped: {trap}", wasm_backtrace=wasm_backtrace)


class PluginTimeout(PluginFault):
    """The call ran past its epoch deadline (``Limits.timeout_ms``)."""

    fault = "timeout"


class PluginInterrupted(PluginFault):
    """The call was cut short from outside: Ctrl-C, or a caller that stopped waiting.

    The caller itself gets the ``KeyboardInterrupt`` (or whatever the
    application's SIGINT handler raised); this fault is what the plugin's
    metrics count (``"interrupted"``), and it does not count towards quarantine.
    """

    __module__ = "wasmplug"
    fault = "interrupted"


class FuelExhausted(PluginFault):
    """The call consumed its whole fuel budget (``Limits.fuel``)."""

    fault = "fuel"


class ResourceLimitExceeded(PluginFault):
    """A memory or table limit was hit and the guest could not continue."""

    fault = "resource-limit"


class ResultTooLarge(ResourceLimitExceeded):
    """A value lifted out of the guest (a call's result, or a host function's
    arguments) exceeded ``Limits.max_result_bytes``; the instance was discarded."""

    __module__ = "wasmplug"
    fault = "result-size"


class HostFunctionError(PluginFault):
    """A host function provided by the application raised; the exception is ``__cause__``."""

    fault = "host-function"


class PluginCrashed(PluginFault):
    """The worker process running the plugin died during the call (``isolation="process"``).

    It crashed (a signal such as ``SIGSEGV``), was killed (``SIGKILL`` from
    outside, or by the host because the worker broke the wire protocol), or
    exited. The next call runs in a fresh worker, subject to the restart policy.

    Attributes:
        signal: The signal number that ended the worker, or ``None``.
        exit_code: The worker's exit status if it exited, or ``None``.
    """

    __module__ = "wasmplug"
    fault = "crash"

    def __init__(
        self, message: str, *, signal: int | None = None, exit_code: int | None = None
    ) -> None:
        self.signal = signal
        self.exit_code = exit_code
        super().__init__(message)


class SignatureError(WasmplugError):
    """A wasmsign2 signature could not be created, read or trusted."""


class SignatureMissingError(SignatureError):
    """The binary has no ``signature`` section (or the detached signature holds none).

    Raised by the signing functions (``verify``, ``detach``). When a plugin is
    loaded or installed, the same condition is an :class:`UnsignedPluginError`,
    which is also this class: ``except SignatureError`` catches every trust
    failure, unsigned included.
    """


class UnsignedPluginError(SignatureMissingError, LoadError):
    """The plugin carries no signature and ``allow_unsigned=True`` was not given.

    A :class:`SignatureMissingError` (the file is unsigned) and a
    :class:`LoadError` (so the plugin was not loaded).
    """


class SignatureInvalidError(SignatureError):
    """No signature verifies with the given key.

    The message names the key id (hex) and the reason: signed only by other
    keys, content modified after signing, a bad signature, or malformed
    signature data.
    """


class SignatureFormatError(SignatureInvalidError):
    """The ``signature`` section (or a detached signature) cannot be parsed.

    The bytes are not the wasmsign2 layout: an unsupported version, a
    truncated or oversized field, more hashes or signatures than the format's
    limits, or a record of the wrong size.
    """


class UntrustedKeyError(SignatureError):
    """A signature is valid, but the key that made it is not trusted."""


class KeyFormatError(SignatureError, ValueError):
    """Key bytes are not a supported Ed25519 encoding (wasmsign2 raw, PEM/DER or OpenSSH)."""


class RevokedError(SignatureError):
    """The component's digest, or the key that signed it, is on the revocation list."""


class TrustStoreError(WasmplugError):
    """The trust store file exists but cannot be read or parsed (or a field has the
    wrong type). The message names the file and the field."""


class GrantStoreError(WasmplugError):
    """The grant store (remembered permission answers) exists but cannot be read or
    parsed. The message names the file and the field."""


class GrantPolicyError(WasmplugError, ValueError):
    """The application's grants file (:meth:`GrantPolicy.from_toml`) is invalid.

    Attributes:
        source: The file.
        problems: One ``"key: message"`` string per problem.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid grants file {source}: {count} {noun}\n{lines}")


class RegistryError(WasmplugError):
    """The plugin registry's ``index.json`` cannot be read or parsed.

    The registry refuses to change anything until the file is fixed or removed,
    so a damaged index is never overwritten with a partial one.
    """


class InstallRefusedError(WasmplugError):
    """A registry rule refused an install; ``force=True`` (``--force``) overrides it.

    Not a :class:`LoadError`: nothing was being loaded, and the file itself
    may be fine.
    """


class RollbackError(InstallRefusedError):
    """Install refused: the version is lower than the highest one installed of that name.

    Rollback protection: the registry remembers the highest version it has
    installed per plugin name (even after ``remove``), so an old, possibly
    vulnerable release cannot silently replace a newer one. Pass ``force=True``
    (``wasmplug install --force``) to downgrade deliberately.
    """


class VersionConflictError(InstallRefusedError):
    """Install refused: that version is already installed with different bytes (sha256).

    A version number must name one build. Bump the version, or pass
    ``force=True`` to replace the installed build.
    """


class NameConflictError(InstallRefusedError):
    """Install refused: the plugin name is already held by another publisher key.

    Raised when a signed plugin would take over a name installed from a
    different key (or an unsigned build would replace a signed one), and when
    a plugin name resolves to several different files of the same version.
    """


class PluginNotFoundError(LoadError, LookupError):
    """No installed (or discoverable) plugin matches the requested name and version."""


class DistributionError(WasmplugError):
    """An OCI registry could not give or take an artifact (push, pull, install, sync).

    Nothing was installed when this is raised. The message names the registry
    and the reference. Trust never depends on the registry: what it serves is
    still verified (digest, signature, scope, rollback) before install.
    """


class InvalidReferenceError(DistributionError, ValueError):
    """A string is not an OCI reference (``[oci://]host[:port]/repo[:tag][@sha256:HEX]``)
    nor a package name (``ns:name[@spec]``) whose namespace is mapped to a registry."""


class RegistryUnavailableError(DistributionError):
    """The registry could not be reached, or kept failing, after the retries.

    Connection refused, DNS failure, TLS failure, timeouts, and HTTP 429/5xx
    answers that persisted through every retry with backoff.
    """


class RegistryAuthError(DistributionError):
    """The registry refused access (HTTP 401/403): no credentials, wrong ones, or too few rights."""


class ArtifactNotFoundError(DistributionError, LookupError):
    """The registry has no such repository, tag or digest (HTTP 404), or no tag matches."""


class DigestMismatchError(DistributionError):
    """The bytes a registry served do not hash to the digest that was asked for.

    The content was tampered with in the registry or on the way. Nothing is
    cached or installed.
    """


class ArtifactFormatError(DistributionError, ValueError):
    """The manifest is not a Wasm OCI artifact (CNCF TAG-Runtime layout), is malformed,
    or declares a blob larger than the configured maximum."""


class LockfileError(DistributionError):
    """``wasmplug.lock`` is malformed, or what a registry serves differs from what it pins."""
