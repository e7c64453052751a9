"""Real servers on 127.0.0.1 for the tests: feeds and pages, a chat webhook, SMTP.

Each runs in a thread with its own event loop, so tests (sync or async) and
the daemon under test (a subprocess) talk to them over real sockets.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import html
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ThreadedApp:
    """An aiohttp app served from a background thread."""

    def __init__(self, app: web.Application, port: int = 0) -> None:
        self.app = app
        self.port = (
            port  # 0: the kernel picks a free one at bind time, so no other socket can race us
        )
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class FeedServer:
    """Serves feeds and article pages from a dict; ETag / If-None-Match like a real site."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    # path -> (status, Location or None): answers instead of the file
    special: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    # path -> seconds to wait before answering (a slow site)
    delay: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, path)
    _server: _ThreadedApp | None = None

    def put(self, path: str, body: bytes | str, content_type: str = "application/rss+xml") -> str:
        data = body.encode() if isinstance(body, str) else body
        self.files[path] = (data, content_type)
        return self.url(path)

    def url(self, path: str) -> str:
        assert self._server is not None
        return self._server.base + path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        self.requests.append((time.monotonic(), path))
        if path in self.delay:
            await asyncio.sleep(self.delay[path])
        if path in self.special:
            status, location = self.special[path]
            headers = {"Location": location} if location else {}
            return web.Response(status=status, headers=headers, text=str(status))
        if path not in self.files:
            return web.Response(status=404, text="not found")
        body, ctype = self.files[path]
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"ETag": etag, "Content-Type": ctype})

    def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._server = _ThreadedApp(app)
        self._server.start()

    def stop(self) -> None:
        if self._server:
            self._server.stop()


@dataclass
class Webhook:
    """Receives apprise ``json://`` posts; answers 503 while ``failing``.

    ``headers`` has the request headers of each post received; with ``require``
    set to (header, value) a post without that header value gets a 401.
    """

    port: int = 0  # chosen at start; a never-started hook gets a port nobody listens on
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failing: bool = False
    delay: float = 0.0  # seconds before answering (a slow endpoint)
    arrived: int = 0  # requests that reached the handler (answered or not yet)
    # called (in the server's thread) with each message before it is answered
    on_receive: Callable[[dict[str, Any]], None] | None = None
    require: tuple[str, str] | None = None
    _server: _ThreadedApp | None = None

    @property
    def url(self) -> str:
        if self.port == 0:
            self.port = free_port()
        return f"json://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        if self.failing:
            return web.Response(status=503, text="down for maintenance")
        if self.require and request.headers.get(self.require[0]) != self.require[1]:
            return web.Response(status=401, text="unauthorized")
        self.headers.append(dict(request.headers))
        message = json.loads(await request.read())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.on_receive is not None:
            self.on_receive(message)
        self.received.append(message)
        return web.Response(text="ok")

    def alerts(self) -> list[str]:
        """Every alert received, as ``[rules] title``, in order (a message may hold several:
        the payload's ``alerts``)."""
        return [
            f"[{', '.join(a['rules'])}] {a['title']}"
            for m in self.received
            for a in m.get("alerts", [])
        ]

    def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._server = _ThreadedApp(app, self.port)
        self._server.start()
        self.port = self._server.port

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None


class _Collect:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.delay = 0.0
        self.failing = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failing:
            return "451 4.3.0 Temporary failure, try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"


@dataclass
class Mailbox:
    """A real SMTP server (aiosmtpd) collecting what it receives."""

    port: int = field(default_factory=free_port)
    _handler: _Collect = field(default_factory=_Collect)
    _controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self._handler.messages

    def alerts(self) -> list[str]:
        """Every alert received, as ``[rules] title``, in order, read from the HTML part
        (an email may hold several)."""
        out = []
        for msg in self.messages:
            part = msg.get_body(("html",))
            body = part.get_content() if part is not None else ""
            titles = re.findall(
                r'<p><b>[^<]*</b> · [^<]*<br>\s*(?:<a href="[^"]*">)?<b>(.*?)</b>', body
            )
            rules = re.findall(r"<p>Matched: <b>(.*?)</b>", body)
            out.extend(
                f"[{html.unescape(r)}] {html.unescape(t)}"
                for t, r in zip(titles, rules, strict=True)
            )
        return out

    def slow_down(self, seconds: float) -> None:
        """Take ``seconds`` over each message before accepting it."""
        self._handler.delay = seconds

    @property
    def failing(self) -> bool:
        """While true, every message is refused with a temporary error (451)."""
        return self._handler.failing

    @failing.setter
    def failing(self, value: bool) -> None:
        self._handler.failing = value

    @property
    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=monitor@example.com"
            "&to=news@example.com&mode=insecure"
        )

    def start(self) -> None:
        # aiosmtpd needs the port up front; another socket may take it meanwhile.
        for _attempt in range(5):
            controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)
            try:
                controller.start()
            except (OSError, RuntimeError):
                self.port = free_port()
                continue
            self._controller = controller
            return
        raise RuntimeError("no free port for the SMTP server")

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()


@contextmanager
def running(*servers: Any) -> Iterator[None]:
    for s in servers:
        s.start()
    try:
        yield
    finally:
        for s in reversed(servers):
            s.stop()


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, every: float = 0.05) -> bool:
    """Poll ``predicate`` until true or the timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
