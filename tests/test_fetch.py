"""The fetch stage against a real local server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import resource
import socket
import tracemalloc
from collections.abc import Iterator

import pytest

from monitor.fetch import CheckingResolver, Fetcher, FetchPolicy, parse_retry_after
from monitor.types import FetchResult
from tests.hostile_server import (
    FEED_ETAG,
    FEED_LAST_MODIFIED,
    HostileServer,
    StaticResolver,
    hostile_server,
)
from tests.hostile_server import feed_body as expected_feed

UA = "rss-monitor-test/1.0 (+https://example.invalid/)"


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with hostile_server() as running:
        yield running


def policy(server: HostileServer, **changes: object) -> FetchPolicy:
    """A policy that trusts the test server's origin (as if it were a configured feed)."""
    base = FetchPolicy(
        user_agent=UA,
        timeout=5.0,
        connect_timeout=2.0,
        read_timeout=2.0,
        allowed_origins=frozenset({server.url}),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def fetch_one(
    url: str,
    pol: FetchPolicy,
    resolver: StaticResolver | None = None,
    **kwargs: str,
) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(pol, resolver=resolver) as fetcher:
            return await fetcher.fetch(url, **kwargs)

    return asyncio.run(go())


def fetch_many(
    urls: list[str], pol: FetchPolicy, resolver: StaticResolver | None = None
) -> list[FetchResult]:
    async def go() -> list[FetchResult]:
        async with Fetcher(pol, resolver=resolver) as fetcher:
            return list(await asyncio.gather(*(fetcher.fetch(u) for u in urls)))

    return asyncio.run(go())


# -- the ordinary case ------------------------------------------------------


def test_plain_fetch_returns_body_and_validators(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/feed", policy(server))
    assert (result.ok, result.status, result.body) == (True, 200, expected_feed())
    assert (result.etag, result.last_modified) == (FEED_ETAG, FEED_LAST_MODIFIED)
    assert result.final_url == f"{server.url}/feed"
    assert result.headers["content-type"] == "application/rss+xml"
    assert result.elapsed > 0


def test_request_carries_user_agent_accept_and_compression(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/echo", policy(server), accept="text/html")
    sent = json.loads(result.body)
    assert sent["User-Agent"] == UA
    assert sent["Accept"] == "text/html"
    assert sent["Accept-Encoding"] == "gzip, deflate, br"
    assert "Cookie" not in sent


@pytest.mark.parametrize(
    "validators",
    [{"etag": FEED_ETAG}, {"last_modified": FEED_LAST_MODIFIED}],
)
def test_conditional_get_gives_not_modified(
    server: HostileServer, validators: dict[str, str]
) -> None:
    result = fetch_one(f"{server.url}/feed", policy(server), **validators)
    assert (result.ok, result.status, result.not_modified, result.body) == (True, 304, True, b"")
    assert (result.etag, result.last_modified) == (FEED_ETAG, FEED_LAST_MODIFIED)


def test_stale_etag_gets_the_full_body(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/feed", policy(server), etag='"old"')
    assert (result.status, result.not_modified, result.body) == (200, False, expected_feed())


# -- deadlines --------------------------------------------------------------


def test_server_that_never_answers_is_cut_at_the_read_timeout(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/hang", policy(server, read_timeout=0.3, timeout=3.0))
    assert result.error_kind == "timeout"
    assert result.error == "no data from 127.0.0.1 for 0.3 s"
    assert result.elapsed < 2.0


def test_slowloris_trickle_is_cut_at_the_total_deadline(server: HostileServer) -> None:
    # A byte every 0.2 s never trips the 0.5 s read gap; only the deadline stops it.
    result = fetch_one(f"{server.url}/slowloris", policy(server, read_timeout=0.5, timeout=0.8))
    assert result.error_kind == "timeout"
    assert result.error == "total deadline of 0.8 s passed"
    assert 0.8 <= result.elapsed < 2.0


def test_unreachable_port_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed"
    pol = FetchPolicy(user_agent=UA, allowed_origins=frozenset({f"http://127.0.0.1:{port}"}))
    result = fetch_one(url, pol)
    assert (result.error_kind, result.status) == ("connection", None)


# -- size limits ------------------------------------------------------------


def test_endless_body_stops_at_the_size_cap(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/endless", policy(server, max_bytes=1_000_000))
    assert result.error_kind == "too_large"
    assert result.error == "body exceeds the 1000000 byte cap (decompressed)"
    assert result.body == b""


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compression_bomb_stops_at_the_decompressed_cap(
    server: HostileServer, encoding: str
) -> None:
    result = fetch_one(f"{server.url}/bomb/{encoding}", policy(server, max_bytes=1_000_000))
    assert result.error_kind == "too_large"
    assert "decompressed" in (result.error or "")


def test_body_at_the_cap_is_accepted(server: HostileServer) -> None:
    size = len(expected_feed())
    assert fetch_one(f"{server.url}/feed", policy(server, max_bytes=size)).ok
    assert not fetch_one(f"{server.url}/feed", policy(server, max_bytes=size - 1)).ok


def test_memory_stays_bounded_while_fetching_bombs_and_endless_bodies(
    server: HostileServer,
) -> None:
    # 100 MiB bombs and an endless body, with the default 10 MiB cap: the
    # process may hold the capped body (plus one copy) but never the rest.
    fetch_one(f"{server.url}/bomb/gzip", policy(server, max_bytes=1000))  # warm the bomb cache
    bound = 100 * 1024 * 1024
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        for path in ("/bomb/gzip", "/bomb/deflate", "/bomb/br", "/endless"):
            result = fetch_one(f"{server.url}{path}", policy(server))
            assert result.error_kind == "too_large", path
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert peak < bound, f"traced peak {peak / 2**20:.1f} MiB"
    assert rss_growth < bound, f"peak RSS grew {rss_growth / 2**20:.1f} MiB"


def test_oversized_header_line_is_too_large(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/huge-headers?size=20000", policy(server))
    assert result.error_kind == "too_large"
    assert result.error == "a response header line exceeds 16384 bytes"


def test_header_within_the_policy_limit_passes(server: HostileServer) -> None:
    # 10 KB is over aiohttp's 8190 default: the policy's limit is the one applied.
    result = fetch_one(f"{server.url}/huge-headers?size=10000", policy(server))
    assert (result.ok, len(result.headers["x-huge"])) == (True, 10000)


# -- broken connections -----------------------------------------------------


def test_connection_reset_mid_body_is_a_connection_error(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/reset", policy(server))
    assert result.error_kind == "connection"
    assert result.error == "connection reset by 127.0.0.1 mid-body"


def test_body_shorter_than_its_content_length_is_a_protocol_error(
    server: HostileServer,
) -> None:
    result = fetch_one(f"{server.url}/lying-length", policy(server))
    assert result.error_kind == "protocol"
    assert "received 100 of 100000 bytes" in (result.error or "")


# -- redirects --------------------------------------------------------------


def test_redirect_to_another_loopback_origin_is_refused(server: HostileServer) -> None:
    before = server.hits["/feed"]
    result = fetch_one(f"{server.url}/redirect/other-port", policy(server))
    assert result.error_kind == "refused"
    assert result.error == "refused: 127.0.0.1 is loopback"
    assert result.final_url == f"{server.other_url}/feed"
    assert server.hits["/feed"] == before  # neither port served the target


def test_redirect_to_the_metadata_service_is_refused(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/redirect/metadata", policy(server))
    assert result.error_kind == "refused"
    assert result.error == "refused: 169.254.169.254 is link-local"


def test_redirect_to_a_file_url_is_refused(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/redirect/file", policy(server))
    assert result.error_kind == "refused"
    assert result.error == (
        "refused redirect to 'file:///etc/passwd': scheme 'file' is not allowed"
    )


def test_allow_private_lets_a_redirect_reach_another_loopback_port(
    server: HostileServer,
) -> None:
    pol = policy(server, allow_private=True, allowed_origins=frozenset())
    result = fetch_one(f"{server.url}/redirect/other-port", pol)
    assert (result.ok, result.body) == (True, expected_feed())


def test_redirect_loop_is_detected(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/redirect/loop", policy(server))
    assert result.error_kind == "redirects"
    assert result.error == f"redirect loop at {server.url}/redirect/loop"


@pytest.mark.parametrize(
    ("hops", "ok"),
    [(5, True), (6, False)],
)
def test_at_most_five_redirects_are_followed(server: HostileServer, hops: int, ok: bool) -> None:
    result = fetch_one(f"{server.url}/redirect/chain/{hops}", policy(server))
    assert result.ok is ok
    if not ok:
        assert (result.error_kind, result.error) == ("redirects", "more than 5 redirects")


def test_redirect_without_location_is_an_error(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/redirect/no-location", policy(server))
    assert (result.error_kind, result.status) == ("redirects", 302)


@pytest.mark.parametrize(
    ("path", "permanent"),
    [
        ("/redirect/permanent", "/feed"),
        ("/redirect/permanent308", "/feed"),
        ("/redirect/permanent-then-temp", "/redirect/temp"),
        ("/redirect/chain/1", None),
        ("/feed", None),
    ],
)
def test_permanent_redirect_reports_the_end_of_the_301_308_chain(
    server: HostileServer, path: str, permanent: str | None
) -> None:
    result = fetch_one(f"{server.url}{path}", policy(server))
    assert result.ok
    assert result.final_url == f"{server.url}/feed"
    expected = f"{server.url}{permanent}" if permanent else None
    assert result.permanent_redirect == expected


# -- resolution ------------------------------------------------------------


def test_host_name_resolving_to_loopback_is_refused_before_connecting(
    server: HostileServer,
) -> None:
    resolver = StaticResolver({"feeds.test": ["127.0.0.1"]})
    before = server.hits["/feed"]
    result = fetch_one(f"http://feeds.test:{server.port}/feed", policy(server), resolver)
    assert result.error_kind == "refused"
    assert result.error == "refused: feeds.test resolves to 127.0.0.1, which is loopback"
    assert server.hits["/feed"] == before


def test_redirect_to_a_name_resolving_to_link_local_is_refused(server: HostileServer) -> None:
    resolver = StaticResolver({"metadata.test": ["169.254.169.254"]})
    result = fetch_one(f"{server.url}/redirect/to-host/metadata.test", policy(server), resolver)
    assert result.error_kind == "refused"
    assert result.error == (
        "refused: metadata.test resolves to 169.254.169.254, which is link-local"
    )
    assert resolver.calls["metadata.test"] == 1


def test_host_name_of_a_configured_origin_may_resolve_to_loopback(server: HostileServer) -> None:
    resolver = StaticResolver({"feeds.test": ["127.0.0.1"]})
    origin = f"http://feeds.test:{server.port}"
    pol = policy(server, allowed_origins=frozenset({origin}))
    result = fetch_one(f"{origin}/feed", pol, resolver)
    assert (result.ok, result.body) == (True, expected_feed())


def test_unknown_host_is_a_connection_error(server: HostileServer) -> None:
    result = fetch_one("http://nowhere.test/feed", policy(server), StaticResolver({}))
    assert result.error_kind == "connection"
    assert result.error == "cannot resolve nowhere.test: unknown host nowhere.test"


def test_checking_resolver_hands_on_only_public_addresses() -> None:
    base = StaticResolver({"mixed.test": ["10.0.0.1", "93.184.216.34", "::1", "2606:4700::1"]})
    resolved = asyncio.run(CheckingResolver(base).resolve("mixed.test", 80))
    assert [r["host"] for r in resolved] == ["93.184.216.34", "2606:4700::1"]


def test_checking_resolver_exempts_only_the_configured_host_and_port() -> None:
    base = StaticResolver({"intranet.test": ["10.0.0.5"]})
    checking = CheckingResolver(base, exempt=frozenset({("intranet.test", 8080)}))
    assert [r["host"] for r in asyncio.run(checking.resolve("intranet.test", 8080))] == ["10.0.0.5"]
    with pytest.raises(OSError, match=r"10\.0\.0\.5, which is private"):
        asyncio.run(checking.resolve("intranet.test", 80))


@pytest.mark.parametrize(
    ("url", "kind", "error"),
    [
        ("http://169.254.169.254/latest/", "refused", "refused: 169.254.169.254 is link-local"),
        ("http://10.0.0.1/", "refused", "refused: 10.0.0.1 is private"),
        ("http://[::1]/", "refused", "refused: ::1 is loopback"),
        (
            "http://[::ffff:127.0.0.1]/",
            "refused",
            "refused: ::ffff:127.0.0.1 is loopback (embedded 127.0.0.1)",
        ),
        ("http://0.0.0.0/", "refused", "refused: 0.0.0.0 is this-network"),
        (
            "http://2130706433/",
            "invalid_url",
            "host '2130706433' is not a canonical IPv4 address",
        ),
        ("file:///etc/passwd", "invalid_url", "scheme 'file' is not allowed"),
        ("ftp://example.com/feed", "invalid_url", "scheme 'ftp' is not allowed"),
    ],
)
def test_forbidden_urls_are_refused_without_any_network(url: str, kind: str, error: str) -> None:
    # An empty resolver table: any lookup would fail as "connection".
    pol = FetchPolicy(user_agent=UA, connect_timeout=0.5, timeout=1.0)
    result = fetch_one(url, pol, StaticResolver({}))
    assert (result.error_kind, result.error, result.status) == (kind, error, None)


# -- status codes and politeness --------------------------------------------


def test_429_reports_retry_after_seconds(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/retry/429?after=120", policy(server))
    assert (result.status, result.error_kind, result.retry_after) == (429, "http", 120.0)


def test_503_reports_retry_after_from_an_http_date(server: HostileServer) -> None:
    result = fetch_one(f"{server.url}/retry/503-date?in=90", policy(server))
    assert (result.status, result.error_kind) == (503, "http")
    assert result.retry_after is not None
    assert 85 <= result.retry_after <= 90  # whole-second date, seconds of test time


@pytest.mark.parametrize(
    ("code", "kind"),
    [(410, "gone"), (404, "http"), (500, "http"), (403, "http")],
)
def test_error_statuses_are_values(server: HostileServer, code: int, kind: str) -> None:
    result = fetch_one(f"{server.url}/status/{code}", policy(server))
    assert (result.status, result.error_kind, result.retry_after) == (code, kind, None)
    assert result.body == b""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Thu, 01 Jan 1970 00:02:00 GMT", 60.0),  # now = 60
        ("Thu, 01 Jan 1970 00:00:30 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=60.0) == expected


def test_per_host_limit_caps_concurrent_requests_to_one_host(server: HostileServer) -> None:
    urls = [f"{server.url}/feed/limited?delay=0.1"] * 6
    results = fetch_many(urls, policy(server, per_host_limit=2))
    assert all(r.ok for r in results)
    assert server.peak_active["/feed/limited"] == 2


def test_total_limit_caps_concurrent_requests_overall(server: HostileServer) -> None:
    urls = [f"{server.url}/feed/total?delay=0.1"] * 6
    results = fetch_many(urls, policy(server, per_host_limit=10, total_limit=3))
    assert all(r.ok for r in results)
    assert server.peak_active["/feed/total"] == 3


def test_min_host_spacing_spaces_request_starts(server: HostileServer) -> None:
    urls = [f"{server.url}/feed/spaced"] * 4
    results = fetch_many(urls, policy(server, per_host_limit=4, min_host_spacing=0.1))
    assert all(r.ok for r in results)
    starts = server.starts["/feed/spaced"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    assert min(gaps) >= 0.09, gaps


def test_one_fetcher_serves_many_sequential_fetches(server: HostileServer) -> None:
    async def go() -> list[FetchResult]:
        async with Fetcher(policy(server)) as fetcher:
            out = []
            for _ in range(20):
                out.append(await fetcher.fetch(f"{server.url}/feed", etag=FEED_ETAG))
            out.append(await fetcher.fetch(f"{server.url}/status/410"))
            out.append(await fetcher.fetch(f"{server.url}/feed"))
            return out

    results = asyncio.run(go())
    assert [r.status for r in results] == [304] * 20 + [410, 200]


def test_waiting_for_a_host_slot_does_not_count_against_the_deadline(
    server: HostileServer,
) -> None:
    # Six 0.2 s requests through one slot take 1.2 s in all, each well
    # within its own 0.6 s deadline.
    urls = [f"{server.url}/feed/queued?delay=0.2"] * 6
    results = fetch_many(urls, policy(server, per_host_limit=1, timeout=0.6))
    assert [r.error for r in results] == [None] * 6


def test_fetches_queued_for_a_busy_host_leave_global_slots_to_other_hosts(
    server: HostileServer,
) -> None:
    other = f"http://feeds.test:{server.port}"
    pol = policy(
        server,
        per_host_limit=1,
        total_limit=2,
        allowed_origins=frozenset({server.url, other}),
    )
    finished: list[str] = []

    async def go() -> None:
        resolver = StaticResolver({"feeds.test": ["127.0.0.1"]})
        async with Fetcher(pol, resolver=resolver) as fetcher:

            async def one(name: str, url: str) -> None:
                result = await fetcher.fetch(url)
                assert result.ok, result.error
                finished.append(name)

            busy = [one(f"busy{i}", f"{server.url}/feed/busy?delay=0.2") for i in range(4)]
            await asyncio.gather(*busy, one("other", f"{other}/feed/other"))

    asyncio.run(go())
    # "other" needs no slot a busy fetch holds, so it overtakes the queue.
    assert finished.index("other") == 0, finished
