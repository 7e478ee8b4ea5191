"""OCI references: ``[oci://]host[:port]/repository[:tag][@sha256:HEX]``.

The grammar is distribution/reference's (``reference.go`` in
github.com/distribution/reference), restricted to what wasmplug needs:

- the registry host is always written out. A first path component is a
  registry host only if it contains ``.`` or ``:`` or is ``localhost``
  (Docker's rule), so ``plugins/x.wasm`` stays a path. There is no implicit
  ``docker.io``;
- repository components are ``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*``, joined by ``/``;
- a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``;
- the only digest algorithm is ``sha256`` with 64 lowercase hex digits.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

from wasmplug._errors import InvalidReferenceError

__all__ = ["Reference", "is_loopback", "looks_like_reference", "parse_reference"]

SCHEME = "oci://"
_HOST_RE = re.compile(
    r"^(?:localhost|\[[0-9A-Fa-f:.]+\]|"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::[0-9]{1,5})?$"
)
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_REPOSITORY = 255  # distribution's NameTotalLengthMax


@attrs.frozen
class Reference:
    """A parsed OCI reference.

    Attributes:
        registry: ``host[:port]`` (IPv6 hosts in brackets).
        repository: The repository path, e.g. ``"demo/csv"``.
        tag: The tag, or ``None``.
        digest: ``"sha256:<64 hex>"``, or ``None``. When both are given the
            digest wins: the tag is kept only for display.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def host(self) -> str:
        """The registry host without its port (and without IPv6 brackets)."""
        if self.registry.startswith("["):
            return self.registry[1 : self.registry.index("]")]
        return self.registry.rsplit(":", 1)[0]

    @property
    def name(self) -> str:
        """``registry/repository``: the reference without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def pinned(self, digest: str) -> Reference:
        """This reference fixed to ``digest`` (the tag is dropped)."""
        return Reference(self.registry, self.repository, None, digest)

    def with_tag(self, tag: str) -> Reference:
        """This reference with ``tag`` (and no digest)."""
        return Reference(self.registry, self.repository, tag, None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (no port) is ``localhost`` or a loopback IP address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_registry(text: str) -> tuple[str, str] | None:
    first, sep, rest = text.partition("/")
    if not sep or not _HOST_RE.match(first):
        return None
    if first != "localhost" and "." not in first and ":" not in first:
        return None
    return first, rest


def looks_like_reference(text: str) -> bool:
    """Whether ``text`` is meant as an OCI reference rather than a path or a name.

    True for anything starting with ``oci://`` (so a typo there is reported,
    not taken for a path), and for ``host/...`` where host passes Docker's
    registry-host rule. The caller checks first that no such file exists.
    """
    if text.startswith(SCHEME):
        return True
    if text.endswith(".wasm"):
        return False
    split = _split_registry(text)
    if split is None:
        return False
    try:
        parse_reference(text)
    except InvalidReferenceError:
        return False
    return True


def parse_reference(text: str) -> Reference:
    """Parse ``[oci://]host[:port]/repository[:tag][@sha256:HEX]``.

    Raises:
        InvalidReferenceError: the text does not follow the grammar above; the
            message says which part is wrong.
    """
    body = text[len(SCHEME) :] if text.startswith(SCHEME) else text
    split = _split_registry(body)
    if split is None:
        raise InvalidReferenceError(
            f"{text!r} is not an OCI reference: write [oci://]HOST[:PORT]/REPOSITORY[:TAG]"
            "[@sha256:DIGEST], with the registry host first (it has a '.' or ':', or is "
            "'localhost')"
        )
    registry, rest = split
    digest: str | None = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not DIGEST_RE.match(digest):
            raise InvalidReferenceError(
                f"{text!r}: digest {digest!r} is not sha256:<64 lowercase hex digits>"
            )
    tag: str | None = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReferenceError(
                f"{text!r}: tag {tag!r} is not valid (letters, digits, '_', '.', '-'; "
                "at most 128; no leading '.' or '-')"
            )
    components = rest.split("/")
    bad = [c for c in components if not _COMPONENT_RE.match(c)]
    if bad or not rest:
        raise InvalidReferenceError(
            f"{text!r}: repository {rest!r} is not valid (lowercase letters and digits, "
            "separated by '.', '_', '__', '-' or '/')"
        )
    if len(registry) + 1 + len(rest) > _MAX_REPOSITORY:
        raise InvalidReferenceError(f"{text!r}: the name is longer than {_MAX_REPOSITORY}")
    return Reference(registry, rest, tag, digest)
