"""A local HTTP server that misbehaves on purpose, for fetch and daemon tests.

Usage::

    with hostile_server() as server:
        server.url          # "http://127.0.0.1:PORT", the base URL
        server.other_url    # the same app on a second port (another origin)
        server.hits["/feed"]

The app runs in a background thread with its own event loop, listening on
127.0.0.1 only. Routes (all GET):

=============================  =============================================
/feed                          small RSS feed, ETag + Last-Modified; 304
                               when If-None-Match / If-Modified-Since match
/feed/{name}                   the same, one distinct feed per name
/echo                          the request headers as JSON
/hang                          headers never come
/slowloris                     200, then one byte every 0.2 s, forever
/endless                       200, 64 KiB chunks without end
/bomb/gzip|deflate|br          100 MiB of zeros, compressed to a few KB
/redirect/other-port           302 to the same app on the other port
/redirect/metadata             302 to http://169.254.169.254/latest/meta-data/
/redirect/file                 302 to file:///etc/passwd
/redirect/loop                 302 to /redirect/loop2, which 302s back
/redirect/chain/{n}            n more 302 hops, then /feed
/redirect/permanent            301 to /feed
/redirect/permanent308         308 to /feed
/redirect/permanent-then-temp  301 to /redirect/temp, which 302s to /feed
/redirect/no-location          302 without a Location header
/redirect/to-host/{host}       302 to http://{host}:{port}/feed
/reset                         200, some body, then a TCP reset
/lying-length                  Content-Length 100000, 100 bytes, close
/retry/429?after=N             429 with Retry-After: N (seconds)
/retry/503-date?in=N           503 with Retry-After as an HTTP date N s ahead
/status/{code}                 that status (410, 404, 500, ...)
/huge-headers?size=N           200 with one N-byte header (default 64 KiB)
=============================  =============================================
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import brotli
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

BOMB_SIZE = 100 * 1024 * 1024
FEED_ETAG = '"v1"'
FEED_LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


def feed_body(name: str = "feed") -> bytes:
    """The RSS document /feed/{name} serves."""
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel>'
        f"<title>{name}</title><link>http://example.com/</link>"
        f"<item><guid>{name}-1</guid><title>Hello from {name}</title></item>"
        "</channel></rss>"
    ).encode()


@functools.cache
def bomb(encoding: str) -> bytes:
    """BOMB_SIZE zero bytes compressed with ``encoding`` (gzip, deflate or br)."""
    zeros = bytes(1024 * 1024)
    if encoding == "br":
        comp = brotli.Compressor(quality=5)
        return b"".join(comp.process(zeros) for _ in range(BOMB_SIZE // len(zeros))) + comp.finish()
    wbits = 31 if encoding == "gzip" else 15  # gzip header vs zlib-wrapped deflate
    zcomp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(zcomp.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))) + zcomp.flush()


@dataclass
class HostileServer:
    """Handle on a running server: base URLs and per-path hit counts."""

    url: str
    other_url: str
    hits: Counter[str] = field(default_factory=Counter)
    # path -> times the handler started, for concurrency and spacing checks
    starts: dict[str, list[float]] = field(default_factory=dict)
    active: Counter[str] = field(default_factory=Counter)
    peak_active: Counter[str] = field(default_factory=Counter)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def _build_app(server: HostileServer) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def count(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        path = request.path
        server.hits[path] += 1
        server.starts.setdefault(path, []).append(time.monotonic())
        server.active[path] += 1
        server.peak_active[path] = max(server.peak_active[path], server.active[path])
        try:
            return await handler(request)
        finally:
            server.active[path] -= 1

    async def _feed(request: web.Request, name: str) -> web.StreamResponse:
        delay = float(request.query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        validators = {"ETag": FEED_ETAG, "Last-Modified": FEED_LAST_MODIFIED}
        if request.headers.get("If-None-Match") == FEED_ETAG or (
            "If-None-Match" not in request.headers
            and request.headers.get("If-Modified-Since") == FEED_LAST_MODIFIED
        ):
            return web.Response(status=304, headers=validators)
        return web.Response(
            body=feed_body(name), content_type="application/rss+xml", headers=validators
        )

    @routes.get("/feed")
    async def feed(request: web.Request) -> web.StreamResponse:
        return await _feed(request, "feed")

    @routes.get("/feed/{name}")
    async def named_feed(request: web.Request) -> web.StreamResponse:
        return await _feed(request, request.match_info["name"])

    @routes.get("/echo")
    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response(dict(request.headers))

    @routes.get("/hang")
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        return web.Response()

    @routes.get("/slowloris")
    async def slowloris(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            await resp.write(b"x")
            await asyncio.sleep(0.2)

    @routes.get("/endless")
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"y" * 65536
        while True:
            await resp.write(chunk)

    @routes.get("/bomb/{encoding}")
    async def bomb_route(request: web.Request) -> web.StreamResponse:
        encoding = request.match_info["encoding"]
        body = bomb(encoding)
        return web.Response(
            body=body, headers={"Content-Encoding": encoding, "Content-Type": "application/xml"}
        )

    def _redirect(location: str, status: int = 302) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    @routes.get("/redirect/other-port")
    async def to_other_port(request: web.Request) -> web.StreamResponse:
        return _redirect(f"{server.other_url}/feed")

    @routes.get("/redirect/metadata")
    async def to_metadata(request: web.Request) -> web.StreamResponse:
        return _redirect("http://169.254.169.254/latest/meta-data/")

    @routes.get("/redirect/file")
    async def to_file(request: web.Request) -> web.StreamResponse:
        return _redirect("file:///etc/passwd")

    @routes.get("/redirect/loop")
    async def loop1(request: web.Request) -> web.StreamResponse:
        return _redirect("/redirect/loop2")

    @routes.get("/redirect/loop2")
    async def loop2(request: web.Request) -> web.StreamResponse:
        return _redirect("/redirect/loop")

    @routes.get("/redirect/chain/{n}")
    async def chain(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        return _redirect(f"/redirect/chain/{n - 1}" if n > 1 else "/feed")

    @routes.get("/redirect/permanent")
    async def permanent(request: web.Request) -> web.StreamResponse:
        return _redirect("/feed", 301)

    @routes.get("/redirect/permanent308")
    async def permanent308(request: web.Request) -> web.StreamResponse:
        return _redirect("/feed", 308)

    @routes.get("/redirect/permanent-then-temp")
    async def permanent_then_temp(request: web.Request) -> web.StreamResponse:
        return _redirect("/redirect/temp", 301)

    @routes.get("/redirect/temp")
    async def temp(request: web.Request) -> web.StreamResponse:
        return _redirect("/feed", 302)

    @routes.get("/redirect/no-location")
    async def no_location(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302)

    @routes.get("/redirect/to-host/{host}")
    async def to_host(request: web.Request) -> web.StreamResponse:
        return _redirect(f"http://{request.match_info['host']}:{server.port}/feed")

    @routes.get("/reset")
    async def reset(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"z" * 4096)
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        # Linger 0 turns close into a RST instead of an orderly FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return resp

    @routes.get("/lying-length")
    async def lying_length(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        resp.force_close()
        await resp.prepare(request)
        await resp.write(b"l" * 100)
        transport = request.transport
        assert transport is not None
        transport.close()
        return resp

    @routes.get("/retry/429")
    async def retry_429(request: web.Request) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": request.query["after"]})

    @routes.get("/retry/503-date")
    async def retry_503(request: web.Request) -> web.StreamResponse:
        when = time.time() + float(request.query["in"])
        date = email.utils.formatdate(when, usegmt=True)
        return web.Response(status=503, headers={"Retry-After": date})

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]), text="status")

    @routes.get("/huge-headers")
    async def huge_headers(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", str(64 * 1024)))
        return web.Response(text="ok", headers={"X-Huge": "h" * size})

    app = web.Application(middlewares=[count])
    app.add_routes(routes)
    return app


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    """Run the hostile app on two free 127.0.0.1 ports in a background thread."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    holder: dict[str, object] = {}
    stop = asyncio.Event()

    async def main() -> None:
        server = HostileServer(url="", other_url="")
        runner = web.AppRunner(
            _build_app(server), handler_cancellation=True, shutdown_timeout=0.1, access_log=None
        )
        await runner.setup()
        ports = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
            await web.SockSite(runner, sock).start()
        server.url = f"http://127.0.0.1:{ports[0]}"
        server.other_url = f"http://127.0.0.1:{ports[1]}"
        holder["server"] = server
        ready.set()
        await stop.wait()
        await runner.cleanup()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="hostile-server", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("hostile server did not start")
    try:
        server = holder["server"]
        assert isinstance(server, HostileServer)
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


class StaticResolver(AbstractResolver):
    """A resolver answering from a fixed table, so tests need no real DNS.

    ``table`` maps a host name to the addresses it resolves to; an
    unknown name fails like a DNS miss. ``calls`` counts lookups per name.
    """

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: Counter[str] = Counter()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls[host] += 1
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass
