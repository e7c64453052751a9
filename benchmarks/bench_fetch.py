"""Time an all-304 round: N local feeds fetched conditionally by one Fetcher.

    python benchmarks/bench_fetch.py [--feeds 1000] [--concurrency 50] [--rounds 5]

The server (aiohttp, answering 304 to a matching If-None-Match) runs in a
child process so it does not share the client's event loop. Prints one
line per round and the median; numbers are for comparison, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time

from aiohttp import web

from monitor.fetch import Fetcher, FetchPolicy

ETAG = '"bench"'


def serve(sock: socket.socket) -> None:
    async def feed(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        return web.Response(body=b"<rss/>", headers={"ETag": ETAG})

    app = web.Application()
    app.router.add_get("/feed/{n}", feed)
    web.run_app(app, sock=sock, print=None, access_log=None)


async def rounds(base: str, feeds: int, concurrency: int, per_host: int, n: int) -> list[float]:
    policy = FetchPolicy(
        user_agent="rss-monitor-bench/0",
        total_limit=concurrency,
        per_host_limit=per_host,
        allowed_origins=frozenset({base}),
    )
    urls = [f"{base}/feed/{i}" for i in range(feeds)]
    times = []
    async with Fetcher(policy) as fetcher:
        await fetcher.fetch(urls[0], etag=ETAG)  # open the pool once
        for _ in range(n):
            start = time.perf_counter()
            results = await asyncio.gather(*(fetcher.fetch(u, etag=ETAG) for u in urls))
            times.append(time.perf_counter() - start)
            bad = [r for r in results if not r.not_modified]
            if bad:
                raise SystemExit(f"{len(bad)} fetches were not 304: {bad[0].error}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--per-host", type=int, default=50, help="all feeds share one host")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    child = multiprocessing.get_context("spawn").Process(target=serve, args=(sock,), daemon=True)
    child.start()
    try:
        times = asyncio.run(rounds(base, args.feeds, args.concurrency, args.per_host, args.rounds))
    finally:
        child.terminate()
        child.join()
    for i, t in enumerate(times, 1):
        print(f"round {i}: {t:.3f} s")
    print(
        f"all-304 round, {args.feeds} feeds, concurrency {args.concurrency}, "
        f"per-host {args.per_host}: median {statistics.median(times):.3f} s"
    )


if __name__ == "__main__":
    main()
