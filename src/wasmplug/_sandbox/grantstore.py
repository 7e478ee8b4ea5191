"""Grant decisions: from the application's policy, a prompt, and remembered answers.

Decisions persist in ``platformdirs.user_data_dir("wasmplug")/grants.json``
(mode 0600; it holds granted environment values), keyed by
``(plugin name, publisher key id, component sha256)``. A replaced binary
therefore never inherits grants (Zellij keys on location only, which is the
hole this closes), and a manifest that asks for more than was answered
triggers a new prompt listing what is new.
"""

from __future__ import annotations

import fnmatch
import os
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from wasmplug._errors import GrantPolicyError, GrantStoreError
from wasmplug._jsonstore import (
    Invalid,
    JsonStore,
    as_dict,
    as_float,
    as_opt_str,
    as_str,
    as_str_list,
    field,
)

from .capabilities import Permission, requested_permissions
from .capability import grant_kind, grant_kinds
from .grants import Grants
from .manifest import Manifest

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

    @classmethod
    def asking(
        cls,
        manifest: Manifest,
        *,
        sha256: str,
        publisher: str | None,
        publisher_name: str,
        sensitive: frozenset[str],
    ) -> PermissionRequest:
        """The request for everything ``manifest`` asks for that needs a grant, all of
        it new (:meth:`GrantPolicy.decide` narrows ``new`` to what was not answered).

        Args:
            sensitive: The declared host interfaces the application provides as
                sensitive (only those need a grant).
        """
        permissions = requested_permissions(manifest, sensitive)
        return cls(
            manifest.name,
            manifest.version,
            publisher,
            publisher_name,
            sha256,
            permissions,
            permissions,
        )


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
    return p.key


def grants_to_json(g: Grants, *, masked: bool = False) -> dict[str, Any]:
    """The grant store's JSON form of ``g``: one key per kind granted, each in its
    kind's form (secret values hidden with ``masked``)."""
    out: dict[str, Any] = {}
    for key, value in g.granted.items():
        kind = grant_kind(key)
        assert kind is not None
        data = kind.grant_to_data(value)
        out[key] = kind.mask_data(data) if masked else data
    return out


def grants_from_json(data: Any, where: str = "grants", *, toml: bool = False) -> Grants:
    """The inverse of :func:`grants_to_json` (or a grants file's table, with ``toml``),
    with every field type-checked by its kind. Keys of kinds this process does not
    define (an application's own, read by another program) are left out.

    Raises:
        Invalid: a field has the wrong type (names the field).
    """
    table = as_dict(data, where)
    values: dict[str, Any] = {}
    try:
        for key, value in table.items():
            kind = grant_kind(key)
            if kind is not None:
                values[key] = kind.grant_from_data(value, f"{where}.{key}", toml=toml)
        return Grants(granted=values)
    except Invalid:
        raise
    except RecursionError:
        raise Invalid(f"{where}: nested too deeply") from None
    except Exception as e:  # a kind's reader or converter that failed some other way
        raise Invalid(f"{where}: {type(e).__name__}: {e}") from None


def _key(plugin: str, publisher: str | None, sha256: str) -> str:
    return f"{plugin}|{publisher or 'unsigned'}|{sha256}"


def _parse_decision(value: Any, where: str) -> StoredDecision:
    entry = as_dict(value, where)
    return StoredDecision(
        field(entry, "plugin", where, as_str),
        field(entry, "publisher", where, as_opt_str),
        field(entry, "sha256", where, as_str),
        frozenset(field(entry, "answered", where, as_str_list)),
        grants_from_json(field(entry, "grants", where, as_dict), f"{where}.grants"),
        field(entry, "decided-at", where, as_float),
    )


def _parse_store(data: Any) -> dict[str, StoredDecision]:
    doc = as_dict(data, "")
    table = field(doc, "decisions", "", as_dict)
    decisions = [_parse_decision(v, f"decisions.{k}") for k, v in table.items()]
    return {_key(d.plugin, d.publisher, d.sha256): d for d in decisions}


def _dump_store(decisions: dict[str, StoredDecision]) -> dict[str, Any]:
    return {
        "decisions": {
            key: {
                "plugin": d.plugin,
                "publisher": d.publisher,
                "sha256": d.sha256,
                "answered": sorted(d.answered),
                "grants": grants_to_json(d.grants),
                "decided-at": d.decided_at,
            }
            for key, d in decisions.items()
        }
    }


class GrantStore:
    """Remembered grant decisions, one JSON file, safe across processes.

    Args:
        path: The file; defaults to ``platformdirs.user_data_dir("wasmplug")/grants.json``.

    Every method that reads raises :class:`GrantStoreError` if the file exists
    but cannot be read or parsed (the message names the file and the field).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        default = Path(platformdirs.user_data_dir("wasmplug")) / "grants.json"
        # 0600: the file holds granted environment values.
        self._file = JsonStore(
            Path(path) if path is not None else default,
            parse=_parse_store,
            dump=_dump_store,
            empty=dict,
            error=GrantStoreError,
            what="grant store",
            mode=0o600,
        )
        self.path = self._file.path

    def get(self, plugin: str, publisher: str | None, sha256: str) -> StoredDecision | None:
        """The remembered decision for exactly this plugin, publisher and binary."""
        return self._file.read().get(_key(plugin, publisher, sha256))

    def put(self, decision: StoredDecision) -> None:
        """Remember a decision (replacing the previous one for the same key)."""
        with self._file.edit() as decisions:
            decisions[_key(decision.plugin, decision.publisher, decision.sha256)] = decision

    def list(self) -> list[StoredDecision]:
        """Every remembered decision."""
        return sorted(self._file.read().values(), key=lambda d: (d.plugin, d.decided_at))

    def revoke(self, plugin: str, sha256: str | None = None) -> int:
        """Forget decisions for ``plugin`` (all binaries, or one). Returns how many."""
        with self._file.edit() as decisions:
            doomed = [
                k
                for k, d in decisions.items()
                if d.plugin == plugin and (sha256 is None or d.sha256 == sha256)
            ]
            for k in doomed:
                del decisions[k]
        return len(doomed)


def merge_grants(earlier: Grants, answer: Grants | None) -> Grants:
    """Combine an earlier answer with a new one (the new one wins where both speak).

    A prompt asked again because a plugin requests more may answer only for
    what is new (``PermissionRequest.new``); what was granted before stays.
    """
    if answer is None:
        return earlier
    merged = dict(earlier.granted)
    for key, value in answer.granted.items():
        kind = grant_kind(key)
        assert kind is not None
        merged[key] = kind.merge(merged[key], value) if key in merged else value
    return Grants(granted=merged)


def _grants_from_toml(entry: Any, where: str, problems: list[str]) -> Grants:
    table = as_dict(entry, where)
    known = [cap.grant_key for cap in grant_kinds() if cap.grant_key]
    problems.extend(
        f"{where}.{k}: unknown key (known: {', '.join(known)})"
        for k in sorted(set(table) - set(known))
    )
    return grants_from_json(table, where, toml=True)


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
            capabilities = ["acme:run-commands"]   # application-defined capabilities

        Every table and value is type-checked, and every problem is reported at once.

        Args:
            path: The TOML file.
            **kwargs: Other :class:`GrantPolicy` attributes (``prompt``, ``store``).

        Raises:
            GrantPolicyError: the file is unreadable, not TOML, or malformed
                (unknown keys, wrong types); ``.problems`` lists each.
        """
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # TOML, UTF-8, and values tomllib cannot hold
            raise GrantPolicyError(source, [f"cannot read grants: {e}"]) from None
        except RecursionError:
            raise GrantPolicyError(source, ["cannot read grants: nested too deeply"]) from None
        problems: list[str] = []
        problems.extend(f"{k}: unknown key (known: grants)" for k in sorted(set(data) - {"grants"}))
        table = data.get("grants", {})
        if not isinstance(table, dict):
            problems.append(f"grants: must be a table, got {type(table).__name__}")
            table = {}
        out: dict[str, Grants] = {}
        for pattern, entry in table.items():
            where = f"grants.{pattern}"
            try:
                out[pattern] = _grants_from_toml(entry, where, problems)
            except Invalid as e:
                problems.append(str(e))
        if problems:
            raise GrantPolicyError(source, problems)
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
