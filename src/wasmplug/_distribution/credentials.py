"""Registry credentials: ``wasmplug login``'s store, then Docker's ``config.json``.

Lookup order for a registry ``host[:port]``:

1. ``platformdirs.user_config_dir("wasmplug")/credentials.json`` (mode 0o600),
   written by ``wasmplug login``, in Docker's ``{"auths": {HOST: {"auth": B64}}}`` shape;
2. Docker's config, ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``
   (the docker-cli ``configfile`` format): ``credHelpers[HOST]``, else
   ``credsStore`` (both run ``docker-credential-NAME get``, the
   docker-credential-helpers protocol), else ``auths[HOST]`` with ``auth``
   (base64 ``user:password``) or ``username``/``password``. Keys may be written
   ``https://HOST`` or ``HOST/v1/``.

Identity tokens (``identitytoken``, OAuth2 refresh tokens) are not supported and
are reported as such. Nothing here ever logs a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from wasmplug._errors import RegistryAuthError
from wasmplug._fsutil import write_atomic

__all__ = ["CredentialStore", "Credentials", "docker_config_path", "lookup_credentials"]

_HELPER_TIMEOUT_S = 10.0
_HELPER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a program name, never a path


@attrs.frozen(repr=False)
class Credentials:
    """A user name and password (or token) for one registry.

    Attributes:
        username, password: As sent in HTTP Basic auth and to a token endpoint.
        source: Where they came from, for messages (never the secret itself).
    """

    username: str
    password: str
    source: str

    def __repr__(self) -> str:
        return f"<Credentials {self.username!r} from {self.source}>"


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def default_store_path() -> Path:
    """``platformdirs.user_config_dir("wasmplug")/credentials.json``."""
    return Path(platformdirs.user_config_dir("wasmplug")) / "credentials.json"


def _normalize(key: str) -> str:
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0].lower()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RegistryAuthError(f"cannot read credentials file {path}: {e}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise RegistryAuthError(f"credentials file {path} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RegistryAuthError(f"credentials file {path} is not a JSON object")
    return doc


def _from_auths(doc: dict[str, Any], registry: str, where: str) -> Credentials | None:
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _normalize(str(key)) != registry or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            raise RegistryAuthError(
                f"{where} holds an identity token for {registry}; wasmplug supports user name "
                f"and password (or token) credentials only: run `wasmplug login {registry}`"
            )
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise RegistryAuthError(f"{where}: 'auth' for {registry} is not base64") from None
            if not sep:
                raise RegistryAuthError(f"{where}: 'auth' for {registry} is not user:password")
            return Credentials(user, password, where)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"], where)
    return None


def _from_helper(helper: str, registry: str, where: str) -> Credentials | None:
    if not _HELPER_RE.match(helper):
        raise RegistryAuthError(f"{where}: {helper!r} is not a credential helper name")
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, "get"],
            input=registry.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise RegistryAuthError(
            f"{where} names credential helper {helper!r}, but {program} is not on PATH"
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(
            f"{program} did not answer within {_HELPER_TIMEOUT_S:g} s"
        ) from None
    if done.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        answer = json.loads(done.stdout)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryAuthError(f"{program} gave an answer that is not credentials") from None
    if user == "<token>":
        raise RegistryAuthError(f"{program} gave an identity token, which is not supported")
    return Credentials(str(user), str(secret), f"{where} ({program})")


def lookup_credentials(
    registry: str, *, store: CredentialStore | None = None
) -> Credentials | None:
    """The credentials for ``registry`` (``host[:port]``), or ``None`` (anonymous).

    Raises:
        RegistryAuthError: a credentials file exists but is unreadable or malformed,
            or a named credential helper is missing or misbehaves.
    """
    registry = registry.lower()
    own = (store or CredentialStore()).get(registry)
    if own is not None:
        return own
    path = docker_config_path()
    doc = _read_json(path)
    if doc is None:
        return None
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _normalize(str(key)) == registry and isinstance(helper, str):
                return _from_helper(helper, registry, str(path))
    found = _from_auths(doc, registry, str(path))
    if found is None and isinstance(doc.get("credsStore"), str) and doc["credsStore"]:
        found = _from_helper(doc["credsStore"], registry, str(path))
    return found


class CredentialStore:
    """wasmplug's own credentials file (``wasmplug login`` / ``logout``).

    Args:
        path: Default ``platformdirs.user_config_dir("wasmplug")/credentials.json``.
            Written atomically with mode 0o600.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()

    def _load(self) -> dict[str, Any]:
        doc = _read_json(self.path) or {}
        if not isinstance(doc.get("auths", {}), dict):
            raise RegistryAuthError(f"credentials file {self.path}: 'auths' is not an object")
        return doc

    def get(self, registry: str) -> Credentials | None:
        """The stored credentials for ``registry``, or ``None``."""
        return _from_auths(self._load(), registry.lower(), str(self.path))

    def set(self, registry: str, username: str, password: str) -> None:
        """Store credentials for ``registry`` (replacing any)."""
        doc = self._load()
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        doc.setdefault("auths", {})[registry.lower()] = {"auth": token}
        self._save(doc)

    def remove(self, registry: str) -> bool:
        """Forget ``registry``'s credentials; whether there were any."""
        doc = self._load()
        auths: dict[str, Any] = doc.get("auths", {})
        keys = [k for k in auths if _normalize(k) == registry.lower()]
        for key in keys:
            del auths[key]
        if keys:
            self._save(doc)
        return bool(keys)

    def _save(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)
