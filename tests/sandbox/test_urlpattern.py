"""The allow-list patterns of outbound HTTP (Spin syntax): parsing and matching,
with examples and property-based tests."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmplug._sandbox.capabilities import check_host_pattern as _check_host_pattern
from wasmplug._sandbox.urlpattern import (
    PatternError,
    compile_patterns,
    first_match,
    normalize_host,
    parse_pattern,
)

# ---------------------------------------------------------------------------
# Patterns: parsing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "host", "subdomains", "port"),
    [
        ("https://api.example.com", "https", "api.example.com", False, 443),
        ("http://api.example.com", "http", "api.example.com", False, 80),
        ("https://api.example.com/", "https", "api.example.com", False, 443),
        ("HTTPS://API.Example.COM", "https", "api.example.com", False, 443),
        ("https://*.example.org:8443", "https", "example.org", True, 8443),
        ("http://127.0.0.1:8080", "http", "127.0.0.1", False, 8080),
        ("https://[::1]:8443", "https", "::1", False, 8443),
        ("https://[0:0:0:0:0:0:0:1]", "https", "::1", False, 443),
        ("*://api.example.com:*", None, "api.example.com", False, "*"),
        ("*://api.example.com", None, "api.example.com", False, "default"),
        ("*://*:*", None, None, False, "*"),
        ("https://*", "https", None, False, 443),
        ("http://localhost:3000", "http", "localhost", False, 3000),
        ("https://example.com.", "https", "example.com", False, 443),
        ("https://xn--bcher-kva.example", "https", "xn--bcher-kva.example", False, 443),
    ],
)
def test_valid_patterns(
    text: str, scheme: str | None, host: str | None, subdomains: bool, port: object
) -> None:
    p = parse_pattern(text)
    assert (p.scheme, p.host, p.subdomains, p.port) == (scheme, host, subdomains, port)
    assert str(p) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("api.example.com", "no scheme"),
        ("*", "no scheme"),
        ("", "no scheme"),
        ("ftp://example.com", "scheme may only be"),
        ("postgres://db.example.com:5432", "scheme may only be"),
        ("https://example.com/api", "not a path"),
        ("https://example.com?q=1", "not a path"),
        ("https://example.com#x", "not a path"),
        ("https://user@example.com", "user info"),
        ("https://", "host is empty"),
        ("https://:443", "host is empty"),
        ("https://a*.example.com", "only as the whole host"),
        ("https://api.*.example.com", "only as the whole host"),
        ("https://*.*", "only as the whole host"),
        ("https://*.127.0.0.1", "in front of an IP address"),
        ("https://127.1", "neither a dotted IPv4"),
        ("https://1.2.3.999", "neither a dotted IPv4"),
        ("https://0x7f.1", "neither a dotted IPv4"),
        ("https://-bad-.example.com", "not a valid host name"),
        ("https://a..b", "not a valid host name"),
        ("https://under_score.example.com", "not a valid host name"),
        ("https://bücher.example", "IDNA"),
        ("https://::1", "in brackets"),
        ("https://[::1", "closed with"),
        ("https://[nope]", "not an IPv6 address"),
        ("https://[fe80::1%eth0]", "zone index"),
        ("https://[::1]x", "after the IPv6"),
        ("https://example.com:", "not a number"),
        ("https://example.com:0", "outside 1-65535"),
        ("https://example.com:65536", "outside 1-65535"),
        ("https://example.com:8000..8999", "not a number"),
        ("https://example.com:-1", "not a number"),
        ("https://exa mple.com", "whitespace"),
        ("https://example.com\n", "whitespace"),
    ],
)
def test_invalid_patterns(text: str, why: str) -> None:
    with pytest.raises(PatternError, match=re.escape(why)):
        parse_pattern(text)


def test_compile_patterns_keeps_the_valid_ones() -> None:
    patterns, problems = compile_patterns(["https://a.example", "nope", "http://b.example:81"])
    assert [p.text for p in patterns] == ["https://a.example", "http://b.example:81"]
    assert len(problems) == 1
    assert "'nope'" in problems[0]


# ---------------------------------------------------------------------------
# Patterns: matching
# ---------------------------------------------------------------------------

MATCHES = [
    # pattern, url (scheme, host, explicit port or None), allowed
    ("https://api.example.com", ("https", "api.example.com", None), True),
    ("https://api.example.com", ("https", "API.EXAMPLE.COM", None), True),
    ("https://api.example.com", ("https", "api.example.com.", None), True),
    ("https://api.example.com", ("https", "api.example.com", 443), True),
    ("https://api.example.com", ("http", "api.example.com", None), False),
    ("https://api.example.com", ("https", "api.example.com", 8443), False),
    ("https://api.example.com", ("https", "example.com", None), False),
    ("https://api.example.com", ("https", "x.api.example.com", None), False),
    ("https://api.example.com", ("https", "api.example.com.evil.net", None), False),
    ("https://api.example.com", ("https", "evilapi.example.com", None), False),
    ("https://*.example.org:8443", ("https", "a.example.org", 8443), True),
    ("https://*.example.org:8443", ("https", "a.b.example.org", 8443), True),
    ("https://*.example.org:8443", ("https", "example.org", 8443), False),
    ("https://*.example.org:8443", ("https", "badexample.org", 8443), False),
    ("https://*.example.org:8443", ("https", "a.example.org", None), False),
    ("https://*.example.org:8443", ("http", "a.example.org", 8443), False),
    ("https://*.example.org:8443", ("https", ".example.org", 8443), False),
    ("https://*.example.org:8443", ("https", "a..example.org", 8443), False),
    ("https://*.example.org:8443", ("https", "a.example.org\n", 8443), False),
    ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080), True),
    ("http://127.0.0.1:8080", ("http", "localhost", 8080), False),
    ("http://127.0.0.1:8080", ("http", "127.1", 8080), False),
    ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8081), False),
    ("http://localhost:8080", ("http", "127.0.0.1", 8080), False),
    ("https://[::1]:8443", ("https", "::1", 8443), True),
    ("https://[::1]:8443", ("https", "[0:0::1]", 8443), True),
    ("https://[::1]:8443", ("https", "127.0.0.1", 8443), False),
    ("*://api.example.com", ("http", "api.example.com", None), True),
    ("*://api.example.com", ("https", "api.example.com", None), True),
    ("*://api.example.com", ("https", "api.example.com", 80), False),
    ("*://api.example.com", ("ftp", "api.example.com", None), False),
    ("*://api.example.com:*", ("http", "api.example.com", 8000), True),
    ("http://api.example.com:*", ("http", "api.example.com", 1), True),
    ("http://api.example.com:*", ("https", "api.example.com", 1), False),
    ("*://*:*", ("https", "anything.example", 1234), True),
    ("*://*:*", ("http", "10.0.0.1", None), True),
    ("*://*:*", ("file", "localhost", None), False),
    ("https://*", ("https", "anything.example", None), True),
    ("https://*", ("https", "anything.example", 8443), False),
    ("https://*.example.org", ("https", "1.2.3.4", None), False),
]


@pytest.mark.parametrize(("pattern", "url", "allowed"), MATCHES, ids=lambda v: str(v))
def test_matching(pattern: str, url: tuple[str, str, int | None], allowed: bool) -> None:
    assert parse_pattern(pattern).matches(*url) is allowed


def test_first_match_returns_the_matching_pattern() -> None:
    patterns, _ = compile_patterns(["https://a.example", "https://*.b.example"])
    assert first_match(patterns, "https", "x.b.example", None) is patterns[1]
    assert first_match(patterns, "https", "c.example", None) is None
    assert first_match((), "https", "a.example", None) is None


def test_normalize_host() -> None:
    assert normalize_host("[0:0::1]") == "::1"
    assert normalize_host("Example.COM.") == "example.com"
    assert normalize_host("127.0.0.1") == "127.0.0.1"
    assert normalize_host("a..") == "a.."


def test_the_manifest_validates_patterns_with_the_same_parser() -> None:
    for text in ["https://*.example.org:8443", "*://*:*", "http://[::1]:80", "https://a-b.c"]:
        assert _check_host_pattern(text) is None
        parse_pattern(text)
    for text in ["http://127.1", "https://a..b", "http://x:0", "ftp://x", "https://x/path"]:
        problem = _check_host_pattern(text)
        assert problem is not None
        assert text in problem


_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_IPV4 = st.ip_addresses(v=4).map(str)
_IPV6 = st.ip_addresses(v=6).map(str)
_HOSTISH = st.one_of(
    _DOMAIN,
    _IPV4,
    _IPV6,
    _IPV6.map(lambda a: f"[{a}]"),
    st.builds(lambda a, b: f"{a}.{b}", _LABEL, _DOMAIN),
    st.text(alphabet="abcxyz.-_*:[]%@/0123456789ABC", max_size=30),
    st.text(max_size=20),
)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_parse_pattern_never_crashes(text: str) -> None:
    try:
        p = parse_pattern(text)
    except PatternError:
        return
    assert p.scheme in (None, "http", "https")
    assert p.port == "*" or p.port == "default" or 1 <= int(p.port) <= 65535


def _near_misses(host: str, wildcard: bool) -> dict[str, bool]:
    """Hosts derived from a pattern's host, each with whether the pattern must match it.

    Look-alikes (``hostx``, ``xhost``, ``host.evil``, ``host-evil``, a sibling IP) never
    match; subdomains match only a ``*.`` pattern, which never matches the bare host.
    """
    exact = not wildcard
    cands = {
        host: exact,
        host.upper(): exact,
        f"sub.{host}": wildcard,
        f"a.b.{host}": wildcard,
        f"{host}x": False,
        f"x{host}": False,
        f"{host}.evil": False,
        f"{host}-evil": False,
        f"evil-{host}": False,
        f"evil.com/{host}": False,
        f"{host}@evil.com": False,
    }
    if not wildcard:
        cands[f"{host}."] = True  # a trailing dot names the same host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return cands
    sibling = ipaddress.ip_address(int(ip) ^ 1)
    # In brackets it is still the same address.
    return {host: True, f"[{host}]": True, str(sibling): False, f"{host}.evil": False,
            f"{host}x": False}  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["http", "https", "*"]),
    st.one_of(_DOMAIN, _IPV4, _IPV6),
    st.booleans(),
    st.one_of(st.none(), st.just("*"), st.integers(1, 65535)),
)
def test_a_pattern_never_matches_a_different_host(
    scheme: str, host: str, wildcard: bool, port: int | str | None
) -> None:
    """Every example checks hosts derived from its own pattern (none are filtered out)."""
    is_ip = _is_ip(host)
    wildcard = wildcard and not is_ip
    shown = f"[{host}]" if ":" in host else host
    text = f"{scheme}://{'*.' if wildcard else ''}{shown}{'' if port is None else f':{port}'}"
    p = parse_pattern(text)
    url_scheme = "https" if scheme == "*" else scheme
    default = {"http": 80, "https": 443}[url_scheme]
    url_port = port if isinstance(port, int) else None
    for candidate, expected in _near_misses(host, wildcard).items():
        assert p.matches(url_scheme, candidate, url_port) is expected, (text, candidate)
    # The right host on the wrong scheme or port never matches either.
    if scheme != "*":
        other = "http" if scheme == "https" else "https"
        assert not p.matches(other, host if not wildcard else f"a.{host}", url_port)
    if port != "*":
        wrong = (port if isinstance(port, int) else default) % 65535 + 1
        assert not p.matches(url_scheme, host if not wildcard else f"a.{host}", wrong), text


def test_a_pattern_matches_its_own_target() -> None:
    @settings(max_examples=30, deadline=None)
    @given(
        st.sampled_from(["http", "https"]),
        st.one_of(_DOMAIN, _IPV4, _IPV6.map(lambda a: f"[{a}]")),
        st.integers(1, 65535),
    )
    def check(scheme: str, host: str, port: int) -> None:
        assert parse_pattern(f"{scheme}://{host}:{port}").matches(scheme, host, port)

    check()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
