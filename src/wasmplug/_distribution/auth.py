"""Registry authentication: answering a ``WWW-Authenticate`` challenge.

``Basic`` sends the user's credentials with every request to the registry from
then on. ``Bearer realm=...,service=...,scope=...`` runs the token flow of
distribution's ``docs/spec/auth/token.md``: ``GET realm?service=&scope=`` with
the credentials as Basic auth (if any), and the answer's ``token`` (or
``access_token``) is sent as ``Authorization: Bearer``, one token per scope.
Credentials go to a token realm only over HTTPS, unless the realm or the
registry is on a loopback host or the user passed ``--insecure``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable

import httpx

from wasmplug._errors import RegistryAuthError, RegistryUnavailableError

from .credentials import Credentials, lookup_credentials
from .reference import is_loopback

__all__ = ["LOOKUP", "Lookup", "RegistryAuth"]

MAX_TOKEN_BYTES = 1024 * 1024
_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')

ReadBody = Callable[[httpx.Response, int, str], bytes]
"""Reads a streamed response body with a size cap and the transfer deadline."""


class Lookup:
    """Sentinel: look the credentials up (``wasmplug login`` store, then Docker's)."""


LOOKUP = Lookup()


def basic_header(creds: Credentials) -> dict[str, str]:
    """``{"Authorization": "Basic <base64 user:password>"}``."""
    pair = f"{creds.username}:{creds.password}".encode()
    return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}


class RegistryAuth:
    """The auth state of one registry: its credentials, Basic mode, Bearer tokens by scope.

    Args:
        registry: ``host[:port]``, for messages and the credential lookup.
        credentials: Fixed credentials, ``None`` (anonymous), or :data:`LOOKUP`
            (looked up on the first challenge).
        plain_allowed: The registry may be spoken to over plain HTTP (loopback or
            ``--insecure``); then so may its token realm.
    """

    def __init__(
        self, registry: str, credentials: Credentials | Lookup | None, *, plain_allowed: bool
    ) -> None:
        self.registry = registry
        self._credentials = credentials
        self._plain_allowed = plain_allowed
        self._tokens: dict[str, str] = {}
        self._basic = False

    @property
    def credentials(self) -> Credentials | None:
        """The credentials in use, if known (not looked up by this property)."""
        return None if isinstance(self._credentials, Lookup) else self._credentials

    def _lookup(self) -> Credentials | None:
        if isinstance(self._credentials, Lookup):
            self._credentials = lookup_credentials(self.registry)
        return self._credentials

    def header(self, scope: str) -> dict[str, str]:
        """The Authorization header for a request in ``scope`` (empty: anonymous)."""
        token = self._tokens.get(scope)
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        creds = self.credentials
        if self._basic and creds is not None:
            return basic_header(creds)
        return {}

    def answer(self, resp: httpx.Response, scope: str, http: httpx.Client, read: ReadBody) -> None:
        """Answer the 401 ``resp``: set up Basic auth, or fetch a Bearer token for ``scope``.

        Raises:
            RegistryAuthError: no credentials, rejected ones, an unsupported challenge,
                a plain-HTTP realm on a remote host, or a token service that gives none.
            RegistryUnavailableError: the token service cannot be reached.
        """
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        params = dict(_PARAM_RE.findall(rest))
        creds = self._lookup()
        if scheme.lower() == "basic":
            if creds is None:
                raise self.no_credentials()
            self._basic = True
            return
        if scheme.lower() != "bearer" or "realm" not in params:
            raise RegistryAuthError(
                f"registry {self.registry} asks for authentication with an unsupported "
                f"challenge {challenge[:80]!r}"
            )
        realm = httpx.URL(params["realm"])
        if realm.scheme != "https" and not (self._plain_allowed or is_loopback(realm.host)):
            raise RegistryAuthError(  # never send credentials in clear text to a remote host
                f"registry {self.registry}: token realm {realm} is not HTTPS; refusing "
                "(use --insecure only for a registry you control)"
            )
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        headers = basic_header(creds) if creds is not None else {}
        request = http.build_request("GET", realm, params=query, headers=headers)
        try:
            answer = http.send(request, stream=True, follow_redirects=False)
        except httpx.TransportError as e:
            raise RegistryUnavailableError(
                f"token service {realm} of registry {self.registry} is unreachable: {e}"
            ) from e
        try:
            if answer.status_code in (401, 403):
                raise (self.no_credentials() if creds is None else self.rejected(creds))
            if answer.status_code != 200:
                raise RegistryAuthError(
                    f"token service {realm} of registry {self.registry} answered HTTP "
                    f"{answer.status_code}"
                )
            body = read(answer, MAX_TOKEN_BYTES, f"token service {realm}")
        finally:
            answer.close()
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, RecursionError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"token service {realm} gave no token")
        self._tokens[scope] = token

    def no_credentials(self) -> RegistryAuthError:
        """The error for "authentication required, none configured"."""
        return RegistryAuthError(
            f"registry {self.registry} requires authentication and no credentials are "
            f"configured for it: run `wasmplug login {self.registry}` (or `docker login`)"
        )

    def rejected(self, creds: Credentials) -> RegistryAuthError:
        """The error for "these credentials were refused" (names the user and the source)."""
        return RegistryAuthError(
            f"registry {self.registry} rejected the credentials of user {creds.username!r} "
            f"(from {creds.source}): check them with `wasmplug login {self.registry}`"
        )
