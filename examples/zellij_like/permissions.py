"""The workspace's permissions, as application-defined wasmplug capabilities.

Each permission a pane plugin can request (the WIT ``permission`` enum) is one
:class:`~wasmplug.Capability` defined here, with its display name and prompt
text. The rest is wasmplug's:

- a plugin *declares* the ones it may ask for in its manifest
  (``[capabilities] application = ["wasmplug-demo:open-files"]``), packed and
  signed with it; one it does not declare is never asked for and never held;
- the workspace *grants* them: the layout's pre-grants and the user's answers go
  into the ``Grants(capabilities={...})`` the pane's plugin is loaded with, and
  answers are asked and remembered by a :class:`~wasmplug.GrantPolicy` (keyed by
  plugin name, publisher key and sha256; a request is a
  :class:`~wasmplug.PermissionRequest` of ``capability.permission()`` entries);
- the plugin *holds* declared ∩ granted, ``plugin.sandbox``, which every host
  call and permission-gated event is checked against (:func:`holds`).
"""

from __future__ import annotations

from collections.abc import Iterable

from wasmplug import Capability, Grants, Manifest, Permission, Plugin

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


def declared_names(manifest: Manifest) -> set[str]:
    """The workspace permissions a plugin's manifest declares (it may ask for)."""
    return {_BY_ID[cap_id] for cap_id in manifest.application if cap_id in _BY_ID}


def holds(plugin: Plugin | None, name: str) -> bool:
    """Whether ``plugin`` holds workspace permission ``name`` (declared and granted)."""
    return plugin is not None and PERMISSIONS[name].granted_in(plugin.sandbox)
