"""Grant decisions: from the application's policy, a prompt, and remembered answers.

Decisions persist in ``platformdirs.user_data_dir("wasmplug")/grants.json``
(mode 0600; it holds granted environment values), keyed by
``(plugin name, publisher key id, component sha256)``. A replaced binary
therefore never inherits grants (Zellij keys on location only, which is the
hole this closes), and a manifest that asks for more than was answered
triggers a new prompt listing what is new.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from wasmplug._errors import ManifestError, TrustStoreError
from wasmplug._fsutil import write_atomic

from .capabilities import Permission
from .grants import DirGrant, Grants

__all__ = ["GrantPolicy", "GrantStore", "PermissionRequest", "StoredDecision"]


@attrs.frozen
class PermissionRequest:
    """What a prompt callback is asked to decide.

    Attributes:
        plugin: The plugin's name.
        version: Its version.
        publisher: The key id (hex) that signed it, or ``None`` if unsigned.
        publisher_name: The trusted key's display name, if known.
        sha256: Hex SHA-256 of the component file.
        permissions: Everything the plugin asks for that needs a grant.
        new: The subset not covered by a previous answer (all of them the first time).
    """

    plugin: str
    version: str
    publisher: str | None
    publisher_name: str
    sha256: str
    permissions: tuple[Permission, ...]
    new: tuple[Permission, ...]


Prompt = Callable[[PermissionRequest], Grants | None]
"""A prompt returns the grants the user approved (``None`` denies everything)."""


@attrs.frozen
class StoredDecision:
    """A remembered answer.

    Attributes:
        plugin, publisher, sha256: The key it is stored under.
        answered: Targets of the permissions the answer covered (``"<capability>:<target>"``).
        grants: What was granted.
        decided_at: ``time.time()`` of the answer.
    """

    plugin: str
    publisher: str | None
    sha256: str
    answered: frozenset[str]
    grants: Grants
    decided_at: float


def _perm_key(p: Permission) -> str:
    return f"{p.capability.value}:{p.target}"


def grants_to_json(g: Grants) -> dict[str, Any]:
    return {
        "filesystem": {k: [str(v.host_path), v.mode] for k, v in g.filesystem.items()},
        "env": dict(g.env),
        "host-interfaces": sorted(g.host_interfaces),
        "allowed-outbound-hosts": list(g.allowed_outbound_hosts),
    }


def grants_from_json(data: Mapping[str, Any]) -> Grants:
    return Grants(
        filesystem={k: DirGrant(Path(v[0]), v[1]) for k, v in data.get("filesystem", {}).items()},
        env=data.get("env", {}),
        host_interfaces=data.get("host-interfaces", ()),
        allowed_outbound_hosts=data.get("allowed-outbound-hosts", ()),
    )


class GrantStore:
    """Remembered grant decisions, one JSON file, safe across processes.

    Args:
        path: The file; defaults to ``platformdirs.user_data_dir("wasmplug")/grants.json``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        default = Path(platformdirs.user_data_dir("wasmplug")) / "grants.json"
        self.path = Path(path) if path is not None else default

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self._write(data)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"decisions": {}}
        except (OSError, ValueError) as e:
            raise TrustStoreError(f"grant store {self.path} is unreadable: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("decisions"), dict):
            raise TrustStoreError(f"grant store {self.path} is malformed")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        # 0600: the file holds granted environment values.
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True).encode(), mode=0o600)

    @staticmethod
    def _key(plugin: str, publisher: str | None, sha256: str) -> str:
        return f"{plugin}|{publisher or 'unsigned'}|{sha256}"

    def get(self, plugin: str, publisher: str | None, sha256: str) -> StoredDecision | None:
        """The remembered decision for exactly this plugin, publisher and binary."""
        entry = self._read()["decisions"].get(self._key(plugin, publisher, sha256))
        if entry is None:
            return None
        return StoredDecision(
            plugin,
            publisher,
            sha256,
            frozenset(entry["answered"]),
            grants_from_json(entry["grants"]),
            float(entry["decided-at"]),
        )

    def put(self, decision: StoredDecision) -> None:
        """Remember a decision (replacing the previous one for the same key)."""
        with self._locked() as data:
            data["decisions"][self._key(decision.plugin, decision.publisher, decision.sha256)] = {
                "plugin": decision.plugin,
                "publisher": decision.publisher,
                "sha256": decision.sha256,
                "answered": sorted(decision.answered),
                "grants": grants_to_json(decision.grants),
                "decided-at": decision.decided_at,
            }

    def list(self) -> list[StoredDecision]:
        """Every remembered decision."""
        out = []
        for entry in self._read()["decisions"].values():
            got = self.get(entry["plugin"], entry["publisher"], entry["sha256"])
            if got is not None:
                out.append(got)
        return sorted(out, key=lambda d: (d.plugin, d.decided_at))

    def revoke(self, plugin: str, sha256: str | None = None) -> int:
        """Forget decisions for ``plugin`` (all binaries, or one). Returns how many."""
        with self._locked() as data:
            doomed = [
                k
                for k, v in data["decisions"].items()
                if v["plugin"] == plugin and (sha256 is None or v["sha256"] == sha256)
            ]
            for k in doomed:
                del data["decisions"][k]
        return len(doomed)


def merge_grants(earlier: Grants, answer: Grants | None) -> Grants:
    """Combine an earlier answer with a new one (the new one wins where both speak).

    A prompt asked again because a plugin requests more may answer only for
    what is new (``PermissionRequest.new``); what was granted before stays.
    """
    if answer is None:
        return earlier
    return Grants(
        filesystem={**earlier.filesystem, **answer.filesystem},
        env={**earlier.env, **answer.env},
        host_interfaces=earlier.host_interfaces | answer.host_interfaces,
        allowed_outbound_hosts=tuple(
            dict.fromkeys([*earlier.allowed_outbound_hosts, *answer.allowed_outbound_hosts])
        ),
    )


@attrs.define
class GrantPolicy:
    """How a host decides what a plugin gets when ``load()`` is not given explicit grants.

    1. Grants from code or config (:attr:`grants`, keyed by plugin-name
       patterns, first match wins) are used as they are, without prompting.
    2. Otherwise a remembered decision for this exact (name, publisher, sha256)
       is used if it answered everything the plugin now asks for.
    3. Otherwise :attr:`prompt` is asked (with what is new) and its answer,
       merged with any earlier answer for the same binary, remembered; with no
       prompt the plugin gets nothing.

    Attributes:
        grants: Plugin-name pattern (``fnmatch``) → grants.
        prompt: Called with a :class:`PermissionRequest`; returns the approved grants.
        store: Where answers are remembered (``None``: the default store;
            ``False``: do not remember).
    """

    grants: Mapping[str, Grants] = attrs.field(factory=dict)
    prompt: Callable[[PermissionRequest], Grants | None] | None = None
    store: GrantStore | bool | None = None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **kwargs: Any) -> GrantPolicy:
        """Read static grants from a TOML file::

            [grants."acme:*"]
            filesystem = { "/data" = "/srv/data", "/out" = "/srv/out:rw" }
            env = { API_KEY = "..." }
            host-interfaces = ["acme:db/query@1.0.0"]
            allowed-outbound-hosts = ["https://api.example.com"]

        Raises:
            ManifestError: if the file is unreadable or malformed.
        """
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ManifestError(source, [f"cannot read grants: {e}"]) from None
        problems: list[str] = []
        out: dict[str, Grants] = {}
        for pattern, table in data.get("grants", {}).items():
            unknown = set(table) - {
                "filesystem",
                "env",
                "host-interfaces",
                "allowed-outbound-hosts",
            }
            problems.extend(f"grants.{pattern}.{k}: unknown key" for k in sorted(unknown))
            fs = {}
            for guest, spec in table.get("filesystem", {}).items():
                host_path, _, mode = str(spec).rpartition(":")
                if mode not in ("ro", "rw") or not host_path:
                    host_path, mode = str(spec), "ro"
                fs[guest] = DirGrant(Path(host_path), mode)  # type: ignore[arg-type]
            out[pattern] = Grants(
                filesystem=fs,
                env=table.get("env", {}),
                host_interfaces=table.get("host-interfaces", ()),
                allowed_outbound_hosts=table.get("allowed-outbound-hosts", ()),
            )
        if problems:
            raise ManifestError(source, problems)
        return cls(grants=out, **kwargs)

    def _store(self) -> GrantStore | None:
        if self.store is False:
            return None
        if self.store is None or self.store is True:
            self.store = GrantStore()
        return self.store

    def decide(self, request: PermissionRequest) -> Grants:
        """The grants for this request (see the class docstring for the order)."""
        for pattern, grants in self.grants.items():
            if fnmatch.fnmatchcase(request.plugin, pattern):
                return grants
        if not request.permissions:
            return Grants()
        store = self._store()
        wanted = frozenset(_perm_key(p) for p in request.permissions)
        previous = store.get(request.plugin, request.publisher, request.sha256) if store else None
        if previous is not None and wanted <= previous.answered:
            return previous.grants
        if self.prompt is None:
            return previous.grants if previous is not None else Grants()
        answered = previous.answered if previous is not None else frozenset()
        request = attrs.evolve(
            request, new=tuple(p for p in request.permissions if _perm_key(p) not in answered)
        )
        answer = self.prompt(request)
        if previous is not None:
            granted = merge_grants(previous.grants, answer)
        else:
            granted = answer or Grants()
        if store is not None:
            store.put(
                StoredDecision(
                    request.plugin,
                    request.publisher,
                    request.sha256,
                    wanted | answered,
                    granted,
                    time.time(),
                )
            )
        return granted
