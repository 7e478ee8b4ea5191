"""The workspace's permissions, as application-defined wasmplug capabilities.

Each permission a pane plugin can request (the WIT ``permission`` enum) is one
:class:`~wasmplug.Capability` defined here, with its display name and prompt
text. Asking, remembering and checking are wasmplug's: a request is a
:class:`~wasmplug.PermissionRequest` of ``capability.permission()`` entries
decided by a :class:`~wasmplug.GrantPolicy` (remembered answers keyed by plugin
name, publisher key and sha256, prompting for what is new), and an answer is
``Grants(capabilities={...})``, checked with ``capability.granted_in(grants)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from wasmplug import Capability, Grants, Permission

PERMISSIONS: dict[str, Capability] = {
    name: Capability(f"wasmplug-demo:{name}", display, description)
    for name, display, description in [
        ("read-application-state", "Read application state", "see the input mode, tabs and panes"),
        ("change-application-state", "Change application state", "switch tabs"),
        ("open-files", "Open files", "ask the workspace to open files the plugin can see"),
        ("run-commands", "Run commands", "run programs on this computer"),
        ("web-access", "Web access", "make web requests to the sites its manifest lists"),
        ("message-plugins", "Message other plugins", "send messages to other panes"),
    ]
}
"""Permission (WIT enum case) -> its capability."""

EVENT_NEEDS = {
    "mode-update": "read-application-state",
    "tab-update": "read-application-state",
    "pane-update": "read-application-state",
    "custom-message": "message-plugins",
}
"""Event kinds that are delivered only with a permission."""

CALL_NEEDS = {
    "post-message": "message-plugins",
    "run-command": "run-commands",
    "switch-tab": "change-application-state",
    "open-file": "open-files",
}
"""Host calls that fail (``err``) without a permission."""

_BY_ID = {cap.id: name for name, cap in PERMISSIONS.items()}


def as_permission(name: str) -> Permission:
    """The wasmplug permission that asks for workspace permission ``name``."""
    return PERMISSIONS[name].permission()


def permission_name(permission: Permission) -> str:
    """The workspace permission a wasmplug permission asks for."""
    return _BY_ID[permission.capability.id]


def granted_names(grants: Grants) -> set[str]:
    """The workspace permissions ``grants`` grant."""
    return {name for name, cap in PERMISSIONS.items() if cap.granted_in(grants)}


def as_grants(names: Iterable[str]) -> Grants:
    """Grants of the workspace permissions ``names``."""
    return Grants(capabilities={PERMISSIONS[n].id for n in names})
