"""HTTP fetching: conditional, bounded, polite and address-safe (SPEC section 7).

One :class:`Fetcher` holds one aiohttp session (one connection pool with
keep-alive) for the whole daemon. Every fetch returns a
:class:`~monitor.types.FetchResult`; failures are values, never exceptions.

Address safety. Redirects are followed here, hop by hop, so that every hop
is checked. A host name is resolved by :class:`CheckingResolver`, which the
connector uses for the connection itself: it drops refused addresses and
hands the connector only the checked ones, so there is no window between
check and connect for DNS rebinding. aiohttp never asks the resolver about
IP literals, so those are checked before the request. The same origin as a
configured feed (``allowed_origins``) or ``allow_private`` lifts the check.

Error kinds (``FetchResult.error_kind``):

- ``invalid_url``  the URL asked for is not a fetchable http(s) URL
- ``refused``      a hop points at a non-public address or a forbidden URL
- ``redirects``    too many redirects, a loop, or a redirect without Location
- ``timeout``      connect, read-gap or total deadline passed
- ``too_large``    body over ``max_bytes`` (decompressed) or headers too big
- ``connection``   DNS failure, connection refused or reset
- ``protocol``     malformed response, body shorter than its Content-Length,
                   undecodable Content-Encoding
- ``gone``         410 Gone (``status`` is 410)
- ``http``         any other non-2xx, non-304 status (``retry_after`` set
                   from Retry-After on 429 and 503)
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from monitor.netsafety import address_refusal, is_canonical_ipv4, origin, url_refusal
from monitor.types import FetchResult

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
"""Default Accept header: feed types first, anything else last."""

HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
"""Accept header for article pages."""

ACCEPT_ENCODING = "gzip, deflate, br"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_STATUSES = frozenset({301, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_READ_CHUNK = 64 * 1024
_MAX_IDLE_GATES = 1024  # host gates kept only for spacing before a prune


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and manners of the fetcher; one per daemon.

    ``timeout`` is the total deadline of one fetch, all redirect hops and the
    body included (time spent waiting for a concurrency slot is not
    counted). ``read_timeout`` is the longest gap between two reads.
    ``max_bytes`` caps the body after decompression. ``max_header_bytes``
    caps one header line (and the status line). ``min_host_spacing`` is
    the least time between the starts of two requests to one host.
    ``allowed_origins`` are origins (see :func:`monitor.netsafety.origin`)
    of feed URLs the config lists: they are fetched even when private.
    """

    user_agent: str
    timeout: float = 20.0
    connect_timeout: float = 10.0
    read_timeout: float = 10.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    max_header_bytes: int = 16384
    per_host_limit: int = 2
    total_limit: int = 50
    min_host_spacing: float = 0.0
    allow_private: bool = False
    allowed_origins: frozenset[str] = frozenset()


class AddressRefused(OSError):
    """Raised by :class:`CheckingResolver` when no resolved address is allowed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CheckingResolver(AbstractResolver):
    """Resolve through ``base`` and keep only addresses the policy allows.

    The connector connects to exactly what this returns, so the address
    that was checked is the address that is used. ``exempt`` holds
    ``(host, port)`` pairs that skip the check (the origins of configured
    feeds); ``allow_all`` skips it everywhere.
    """

    def __init__(
        self,
        base: AbstractResolver,
        *,
        exempt: frozenset[tuple[str, int]] = frozenset(),
        allow_all: bool = False,
    ) -> None:
        self._base = base
        self._exempt = exempt
        self._allow_all = allow_all

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; raise AddressRefused when every address is refused."""
        results = await self._base.resolve(host, port, family)
        if self._allow_all or (host, port) in self._exempt:
            return results
        allowed: list[ResolveResult] = []
        first_refusal: str | None = None
        for result in results:
            reason = address_refusal(result["host"])
            if reason is None:
                allowed.append(result)
            elif first_refusal is None:
                first_refusal = f"{host} resolves to {result['host']}, which is {reason}"
        if not allowed:
            raise AddressRefused(first_refusal or f"{host} has no addresses")
        return allowed

    async def close(self) -> None:
        """Close the underlying resolver."""
        await self._base.close()


class _HostGate:
    """Concurrency slots and request spacing for one host."""

    __slots__ = ("next_start", "semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.next_start = 0.0
        self.users = 0


class _Failure(Exception):
    """A fetch that ends in an error value; raised and caught inside this module."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


def _hostport(url: str) -> tuple[str, int]:
    parsed = URL(url)
    assert parsed.raw_host is not None and parsed.port is not None
    return parsed.raw_host, parsed.port


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """True if ``kind`` is among the causes/contexts of ``exc`` (or named in it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return kind.__name__ in str(exc)


def _looks_like_ip(host: str) -> bool:
    # The same test aiohttp applies before skipping the resolver.
    return ":" in host or host.replace(".", "").isdigit()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP date).

    ``now`` is a Unix timestamp; a date in the past gives 0. Returns None
    for a missing or unparseable value.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def _headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in resp.headers.items():
        name = key.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


class Fetcher:
    """Fetch URLs over one shared, bounded, address-checked HTTP session."""

    def __init__(
        self, policy: FetchPolicy, *, resolver: aiohttp.abc.AbstractResolver | None = None
    ) -> None:
        """Prepare a fetcher; the session is created on first use (needs a running loop)."""
        self._policy = policy
        self._base_resolver = resolver
        self._allowed_origins = frozenset(origin(o) for o in policy.allowed_origins)
        self._exempt = frozenset(_hostport(o) for o in self._allowed_origins)
        self._session: aiohttp.ClientSession | None = None
        self._global: asyncio.Semaphore | None = None
        self._gates: dict[str, _HostGate] = {}

    @property
    def policy(self) -> FetchPolicy:
        """The policy this fetcher was built with (a new policy needs a new Fetcher)."""
        return self._policy

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            p = self._policy
            base = self._base_resolver or aiohttp.ThreadedResolver()
            connector = aiohttp.TCPConnector(
                resolver=CheckingResolver(base, exempt=self._exempt, allow_all=p.allow_private),
                limit=p.total_limit,
                limit_per_host=0,  # our own per-host gates, with spacing
                ttl_dns_cache=10,  # brief: refused results are never cached
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=p.connect_timeout, sock_read=p.read_timeout
                ),
                headers={"User-Agent": p.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
                # Feeds of different sites must not share cookies.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                max_line_size=p.max_header_bytes,
                max_field_size=p.max_header_bytes,
                read_bufsize=_READ_CHUNK,
            )
            self._global = asyncio.Semaphore(p.total_limit)
        return self._session

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def _host_slot(self, host: str) -> AsyncIterator[None]:
        gate = self._gates.get(host)
        if gate is None:
            if len(self._gates) >= _MAX_IDLE_GATES:
                self._prune_gates()
            gate = self._gates[host] = _HostGate(self._policy.per_host_limit)
        gate.users += 1
        try:
            async with gate.semaphore:
                spacing = self._policy.min_host_spacing
                if spacing > 0:
                    now = time.monotonic()
                    start = max(now, gate.next_start)
                    gate.next_start = start + spacing
                    if start > now:
                        await asyncio.sleep(start - now)
                yield
        finally:
            gate.users -= 1
            # Forget idle hosts so links to many sites don't grow the table,
            # but keep one whose spacing is still running.
            if gate.users == 0 and gate.next_start <= time.monotonic():
                del self._gates[host]

    def _prune_gates(self) -> None:
        """Drop gates of hosts that are idle and past their spacing."""
        now = time.monotonic()
        for host in [h for h, g in self._gates.items() if g.users == 0 and g.next_start <= now]:
            del self._gates[host]

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = FEED_ACCEPT,
    ) -> FetchResult:
        """Fetch ``url`` (GET), following at most ``max_redirects`` checked redirects.

        ``etag`` / ``last_modified`` make the request conditional; a 304
        gives ``not_modified=True``. Never raises for network or HTTP
        trouble: see the module docstring for the error kinds.
        """
        started = time.monotonic()
        refusal = url_refusal(url)
        if refusal is not None:
            return FetchResult(url, url, None, error_kind="invalid_url", error=refusal)
        session = self._ensure_session()
        assert self._global is not None
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        state = _Chain(url)
        try:
            result = await self._follow(session, state, headers, etag, last_modified)
        except _Failure as failure:
            result = state.failure(failure.kind, failure.message, failure.status)
        return dataclasses.replace(result, elapsed=time.monotonic() - started)

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        state: _Chain,
        headers: Mapping[str, str],
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult:
        """Run hop after hop until a final response, within the total deadline.

        Each hop takes its host's slot first and a global slot second, so
        fetches queued behind a busy host don't hold global slots that other
        hosts could use. Time spent waiting for slots doesn't count against
        the deadline; time spent talking to servers does, across all hops.
        """
        assert self._global is not None
        budget = self._policy.timeout
        while True:
            target = URL(state.current, encoded=True)
            host = target.raw_host or ""
            self._check_literal(target, host)
            async with self._host_slot(host), self._global:
                hop_started = time.monotonic()
                try:
                    async with asyncio.timeout(budget):
                        result = await self._hop(
                            session, target, host, state, headers, etag, last_modified
                        )
                except TimeoutError:
                    raise _Failure(
                        "timeout", f"total deadline of {self._policy.timeout:g} s passed"
                    ) from None
                budget -= time.monotonic() - hop_started
            if result is not None:
                return result

    async def _hop(
        self,
        session: aiohttp.ClientSession,
        target: URL,
        host: str,
        state: _Chain,
        headers: Mapping[str, str],
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult | None:
        """One request; the final result, or None after recording a redirect."""
        policy = self._policy
        try:
            async with session.get(target, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                if status in _REDIRECT_STATUSES:
                    location = resp.headers.get("Location")
                    state.redirect(location, status, policy.max_redirects)
                    return None
                return await self._finish(resp, state, etag, last_modified)
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise _Failure("refused", f"refused: {exc.os_error.reason}") from exc
            raise _Failure("connection", f"cannot resolve {host}: {exc.os_error}") from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise _Failure(
                "timeout", f"connect to {host} timed out ({policy.connect_timeout:g} s)"
            ) from exc
        except aiohttp.SocketTimeoutError as exc:
            raise _Failure("timeout", f"no data from {host} for {policy.read_timeout:g} s") from exc
        except aiohttp.ClientResponseError as exc:
            # Raised while parsing the status line and headers.
            message = str(exc.message)
            if message.startswith("Got more than"):  # aiohttp's LineTooLong
                raise _Failure(
                    "too_large",
                    f"a response header line exceeds {policy.max_header_bytes} bytes",
                ) from exc
            raise _Failure("protocol", f"malformed response: {message[:200]}") from exc
        except aiohttp.ClientPayloadError as exc:
            if _caused_by(exc, ConnectionResetError):
                raise _Failure("connection", f"connection reset by {host} mid-body") from exc
            raise _Failure(
                "protocol",
                f"body ended early or could not be decoded: {str(exc)[:200]}",
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise _Failure("refused", f"refused: invalid URL {exc}") from exc
        except TimeoutError as exc:
            raise _Failure("timeout", f"timed out talking to {host}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _Failure("connection", f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    def _check_literal(self, target: URL, host: str) -> None:
        """Refuse a hop to a non-public IP literal; aiohttp won't ask the resolver."""
        if not _looks_like_ip(host):
            return
        if ":" not in host and not is_canonical_ipv4(host):
            raise _Failure("refused", f"refused: {host} is not a canonical IPv4 address")
        if self._policy.allow_private:
            return
        hop_origin = f"{target.scheme}://{target.host_port_subcomponent}"
        if target.explicit_port is None:
            hop_origin += f":{target.port}"
        if hop_origin in self._allowed_origins:
            return
        reason = address_refusal(host)
        if reason is not None:
            raise _Failure("refused", f"refused: {host} is {reason}")

    async def _finish(
        self,
        resp: aiohttp.ClientResponse,
        state: _Chain,
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult:
        """Turn a non-redirect response into a result, reading the body of a 2xx."""
        status = resp.status
        headers = _headers(resp)
        got_etag = headers.get("etag")
        got_modified = headers.get("last-modified")
        if status == 304:
            # A 304 may omit validators; the ones sent are still current.
            return state.result(
                status,
                headers,
                not_modified=True,
                etag=got_etag or etag,
                last_modified=got_modified or last_modified,
            )
        if 200 <= status < 300:
            body = await self._read_body(resp)
            return state.result(
                status, headers, body=body, etag=got_etag, last_modified=got_modified
            )
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(headers.get("retry-after"), time.time())
        kind = "gone" if status == 410 else "http"
        return state.result(
            status,
            headers,
            error_kind=kind,
            error=f"HTTP {status} {resp.reason or ''}".rstrip(),
            retry_after=retry_after,
        )

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read the (decompressed) body in chunks, stopping at ``max_bytes``."""
        cap = self._policy.max_bytes
        declared = resp.content_length
        if declared is not None and declared > cap:
            raise _Failure(
                "too_large", f"Content-Length {declared} exceeds the {cap} byte cap", resp.status
            )
        chunks: list[bytes] = []
        total = 0
        # aiohttp decompresses in bounded steps as we read, so a bomb never
        # expands much past one chunk before we count it.
        async for chunk in resp.content.iter_any():
            total += len(chunk)
            if total > cap:
                resp.close()  # drop the connection rather than drain a bomb
                raise _Failure(
                    "too_large", f"body exceeds the {cap} byte cap (decompressed)", resp.status
                )
            chunks.append(chunk)
        return b"".join(chunks)


class _Chain:
    """The redirect chain of one fetch: where we are and what we passed."""

    __slots__ = (
        "current",
        "hops",
        "last_status",
        "only_permanent",
        "permanent",
        "url",
        "visited",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.current = url
        self.visited = {url, str(URL(url))}
        self.hops = 0
        self.only_permanent = True
        self.permanent: str | None = None
        self.last_status: int | None = None  # of the last response received

    def redirect(self, location: str | None, status: int, max_redirects: int) -> None:
        self.last_status = status
        if not location:
            raise _Failure("redirects", f"HTTP {status} without a Location header", status)
        try:
            joined = str(URL(self.current, encoded=True).join(URL(location)))
        except ValueError as exc:
            raise _Failure("refused", f"refused redirect to {location!r}: {exc}", status) from exc
        # The raw Location is checked too: joining may hide control characters.
        refusal = url_refusal(location) if "://" in location else None
        refusal = refusal or url_refusal(joined)
        if refusal is not None:
            raise _Failure("refused", f"refused redirect to {location!r}: {refusal}", status)
        if joined in self.visited:
            raise _Failure("redirects", f"redirect loop at {joined}", status)
        self.hops += 1
        if self.hops > max_redirects:
            raise _Failure("redirects", f"more than {max_redirects} redirects", status)
        self.visited.add(joined)
        self.current = joined
        if self.only_permanent and status in _PERMANENT_STATUSES:
            self.permanent = joined
        else:
            self.only_permanent = False

    def result(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        body: bytes = b"",
        not_modified: bool = False,
        etag: str | None = None,
        last_modified: str | None = None,
        retry_after: float | None = None,
        error_kind: str | None = None,
        error: str | None = None,
    ) -> FetchResult:
        return FetchResult(
            url=self.url,
            final_url=self.current,
            status=status,
            headers=headers,
            body=body,
            not_modified=not_modified,
            etag=etag,
            last_modified=last_modified,
            permanent_redirect=self.permanent,
            retry_after=retry_after,
            error_kind=error_kind,
            error=error,
        )

    def failure(self, kind: str, message: str, status: int | None = None) -> FetchResult:
        return FetchResult(
            url=self.url,
            final_url=self.current,
            status=status if status is not None else self.last_status,
            permanent_redirect=self.permanent,
            error_kind=kind,
            error=message,
        )
