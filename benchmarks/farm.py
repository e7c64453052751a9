"""A local feed farm for the benchmarks: N feeds x 20 items on 127.0.0.1, in a child process.

Feed ``i`` at version ``v`` holds items ``v .. v+19`` (newest first), so a
bump adds exactly one new item and drops the oldest. Each feed is about
60 KB (German and English news-like text, RSS 2.0 with content:encoded);
article pages (``/a/<feed>/<item>``) are 20-60 KB with a header menu,
sidebars, teaser lists, a footer and a script block around the article.
``ETag`` is ``"<feed>.<version>"`` and a matching ``If-None-Match`` gets 304.

Control endpoints (JSON), used by :class:`Farm`:

- ``POST /_control/bump?count=K``  bump K feeds (round robin), returns them
- ``POST /_control/set?what=old|noetag&feeds=A-B``  items dated 30 days ago /
  serve 200 without ETag (same body again)
- ``POST /_control/clear``  undo every ``set``
- ``GET /_control/stats``, ``POST /_control/reset``  request counters

With ``change_share`` > 0 the farm itself bumps random feeds so that that
share of all feeds changes per ``change_interval`` (for the soak).
The text is generated here from small word lists; no data is copied.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import socket
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from aiohttp import web

ITEMS = 20
OLD_AGE = 30 * 86400.0

_DE_WORDS = (
    "die der und in zu den das nicht von sie ist des sich mit dem dass er es ein ich auf so "
    "eine auch als an nach wie im für man aber aus durch wenn nur war noch werden bei hat wir "
    "was wird sein einen welche sind oder zur um haben einer mir über ihm diese einem ihr uns "
    "da zum kann doch vor dieser mich ihn du hatte seine mehr am denn nun unter sehr selbst "
    "schon hier bis habe ihre dann ihnen seiner alle wieder meine Zeit gegen vom ganz einzelnen "
    "Regierung Unternehmen Millionen Prozent Bundesregierung Wirtschaft Entwicklung Forschung "
    "Straße Größe Übernahme Bürgerinnen Gesetzentwurf Rechenzentrum Datenschutz Halbleiter "
    "Energiewende Verkehrsminister Landesregierung Fachkräfte Verbraucher Kommission Anleger"
)
_EN_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their has been would will more if no "
    "when can who so said what up its about into than them only other new some could time these "
    "two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because "
    "government company million percent market research development security quarter analysts "
    "investors regulators datacenter semiconductor startup funding acquisition lawmakers"
)
_DE = _DE_WORDS.split()
_EN = _EN_WORDS.split()
# Terms the bench rules look for; sprinkled in so a share of the items match.
_HOT = (
    "DeepSeek",
    "künstliche Intelligenz",
    "Azure",
    "KI-Modelle",
    "OpenAI",
    "Nvidia",
    "Quantencomputer",
    "ransomware",
)
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _esc(text: str) -> str:
    for k, v in _HTML_ESCAPES.items():
        text = text.replace(k, v)
    return text


class _Text:
    """Deterministic news-like text from a seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def words(self, n: int, lang: str) -> str:
        pool = _DE if lang == "de" else _EN
        out = []
        for j in range(n):
            if self.rng.random() < 0.00015:
                out.append(self.rng.choice(_HOT))
            else:
                w = self.rng.choice(pool)
                out.append(w.capitalize() if j == 0 else w)
        return " ".join(out)

    def sentence_run(self, n_words: int, lang: str) -> str:
        parts = []
        left = n_words
        while left > 0:
            k = min(left, self.rng.randint(8, 18))
            parts.append(self.words(k, lang) + ".")
            left -= k
        return " ".join(parts)

    def paragraph_html(self, n_words: int, lang: str) -> str:
        text = _esc(self.sentence_run(n_words, lang))
        words = text.split(" ")
        if len(words) > 12:  # some inline markup, as real feeds have
            a = self.rng.randint(2, len(words) - 6)
            words[a] = f"<strong>{words[a]}</strong>"
            b = self.rng.randint(2, len(words) - 3)
            words[b] = f'<a href="/topic/{self.rng.randint(1, 500)}">{words[b]}</a>'
        return "<p>" + " ".join(words) + "</p>"


@dataclass(frozen=True)
class _ItemText:
    lang: str
    title: str
    summary: str  # HTML
    content: str  # HTML
    category: str


@dataclass(frozen=True)
class _Page:
    head: str  # before the title
    mid: str  # between title and article paragraphs
    body: str  # article paragraphs
    tail: str  # sidebar, footer, scripts


def _item_pool(n: int) -> list[_ItemText]:
    t = _Text(7)
    out = []
    for k in range(n):
        lang = "de" if k % 2 == 0 else "en"
        title = t.words(t.rng.randint(6, 11), lang)
        summary = t.paragraph_html(t.rng.randint(35, 55), lang)
        content = "".join(
            t.paragraph_html(t.rng.randint(55, 85), lang) for _ in range(t.rng.randint(4, 6))
        )
        out.append(_ItemText(lang, title, summary, content, t.words(2, lang)))
    return out


def _links(t: _Text, n: int, lang: str, prefix: str) -> str:
    return "".join(
        f'<li><a href="{prefix}/{t.rng.randint(1, 9999)}">{_esc(t.words(3, lang))}</a></li>'
        for _ in range(n)
    )


def _page_pool(n: int) -> list[_Page]:
    t = _Text(11)
    out = []
    for k in range(n):
        lang = "de" if k % 2 == 0 else "en"
        target = 20_000 + (k * 40_000) // max(1, n - 1)  # 20-60 KB
        nav = f'<nav class="main-menu"><ul>{_links(t, 60, lang, "/section")}</ul></nav>'
        head = (
            f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width">'
            '<link rel="stylesheet" href="/static/site.css">'
            "<style>body{font-family:sans-serif}.ad{display:none}</style><title>"
        )
        mid = (
            f"</title></head><body><header class='site-header'><div class='logo'>News</div>"
            f"{nav}<form class='search'><input name='q'></form></header>"
            f"<div class='breadcrumb'>{_links(t, 4, lang, '/b')}</div>"
            "<main><article class='article'><h1 class='headline'>"
        )
        sidebar = (
            "<aside class='sidebar'><h3>Meistgelesen</h3><ol>"
            f"{_links(t, 12, lang, '/top')}</ol><div class='ad'>Anzeige</div>"
            f"<h3>Mehr zum Thema</h3><ul class='teaser-list'>{_links(t, 15, lang, '/more')}</ul>"
            "</aside>"
        )
        footer = (
            f"<footer><ul>{_links(t, 40, lang, '/f')}</ul><p>© Beispielverlag</p></footer>"
            "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push("
            "arguments)}gtag('js',new Date());" + "var x=1;" * 200 + "</script></body></html>"
        )
        related = f"<section class='related'><h2>Related</h2><ul>{_links(t, 10, lang, '/r')}</ul>"
        tail = "</section></article>" + related + "</section></main>" + sidebar + footer
        paragraphs = []
        size = len(head) + len(mid) + len(tail) + 200
        while size < target:
            p = t.paragraph_html(t.rng.randint(50, 90), lang)
            paragraphs.append(p)
            size += len(p.encode())
        body = "</h1><p class='byline'>Von Redaktion</p><section class='article-body'>" + "".join(
            paragraphs
        )
        out.append(_Page(head, mid, body, tail))
    return out


def _ranges(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


class _FarmApp:
    """The server side (runs in the child process)."""

    def __init__(self, base: str, feeds: int, change_share: float, change_interval: float):
        self.base = base
        self.versions = [0] * feeds
        self.old: set[int] = set()
        self.noetag: set[int] = set()
        self.started = time.time()
        self.items = _item_pool(400)
        self.pages = _page_pool(40)
        self.stats = {"feed_200": 0, "feed_304": 0, "article": 0, "bumps": 0}
        self.next_bump = 0
        self.change_share = change_share
        self.change_interval = change_interval
        self.rng = random.Random(3)

    def _item_xml(self, i: int, s: int) -> str:
        it = self.items[(i * 7919 + s * 104729) % len(self.items)]
        base_t = self.started - (OLD_AGE if i in self.old else 0.0)
        published = formatdate(base_t - 3600 + 60 * (s % 60), usegmt=True)
        link = f"{self.base}/a/{i}/{s}"
        return (
            f"<item><title>{_esc(it.title)} ({s})</title><link>{link}</link>"
            f'<guid isPermaLink="false">farm:{i}:{s}</guid><pubDate>{published}</pubDate>'
            f"<dc:creator>Redaktion {i % 17}</dc:creator><category>{it.category}</category>"
            f"<description><![CDATA[{it.summary}]]></description>"
            f"<content:encoded><![CDATA[{it.content}]]></content:encoded></item>"
        )

    def feed_body(self, i: int) -> bytes:
        v = self.versions[i]
        lang = "de" if i % 2 == 0 else "en"
        items = "".join(self._item_xml(i, s) for s in range(v + ITEMS - 1, v - 1, -1))
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
            f"<title>Farm feed {i}</title><link>{self.base}/</link>"
            f"<description>Benchmark feed {i}</description><language>{lang}</language>"
            f"{items}</channel></rss>"
        ).encode()

    async def feed(self, request: web.Request) -> web.Response:
        i = int(request.match_info["n"])
        if not 0 <= i < len(self.versions):
            raise web.HTTPNotFound()
        etag = f'"{i}.{self.versions[i]}"'
        headers = {"Content-Type": "application/rss+xml; charset=utf-8"}
        if i not in self.noetag:
            if request.headers.get("If-None-Match") == etag:
                self.stats["feed_304"] += 1
                return web.Response(status=304, headers={"ETag": etag})
            headers["ETag"] = etag
        self.stats["feed_200"] += 1
        return web.Response(body=self.feed_body(i), headers=headers)

    async def article(self, request: web.Request) -> web.Response:
        i, s = int(request.match_info["n"]), int(request.match_info["s"])
        self.stats["article"] += 1
        page = self.pages[(i * 31 + s) % len(self.pages)]
        it = self.items[(i * 7919 + s * 104729) % len(self.items)]
        title = _esc(it.title)
        html = page.head + title + page.mid + title + page.body + page.tail
        return web.Response(body=html.encode(), content_type="text/html", charset="utf-8")

    def bump(self, count: int) -> list[int]:
        n = len(self.versions)
        chosen = [(self.next_bump + k) % n for k in range(min(count, n))]
        self.next_bump = (self.next_bump + count) % n
        for i in chosen:
            self.versions[i] += 1
        self.stats["bumps"] += len(chosen)
        return chosen

    async def control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        result: Any = None
        if action == "bump":
            result = self.bump(int(request.query.get("count", "1")))
        elif action == "clear":
            self.old.clear()
            self.noetag.clear()
        elif action == "set":
            target = self.old if request.query["what"] == "old" else self.noetag
            target.update(_ranges(request.query.get("feeds", "")))
            result = len(target)
        elif action == "stats":
            result = dict(self.stats)
        elif action == "reset":
            self.stats = dict.fromkeys(self.stats, 0)
        return web.json_response({"result": result})

    async def auto_change(self, app: web.Application) -> Any:
        """Background bumps: change_share of the feeds per change_interval, at random."""
        task = None
        if self.change_share > 0:

            async def run() -> None:
                per_second = self.change_share * len(self.versions) / self.change_interval
                while True:
                    await asyncio.sleep(self.rng.expovariate(per_second))
                    self.versions[self.rng.randrange(len(self.versions))] += 1
                    self.stats["bumps"] += 1

            task = asyncio.create_task(run())
        yield
        if task is not None:
            task.cancel()


def _serve(
    sock: socket.socket, feeds: int, change_share: float, change_interval: float, ready: Any
) -> None:
    port = sock.getsockname()[1]
    farm = _FarmApp(f"http://127.0.0.1:{port}", feeds, change_share, change_interval)
    app = web.Application()
    app.router.add_get("/feed/{n}", farm.feed)
    app.router.add_get("/a/{n}/{s}", farm.article)
    app.router.add_route("*", "/_control/{action}", farm.control)
    app.cleanup_ctx.append(farm.auto_change)

    async def started(app: web.Application) -> None:
        ready.set()

    app.on_startup.append(started)
    web.run_app(app, sock=sock, print=None, access_log=None, backlog=2048)


class Farm:
    """Starts the farm in a child process; the client side of the control endpoints."""

    def __init__(
        self, feeds: int, *, change_share: float = 0.0, change_interval: float = 900.0
    ) -> None:
        self.feeds = feeds
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(2048)
        self.base = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        ctx = multiprocessing.get_context("spawn")
        self._ready = ctx.Event()
        self._proc = ctx.Process(
            target=_serve,
            args=(self._sock, feeds, change_share, change_interval, self._ready),
            daemon=True,
            name="feed-farm",
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def feed_url(self, i: int) -> str:
        return f"{self.base}/feed/{i}"

    def urls(self) -> list[str]:
        return [self.feed_url(i) for i in range(self.feeds)]

    def start(self) -> Farm:
        self._proc.start()
        if not self._ready.wait(60):
            raise RuntimeError("the feed farm did not start")
        return self

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.join(10)
        self._sock.close()

    def __enter__(self) -> Farm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, action: str, method: str = "POST", **query: object) -> Any:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        req = urllib.request.Request(f"{self.base}/_control/{action}?{qs}", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["result"]

    def bump(self, count: int) -> list[int]:
        """Change ``count`` feeds (one new item each); returns their numbers."""
        return list(self._call("bump", count=count))

    def set_old(self, feeds: Iterable[int]) -> None:
        """Date every item of these feeds 30 days back (older than max_age)."""
        self._call("set", what="old", feeds=",".join(map(str, feeds)))

    def set_noetag(self, feeds: Iterable[int]) -> None:
        """Serve these feeds with 200 and no ETag: the same body comes back each time."""
        self._call("set", what="noetag", feeds=",".join(map(str, feeds)))

    def clear(self) -> None:
        """Undo set_old and set_noetag."""
        self._call("clear")

    def stats(self) -> dict[str, int]:
        return dict(self._call("stats", method="GET"))

    def reset(self) -> None:
        self._call("reset")
