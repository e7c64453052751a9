"""Placeholder until the fetch branch lands: plain aiohttp GET."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from monitor.types import FetchResult

FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"
HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


@dataclass(frozen=True)
class FetchPolicy:
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


class Fetcher:
    """HTTP client."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = FEED_ACCEPT,
    ) -> FetchResult:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.policy.total_limit),
                headers={"User-Agent": self.policy.user_agent},
            )
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        start = time.monotonic()
        try:
            async with self._session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.policy.timeout)
            ) as resp:
                body = await resp.read()
                hdrs = {k.lower(): v for k, v in resp.headers.items()}
                status = resp.status
                if status >= 400:
                    return FetchResult(
                        url,
                        str(resp.url),
                        status,
                        hdrs,
                        error_kind="http",
                        error=f"HTTP {status}",
                        elapsed=time.monotonic() - start,
                    )
                return FetchResult(
                    url,
                    str(resp.url),
                    status,
                    hdrs,
                    body,
                    not_modified=status == 304,
                    etag=hdrs.get("etag"),
                    last_modified=hdrs.get("last-modified"),
                    elapsed=time.monotonic() - start,
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            return FetchResult(url, url, None, error_kind="connection", error=repr(exc))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
