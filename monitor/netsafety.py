"""Which addresses and URLs the fetcher may touch (pure; no I/O).

Article links come from untrusted feed content, so a link may point at the
metadata service, the router, or a database on localhost. Every address the
fetcher connects to is checked here first (SPEC section 7).

The networks are listed explicitly instead of using ``ipaddress``'s
``is_private`` / ``is_global``: on Python 3.11.7 those are wrong for some
ranges (CVE-2024-4032, fixed in 3.11.10), and 100.64.0.0/10 is neither.

IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64,
6to4, Teredo) are judged by the embedded IPv4 address, because that is where
the packets end up.
"""

from __future__ import annotations

import functools
import ipaddress
import string
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, reason). Order matters only for the reason reported: the first
# network that contains the address names it.
_BLOCKED: tuple[tuple[Network, str], ...] = (
    # IPv4
    (_V4("0.0.0.0/8"), "this-network"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared (CGNAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes 255.255.255.255 broadcast
    # IPv6
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private"),  # local-use NAT64 (RFC 8215)
    (_V6("100::/64"), "discard-only"),
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("2001:10::/28"), "reserved"),  # ORCHID (deprecated)
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),  # RFC 9637
    (_V6("5f00::/16"), "reserved"),  # SRv6 SIDs (RFC 9602)
    (_V6("fc00::/7"), "unique-local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
    # The rest of ::/8 (after the IPv4-carrying forms are unwrapped) is
    # reserved by the IETF and never a public web server.
    (_V6("::/8"), "reserved"),
)

BLOCKED_NETWORKS: tuple[Network, ...] = tuple(net for net, _ in _BLOCKED)
"""Networks refused outright, for every address family."""

# IPv6 prefixes whose addresses carry an IPv4 address; that one is checked.
_MAPPED = _V6("::ffff:0:0/96")
_COMPATIBLE = _V6("::/96")  # deprecated IPv4-compatible form
_NAT64 = _V6("64:ff9b::/96")
_SIXTO4 = _V6("2002::/16")
_TEREDO = _V6("2001::/32")

EMBEDDING_NETWORKS: tuple[Network, ...] = (_MAPPED, _COMPATIBLE, _NAT64, _SIXTO4, _TEREDO)
"""IPv6 networks judged by the IPv4 address they embed."""

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Control characters and whitespace: a URL carrying them is either broken or
# an attempt to smuggle a header / confuse a parser.
_FORBIDDEN_CHARS = frozenset(chr(c) for c in range(0x21)) | {"\x7f", "\\"}


def _v4_reason(addr: ipaddress.IPv4Address) -> str | None:
    for net, reason in _BLOCKED:
        if net.version == 4 and addr in net:
            return reason
    return None


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address routes to, if it is of such a form."""
    if addr in _MAPPED:
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    if addr in _NAT64:
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    if addr in _SIXTO4:
        return [ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFFFFFF)]
    if addr in _TEREDO:
        server, client = addr.teredo or (None, None)
        return [a for a in (server, client) if a is not None]
    # ::/96 also holds :: and ::1, which the main list names better.
    if addr in _COMPATIBLE and int(addr) > 1:
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    return []


@functools.lru_cache(maxsize=4096)
def address_refusal(ip: str) -> str | None:
    """Return why connecting to ``ip`` is refused, or None if it is public.

    ``ip`` is a literal IPv4 or IPv6 address (an IPv6 zone such as
    ``%eth0`` is allowed and ignored). Anything that does not parse as an
    address is refused with "not an IP address".
    """
    try:
        addr: Address = ipaddress.ip_address(ip)
    except ValueError:
        return "not an IP address"
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_reason(addr)
    if addr.scope_id:
        addr = ipaddress.IPv6Address(int(addr))
    embedded = _embedded_v4(addr)
    for v4 in embedded:
        reason = _v4_reason(v4)
        if reason is not None:
            return f"{reason} (embedded {v4})"
    if embedded:
        return None
    for net, reason in _BLOCKED:
        if net.version == 6 and addr in net:
            return reason
    return None


def _split(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an absolute http(s) URL; ValueError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname  # lowercased, brackets removed
    if scheme not in _ALLOWED_SCHEMES:
        raise ValueError(f"scheme {scheme or '(none)'!r} is not allowed")
    if not host:
        raise ValueError("URL has no host")
    port = parts.port  # raises ValueError when out of range or not a number
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise ValueError(f"host {host!r} is not a valid name") from exc
    return scheme, host, port


def origin(url: str) -> str:
    """Return ``scheme://host:port`` of an http(s) URL, normalized.

    Scheme and host are lowercased, an internationalized host is IDNA
    encoded, the default port is written out and an IPv6 host is bracketed,
    so two spellings of one origin compare equal. Raises ValueError for a
    URL that has no such origin.
    """
    scheme, host, port = _split(url)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def is_canonical_ipv4(host: str) -> bool:
    """True for a dotted quad of four decimal numbers 0-255 without leading zeros."""
    parts = host.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and p.isascii() and (p == "0" or not p.startswith("0")) and int(p) < 256
        for p in parts
    )


def url_refusal(url: str) -> str | None:
    """Return why ``url`` must not be fetched, or None if it may be.

    Refused: schemes other than http and https, missing host, credentials
    in the URL (``http://trusted@evil/`` tricks), control characters,
    whitespace or backslashes, and legacy numeric IPv4 spellings such as
    ``http://2130706433/`` that resolvers map onto an address. The address
    itself is checked later, on the resolved IP.
    """
    bad = next((c for c in url if c in _FORBIDDEN_CHARS), None)
    if bad is not None:
        return f"URL contains forbidden character {bad!r}"
    try:
        _scheme, host, _port = _split(url)
    except ValueError as exc:
        return str(exc)
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return "credentials in URL are not allowed"
    if host.replace(".", "").isdigit() and not is_canonical_ipv4(host):
        return f"host {host!r} is not a canonical IPv4 address"
    if "%" in host and ":" not in host:  # a zone id is the only legitimate use
        return f"host {host!r} is percent-encoded"
    if not all(c in _HOST_CHARS for c in host):
        return f"host {host!r} contains characters not allowed in a host name"
    return None


_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-._:%")
