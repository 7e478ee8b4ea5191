"""wasmplug: load third-party extensions as sandboxed WebAssembly components.

>>> from wasmplug import PluginHost
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._callctx import current_plugin as current_plugin
from ._capabilities import Capability as Capability
from ._capabilities import Permission as Permission
from ._errors import BuildError as BuildError
from ._errors import CacheError as CacheError
from ._errors import CapabilityError as CapabilityError
from ._errors import ErrorResult as ErrorResult
from ._errors import FuelExhausted as FuelExhausted
from ._errors import HostFunctionError as HostFunctionError
from ._errors import InstantiationError as InstantiationError
from ._errors import InvalidComponentError as InvalidComponentError
from ._errors import KeyFormatError as KeyFormatError
from ._errors import LinkError as LinkError
from ._errors import LoadError as LoadError
from ._errors import ManifestError as ManifestError
from ._errors import NameConflictError as NameConflictError
from ._errors import PluginClosedError as PluginClosedError
from ._errors import PluginError as PluginError
from ._errors import PluginFault as PluginFault
from ._errors import PluginNotFoundError as PluginNotFoundError
from ._errors import PluginQuarantinedError as PluginQuarantinedError
from ._errors import PluginTimeout as PluginTimeout
from ._errors import PluginTrapped as PluginTrapped
from ._errors import ReentrantCallError as ReentrantCallError
from ._errors import RegistryError as RegistryError
from ._errors import ResourceLimitExceeded as ResourceLimitExceeded
from ._errors import RevokedError as RevokedError
from ._errors import RollbackError as RollbackError
from ._errors import SignatureError as SignatureError
from ._errors import SignatureInvalidError as SignatureInvalidError
from ._errors import SignatureMissingError as SignatureMissingError
from ._errors import StaleResourceError as StaleResourceError
from ._errors import TrustStoreError as TrustStoreError
from ._errors import UnsignedPluginError as UnsignedPluginError
from ._errors import UntrustedKeyError as UntrustedKeyError
from ._errors import VersionConflictError as VersionConflictError
from ._errors import WasmplugError as WasmplugError
from ._errors import WitTypeError as WitTypeError
from ._errors import WitValueError as WitValueError
from ._exports import Exports as Exports
from ._grants import DirGrant as DirGrant
from ._grants import Grants as Grants
from ._grantstore import GrantPolicy as GrantPolicy
from ._grantstore import GrantStore as GrantStore
from ._grantstore import PermissionRequest as PermissionRequest
from ._grantstore import StoredDecision as StoredDecision
from ._host import PluginHost as PluginHost
from ._http import HttpCapability as HttpCapability
from ._limits import Limits as Limits
from ._limits import RestartPolicy as RestartPolicy
from ._manifest import FilesystemRequest as FilesystemRequest
from ._manifest import Manifest as Manifest
from ._plugin import Plugin as Plugin
from ._registry import PluginInfo as PluginInfo
from ._registry import Registry as Registry
from ._resources import Resource as Resource
from ._signing import PublicKey as PublicKey
from ._signing import SecretKey as SecretKey
from ._supervisor import FaultRecord as FaultRecord
from ._supervisor import PluginMetrics as PluginMetrics
from ._trust import TrustDecision as TrustDecision
from ._trust import TrustedKey as TrustedKey
from ._trust import TrustStore as TrustStore
from ._values import Err as Err
from ._values import Ok as Ok
from ._values import Some as Some
from ._values import Variant as Variant

try:
    __version__ = _version("wasmplug")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "BuildError",
    "CacheError",
    "Capability",
    "CapabilityError",
    "DirGrant",
    "Err",
    "ErrorResult",
    "Exports",
    "FaultRecord",
    "FilesystemRequest",
    "FuelExhausted",
    "GrantPolicy",
    "GrantStore",
    "Grants",
    "HostFunctionError",
    "HttpCapability",
    "InstantiationError",
    "InvalidComponentError",
    "KeyFormatError",
    "Limits",
    "LinkError",
    "LoadError",
    "Manifest",
    "ManifestError",
    "NameConflictError",
    "Ok",
    "Permission",
    "PermissionRequest",
    "Plugin",
    "PluginClosedError",
    "PluginError",
    "PluginFault",
    "PluginHost",
    "PluginInfo",
    "PluginMetrics",
    "PluginNotFoundError",
    "PluginQuarantinedError",
    "PluginTimeout",
    "PluginTrapped",
    "PublicKey",
    "ReentrantCallError",
    "Registry",
    "RegistryError",
    "Resource",
    "ResourceLimitExceeded",
    "RestartPolicy",
    "RevokedError",
    "RollbackError",
    "SecretKey",
    "SignatureError",
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
    "WasmplugError",
    "WitTypeError",
    "WitValueError",
    "__version__",
    "current_plugin",
]
