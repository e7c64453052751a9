"""Address and URL checks: what the fetcher may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from monitor.netsafety import (
    BLOCKED_NETWORKS,
    EMBEDDING_NETWORKS,
    address_refusal,
    origin,
    url_refusal,
)


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("0.0.0.0", "this-network"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("192.0.0.8", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd00::1", "unique-local"),
        ("fc00::1", "unique-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("100::1", "discard-only"),
        ("64:ff9b:1::1", "private"),
    ],
)
def test_address_refusal_names_the_blocked_range(ip: str, reason: str) -> None:
    assert address_refusal(ip) == reason


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("::ffff:127.0.0.1", "loopback (embedded 127.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (embedded 169.254.169.254)"),
        ("::ffff:a00:1", "private (embedded 10.0.0.1)"),
        ("::127.0.0.1", "loopback (embedded 127.0.0.1)"),
        ("64:ff9b::7f00:1", "loopback (embedded 127.0.0.1)"),
        ("64:ff9b::a9fe:a9fe", "link-local (embedded 169.254.169.254)"),
        ("2002:7f00:1::1", "loopback (embedded 127.0.0.1)"),
        ("2002:c0a8:101::", "private (embedded 192.168.1.1)"),
        # Teredo: client address is the last 32 bits inverted (here 127.0.0.1)
        ("2001:0:808:808:0:0:80ff:fffe", "loopback (embedded 127.0.0.1)"),
    ],
)
def test_ipv6_forms_carrying_ipv4_are_judged_by_the_embedded_address(ip: str, reason: str) -> None:
    assert address_refusal(ip) == reason


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "100.63.255.255",  # just below CGNAT
        "100.128.0.0",  # just above CGNAT
        "172.15.255.255",
        "172.32.0.0",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of a public address
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert address_refusal(ip) is None


@pytest.mark.parametrize("ip", ["", "localhost", "127.1", "1.2.3.4.5", "::g"])
def test_non_addresses_are_refused(ip: str) -> None:
    assert address_refusal(ip) == "not an IP address"


def test_every_blocked_network_refuses_its_first_and_last_address() -> None:
    for net in BLOCKED_NETWORKS:
        for addr in (net.network_address, net.broadcast_address):
            assert address_refusal(str(addr)) is not None, (net, addr)


def test_embedding_networks_with_a_loopback_inside_are_refused() -> None:
    loopback = int(ipaddress.IPv4Address("127.0.0.1"))
    for net in EMBEDDING_NETWORKS:
        if net == ipaddress.IPv6Network("2001::/32"):
            continue  # Teredo inverts the client bits; covered above
        if net == ipaddress.IPv6Network("2002::/16"):
            addr = ipaddress.IPv6Address(int(net.network_address) | (loopback << 80))
        else:
            addr = ipaddress.IPv6Address(int(net.network_address) | loopback)
        assert address_refusal(str(addr)) == "loopback (embedded 127.0.0.1)", net


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/feed", None),
        ("https://example.com:8443/feed?x=1", None),
        ("HTTPS://EXAMPLE.com/", None),
        ("http://[2606:4700::1]/", None),
        ("http://bücher.example/", None),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("ftp://example.com/", "scheme 'ftp' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("gopher://127.0.0.1:25/", "scheme 'gopher' is not allowed"),
        ("example.com/feed", "scheme '(none)' is not allowed"),
        ("http:///path", "URL has no host"),
        ("http://user:pw@example.com/", "credentials in URL are not allowed"),
        ("http://example.com@169.254.169.254/", "credentials in URL are not allowed"),
        ("http://example.com/a\r\nX-Injected: 1", "URL contains forbidden character '\\r'"),
        ("http://example.com/a b", "URL contains forbidden character ' '"),
        ("http://example.com\\@evil.test/", "URL contains forbidden character '\\\\'"),
        ("http://2130706433/", "host '2130706433' is not a canonical IPv4 address"),
        ("http://127.1/", "host '127.1' is not a canonical IPv4 address"),
        ("http://0177.0.0.1/", "host '0177.0.0.1' is not a canonical IPv4 address"),
        ("http://%31%32%37.0.0.1/", "host '%31%32%37.0.0.1' is percent-encoded"),
        ("http://example.com:99999/", "Port out of range 0-65535"),
        (
            "http://exa$mple.com/",
            "host 'exa$mple.com' contains characters not allowed in a host name",
        ),
    ],
)
def test_url_refusal(url: str, reason: str | None) -> None:
    assert url_refusal(url) == reason


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/feed.xml", "http://example.com:80"),
        ("HTTP://Example.COM:80/x", "http://example.com:80"),
        ("https://example.com/", "https://example.com:443"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("http://127.0.0.1:8080/feed", "http://127.0.0.1:8080"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("http://bücher.example/", "http://xn--bcher-kva.example:80"),
    ],
)
def test_origin_normalizes_spellings_of_one_origin(url: str, expected: str) -> None:
    assert origin(url) == expected


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http:///x", "mailto:a@b.example"])
def test_origin_rejects_urls_without_an_http_origin(url: str) -> None:
    with pytest.raises(ValueError):
        origin(url)
