"""The one permission enum of the workspace, and what needs which permission.

Decisions are kept in wasmplug's :class:`~wasmplug.GrantStore`. wasmplug's own
:class:`~wasmplug.Capability` enum covers sandbox capabilities only (folders,
environment, HTTP, host interfaces), so each workspace permission is recorded as a
``host-interface`` permission on a pseudo interface name,
``wasmplug-demo:zellij/permission/<name>``; :class:`~wasmplug.GrantPolicy` then
does the rest (remembered answers keyed by plugin name, publisher key and sha256,
prompting for what is new).
"""

from __future__ import annotations

from wasmplug import Capability, Grants, Permission

PERMISSIONS: dict[str, tuple[str, str]] = {
    "read-application-state": ("Read application state", "see the input mode, tabs and panes"),
    "change-application-state": ("Change application state", "switch tabs"),
    "open-files": ("Open files", "ask the workspace to open files the plugin can see"),
    "run-commands": ("Run commands", "run programs on this computer"),
    "web-access": ("Web access", "make web requests to the sites its manifest lists"),
    "message-plugins": ("Message other plugins", "send messages to other panes"),
}
"""Permission (WIT enum case) -> (display name, description)."""

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

TARGET_PREFIX = "wasmplug-demo:zellij/permission/"


def as_wasmplug_permission(name: str) -> Permission:
    display, description = PERMISSIONS[name]
    return Permission(Capability.HOST_INTERFACE, TARGET_PREFIX + name, f"{display}: {description}")


def granted_names(grants: Grants) -> set[str]:
    return {
        i.removeprefix(TARGET_PREFIX) for i in grants.host_interfaces if i.startswith(TARGET_PREFIX)
    }


def as_grants(names: set[str] | frozenset[str]) -> Grants:
    return Grants(host_interfaces={TARGET_PREFIX + n for n in names})
