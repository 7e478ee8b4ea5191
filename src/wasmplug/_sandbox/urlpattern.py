"""Allowed-outbound-host patterns in Spin syntax: parse them, and match URLs against them.

A pattern names a *scheme*, a *host* and a *port*, never a path::

    https://api.example.com        https, that host, port 443
    http://127.0.0.1:8080          http, that IPv4 address, port 8080
    https://[::1]:8443             https, that IPv6 address, port 8443
    https://*.example.org:8443     https, any subdomain of example.org (at any
                                   depth, but not example.org itself), port 8443
    *://api.example.com:*          http or https, that host, any port
    *://*:*                        anything (see "Wildcard hosts" below)

The rules follow Spin's ``allowed_outbound_hosts`` (``spin-outbound-networking``):

* The scheme is required: ``http``, ``https`` or ``*`` (either of the two;
  only HTTP is spoken here). Schemes and hosts are case-insensitive.
* The host is ``*``, ``*.`` followed by a domain name, a domain name, a dotted
  IPv4 address, or an IPv6 address in brackets. ``*`` anywhere else (``a*.b``,
  ``a.*.b``) is an error. Domain names are ASCII (use the ``xn--`` form for
  internationalised names); a name whose last label is all digits (``127.1``,
  ``1.2.3``) is refused, because resolvers read such names as IPv4 addresses.
* The port is a number (1-65535) or ``*``. Omitted, it is the scheme's
  default: 80 for ``http``, 443 for ``https``; for ``*://host`` it is the
  default port of whichever scheme the request uses (Spin refuses that form;
  wasmplug gives it the one meaning that cannot surprise).
* A trailing ``/`` is accepted; any other path, a query, a fragment or user
  info is an error.
* Not supported (yet): Spin's port ranges (``8000..8999``), CIDR ranges,
  ``{a,b}`` lists and the ``self`` host (here ``self`` is just a host name).

Matching compares the scheme, the host and the *effective* port (the URL's
port, or the scheme's default) of a URL that has already been parsed by the
HTTP client that will send it, so that the allow-list and the client can never
disagree about which host a URL names. A subdomain wildcard matches domain
names only, never an IP address.

Wildcard hosts: ``*`` as the host is a syntax like any other here. What makes
it safe is :func:`wasmplug._sandbox.grants.resolve`: a plugin gets the intersection of
what its manifest declares and what the application grants, compared as exact
strings, so a plugin asking for ``*://*:*`` gets it only when the application
granted exactly ``*://*:*``.

Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal

import attrs

__all__ = [
    "DEFAULT_PORTS",
    "HostPattern",
    "PatternError",
    "compile_patterns",
    "first_match",
    "normalize_host",
    "parse_pattern",
]

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
"""Default port of each scheme that patterns and requests may use."""

_SHAPE_RE = re.compile(r"^(?P<scheme>[^:/?#@]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.DOTALL)
# Used with fullmatch only: "$" would also match before a trailing newline.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DIGITS_RE = re.compile(r"[0-9]+")


class PatternError(ValueError):
    """A pattern is not valid Spin allowed-outbound-host syntax; the message says why."""


PortSpec = int | Literal["*", "default"]


@attrs.frozen
class HostPattern:
    """One parsed allowed-outbound-host pattern.

    Attributes:
        text: The pattern as written (what the manifest and the grant say).
        scheme: ``"http"``, ``"https"``, or ``None`` for ``*`` (either).
        host: The normalised host (lowercase; IPv4/IPv6 in canonical text,
            without brackets), the domain suffix when ``subdomains`` is true,
            or ``None`` for ``*`` (any host).
        subdomains: ``host`` is a suffix: the pattern matches names that end
            with ``"." + host``, and not ``host`` itself.
        port: A port number, ``"*"`` (any port) or ``"default"`` (the
            default port of the request's scheme).
    """

    text: str
    scheme: str | None
    host: str | None
    subdomains: bool
    port: PortSpec

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        """Whether a request to ``scheme://host:port`` is allowed by this pattern.

        Args:
            scheme: The URL's scheme; only ``http`` and ``https`` can match.
            host: The URL's host as the client will connect to it (ASCII; an
                IPv6 address with or without brackets). It is normalised here.
            port: The URL's explicit port, or ``None`` for the scheme's default.
        """
        scheme = scheme.lower()
        default = DEFAULT_PORTS.get(scheme)
        if default is None or (self.scheme is not None and scheme != self.scheme):
            return False
        effective = default if port is None else port
        if self.port == "default":
            if effective != default:
                return False
        elif self.port != "*" and effective != self.port:
            return False
        if self.host is None:
            return True
        name = normalize_host(host)
        if self.subdomains:
            return _is_domain(name) and name.endswith("." + self.host)
        return name == self.host

    def __str__(self) -> str:
        return self.text


def normalize_host(host: str) -> str:
    """The canonical form of a URL host, for comparisons.

    Lowercase; brackets around an IPv6 address removed and the address
    compressed (``[0:0::1]`` → ``::1``); a single trailing dot of a domain name
    removed (``example.com.`` names the same host as ``example.com``). Hosts that
    are neither an IP address nor a well-formed name are returned lowercased and
    otherwise unchanged, so they match only an identical literal, and no
    pattern accepts such a literal.
    """
    name = host.lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name).compressed
        except ValueError:
            return name
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        pass
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    return name


def _is_domain(name: str) -> bool:
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and all(_LABEL_RE.fullmatch(label) for label in labels)
        and not _DIGITS_RE.fullmatch(labels[-1])
    )


def _parse_host(host: str) -> tuple[str | None, bool]:
    """Return ``(normalised host or None for any, subdomains)`` or raise PatternError."""
    if host == "*":
        return None, False
    if host.startswith("["):
        if not host.endswith("]"):
            raise PatternError("an IPv6 address must be closed with ']'")
        inner = host[1:-1]
        if "%" in inner:
            raise PatternError("an IPv6 zone index ('%...') is not supported")
        try:
            return ipaddress.IPv6Address(inner).compressed, False
        except ValueError:
            raise PatternError(f"{inner!r} is not an IPv6 address") from None
    if ":" in host:
        raise PatternError("an IPv6 address must be in brackets, e.g. 'https://[::1]:8443'")
    subdomains = host.startswith("*.")
    name = host[2:] if subdomains else host
    if "*" in name:
        raise PatternError(
            "'*' is allowed only as the whole host or as a leading '*.' (e.g. '*.example.com')"
        )
    if not name.isascii():
        raise PatternError("use the ASCII (IDNA 'xn--') form of an internationalised host name")
    name = name.lower()
    try:
        address = str(ipaddress.IPv4Address(name))
    except ValueError:
        address = None
    if address is not None:
        if subdomains:
            raise PatternError("'*.' cannot be put in front of an IP address")
        return address, False
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    if not name:
        raise PatternError("the host is empty")
    if not _is_domain(name):
        if _DIGITS_RE.fullmatch(name.split(".")[-1]) and all(name.split(".")):
            raise PatternError(
                f"{name!r} is neither a dotted IPv4 address (a.b.c.d) nor a host name"
            )
        raise PatternError(
            f"{name!r} is not a valid host name (labels of letters, digits and inner "
            "hyphens, at most 63 characters each, separated by single dots)"
        )
    return name, subdomains


def _parse_port(port: str) -> PortSpec:
    if port == "*":
        return "*"
    if not _DIGITS_RE.fullmatch(port) or len(port) > 5:
        raise PatternError(f"port {port!r} is not a number or '*'")
    number = int(port)
    if not 1 <= number <= 65535:
        raise PatternError(f"port {number} is outside 1-65535")
    return number


def parse_pattern(text: str) -> HostPattern:
    """Parse one allowed-outbound-host pattern (syntax in the module docstring).

    Raises:
        PatternError: saying what is wrong, e.g. a missing scheme or a path.
    """
    m = _SHAPE_RE.match(text)
    if m is None:
        if "://" in text:
            raise PatternError(f"{text!r}: the scheme may only be 'http', 'https' or '*'")
        raise PatternError(
            f"{text!r} has no scheme: write <scheme>://<host>[:<port>], e.g. "
            "'https://api.example.com' ('*://*:*' allows everything)"
        )
    scheme_text, authority, rest = m["scheme"].lower(), m["authority"], m["rest"]
    if scheme_text not in ("http", "https", "*"):
        raise PatternError(f"{text!r}: the scheme may only be 'http', 'https' or '*'")
    if rest not in ("", "/"):
        raise PatternError(f"{text!r}: a pattern names a host, not a path, query or fragment")
    if "@" in authority:
        raise PatternError(f"{text!r}: a pattern must not contain user info ('...@')")
    if any(c.isspace() or not c.isprintable() for c in authority):
        raise PatternError(f"{text!r}: the host contains whitespace or control characters")
    if authority.startswith("["):
        close = authority.find("]")
        host_text, after = (
            (authority[: close + 1], authority[close + 1 :]) if close >= 0 else (authority, "")
        )
        if after and not after.startswith(":"):
            raise PatternError(f"{text!r}: unexpected {after!r} after the IPv6 address")
        port_text: str | None = after[1:] if after else None
    elif authority.count(":") == 1:
        host_text, _, port_text = authority.partition(":")
    else:
        host_text, port_text = authority, None
    try:
        host, subdomains = _parse_host(host_text)
        if port_text is None:
            port: PortSpec = "default"
        else:
            port = _parse_port(port_text)
    except PatternError as e:
        raise PatternError(f"{text!r}: {e}") from None
    scheme = None if scheme_text == "*" else scheme_text
    if port == "default" and scheme is not None:
        port = DEFAULT_PORTS[scheme]
    return HostPattern(text, scheme, host, subdomains, port)


def compile_patterns(texts: Iterable[str]) -> tuple[tuple[HostPattern, ...], tuple[str, ...]]:
    """Parse several patterns, keeping the valid ones.

    Returns:
        ``(patterns, problems)``: the parsed patterns in order, and one message
        per pattern that did not parse (it then allows nothing).
    """
    patterns: list[HostPattern] = []
    problems: list[str] = []
    for text in texts:
        try:
            patterns.append(parse_pattern(text))
        except PatternError as e:
            problems.append(str(e))
    return tuple(patterns), tuple(problems)


def first_match(
    patterns: Iterable[HostPattern], scheme: str, host: str, port: int | None
) -> HostPattern | None:
    """The first pattern that allows ``scheme://host:port``, or ``None`` (denied).

    ``port`` is the URL's explicit port, ``None`` meaning the scheme's default.
    """
    for pattern in patterns:
        if pattern.matches(scheme, host, port):
            return pattern
    return None
