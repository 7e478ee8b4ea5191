"""wasmplug: load third-party extensions as sandboxed WebAssembly components.

>>> from wasmplug import PluginHost
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from wasmplug._bridge.callctx import current_plugin as current_plugin
from wasmplug._bridge.resources import Resource as Resource
from wasmplug._bridge.values import Err as Err
from wasmplug._bridge.values import Ok as Ok
from wasmplug._bridge.values import Some as Some
from wasmplug._bridge.values import Variant as Variant
from wasmplug._distribution.operations import PullResult as PullResult
from wasmplug._distribution.operations import PushResult as PushResult
from wasmplug._distribution.operations import pull_plugin as pull_plugin
from wasmplug._distribution.operations import push_plugin as push_plugin
from wasmplug._errors import ArtifactFormatError as ArtifactFormatError
from wasmplug._errors import ArtifactNotFoundError as ArtifactNotFoundError
from wasmplug._errors import BuildError as BuildError
from wasmplug._errors import CacheError as CacheError
from wasmplug._errors import CapabilityError as CapabilityError
from wasmplug._errors import DigestMismatchError as DigestMismatchError
from wasmplug._errors import DistributionError as DistributionError
from wasmplug._errors import ErrorResult as ErrorResult
from wasmplug._errors import FuelExhausted as FuelExhausted
from wasmplug._errors import GrantPolicyError as GrantPolicyError
from wasmplug._errors import GrantStoreError as GrantStoreError
from wasmplug._errors import HostFunctionError as HostFunctionError
from wasmplug._errors import HostInterfaceError as HostInterfaceError
from wasmplug._errors import InstallRefusedError as InstallRefusedError
from wasmplug._errors import InstantiationError as InstantiationError
from wasmplug._errors import InvalidComponentError as InvalidComponentError
from wasmplug._errors import InvalidReferenceError as InvalidReferenceError
from wasmplug._errors import KeyFormatError as KeyFormatError
from wasmplug._errors import LinkError as LinkError
from wasmplug._errors import LoadError as LoadError
from wasmplug._errors import LockfileError as LockfileError
from wasmplug._errors import ManifestError as ManifestError
from wasmplug._errors import NameConflictError as NameConflictError
from wasmplug._errors import PluginClosedError as PluginClosedError
from wasmplug._errors import PluginCrashed as PluginCrashed
from wasmplug._errors import PluginError as PluginError
from wasmplug._errors import PluginFault as PluginFault
from wasmplug._errors import PluginInterrupted as PluginInterrupted
from wasmplug._errors import PluginNotFoundError as PluginNotFoundError
from wasmplug._errors import PluginQuarantinedError as PluginQuarantinedError
from wasmplug._errors import PluginTimeout as PluginTimeout
from wasmplug._errors import PluginTrapped as PluginTrapped
from wasmplug._errors import ReentrantCallError as ReentrantCallError
from wasmplug._errors import RegistryAuthError as RegistryAuthError
from wasmplug._errors import RegistryError as RegistryError
from wasmplug._errors import RegistryUnavailableError as RegistryUnavailableError
from wasmplug._errors import ResourceLimitExceeded as ResourceLimitExceeded
from wasmplug._errors import ResultTooLarge as ResultTooLarge
from wasmplug._errors import RevokedError as RevokedError
from wasmplug._errors import RollbackError as RollbackError
from wasmplug._errors import SignatureError as SignatureError
from wasmplug._errors import SignatureFormatError as SignatureFormatError
from wasmplug._errors import SignatureInvalidError as SignatureInvalidError
from wasmplug._errors import SignatureMissingError as SignatureMissingError
from wasmplug._errors import StaleResourceError as StaleResourceError
from wasmplug._errors import TrustStoreError as TrustStoreError
from wasmplug._errors import UnsignedPluginError as UnsignedPluginError
from wasmplug._errors import UntrustedKeyError as UntrustedKeyError
from wasmplug._errors import VersionConflictError as VersionConflictError
from wasmplug._errors import WasmplugError as WasmplugError
from wasmplug._errors import WitTypeError as WitTypeError
from wasmplug._errors import WitValueError as WitValueError
from wasmplug._runtime.describe import ComponentDescription as ComponentDescription
from wasmplug._runtime.describe import FunctionDescription as FunctionDescription
from wasmplug._runtime.describe import InterfaceDescription as InterfaceDescription
from wasmplug._runtime.exports import Exports as Exports
from wasmplug._runtime.host import PluginHost as PluginHost
from wasmplug._runtime.host import inspect as inspect
from wasmplug._runtime.plugin import Plugin as Plugin
from wasmplug._runtime.stats import HostStats as HostStats
from wasmplug._runtime.stats import PluginStats as PluginStats
from wasmplug._runtime.supervisor import FaultRecord as FaultRecord
from wasmplug._runtime.supervisor import PluginMetrics as PluginMetrics
from wasmplug._sandbox.capabilities import Capability as Capability
from wasmplug._sandbox.capabilities import Permission as Permission
from wasmplug._sandbox.confinement import Confinement as Confinement
from wasmplug._sandbox.grants import DirGrant as DirGrant
from wasmplug._sandbox.grants import Grants as Grants
from wasmplug._sandbox.grants import WasiSettings as WasiSettings
from wasmplug._sandbox.grantstore import GrantPolicy as GrantPolicy
from wasmplug._sandbox.grantstore import GrantStore as GrantStore
from wasmplug._sandbox.grantstore import PermissionRequest as PermissionRequest
from wasmplug._sandbox.grantstore import StoredDecision as StoredDecision
from wasmplug._sandbox.http import HttpCapability as HttpCapability
from wasmplug._sandbox.limits import Limits as Limits
from wasmplug._sandbox.limits import RestartPolicy as RestartPolicy
from wasmplug._sandbox.manifest import FilesystemRequest as FilesystemRequest
from wasmplug._sandbox.manifest import Manifest as Manifest
from wasmplug._trust.keys import PublicKey as PublicKey
from wasmplug._trust.keys import SecretKey as SecretKey
from wasmplug._trust.registry import PluginInfo as PluginInfo
from wasmplug._trust.registry import Registry as Registry
from wasmplug._trust.store import TrustDecision as TrustDecision
from wasmplug._trust.store import TrustedKey as TrustedKey
from wasmplug._trust.store import TrustStore as TrustStore

try:
    __version__ = _version("wasmplug")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ArtifactFormatError",
    "ArtifactNotFoundError",
    "BuildError",
    "CacheError",
    "Capability",
    "CapabilityError",
    "ComponentDescription",
    "Confinement",
    "DigestMismatchError",
    "DirGrant",
    "DistributionError",
    "Err",
    "ErrorResult",
    "Exports",
    "FaultRecord",
    "FilesystemRequest",
    "FuelExhausted",
    "FunctionDescription",
    "GrantPolicy",
    "GrantPolicyError",
    "GrantStore",
    "GrantStoreError",
    "Grants",
    "HostFunctionError",
    "HostInterfaceError",
    "HostStats",
    "HttpCapability",
    "InstallRefusedError",
    "InstantiationError",
    "InterfaceDescription",
    "InvalidComponentError",
    "InvalidReferenceError",
    "KeyFormatError",
    "Limits",
    "LinkError",
    "LoadError",
    "LockfileError",
    "Manifest",
    "ManifestError",
    "NameConflictError",
    "Ok",
    "Permission",
    "PermissionRequest",
    "Plugin",
    "PluginClosedError",
    "PluginCrashed",
    "PluginError",
    "PluginFault",
    "PluginHost",
    "PluginInfo",
    "PluginInterrupted",
    "PluginMetrics",
    "PluginNotFoundError",
    "PluginQuarantinedError",
    "PluginStats",
    "PluginTimeout",
    "PluginTrapped",
    "PublicKey",
    "PullResult",
    "PushResult",
    "ReentrantCallError",
    "Registry",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailableError",
    "Resource",
    "ResourceLimitExceeded",
    "RestartPolicy",
    "ResultTooLarge",
    "RevokedError",
    "RollbackError",
    "SecretKey",
    "SignatureError",
    "SignatureFormatError",
    "SignatureInvalidError",
    "SignatureMissingError",
    "Some",
    "StaleResourceError",
    "StoredDecision",
    "TrustDecision",
    "TrustStore",
    "TrustStoreError",
    "TrustedKey",
    "UnsignedPluginError",
    "UntrustedKeyError",
    "Variant",
    "VersionConflictError",
    "WasiSettings",
    "WasmplugError",
    "WitTypeError",
    "WitValueError",
    "__version__",
    "current_plugin",
    "inspect",
    "pull_plugin",
    "push_plugin",
]

# Tracebacks, reprs and the docs say ``wasmplug.X``, not the private module (as httpx does).
__locals = locals()
for __name in __all__:
    if not __name.startswith("__"):
        setattr(__locals[__name], "__module__", "wasmplug")  # noqa: B010 - a loop, not an attribute
del __locals, __name
