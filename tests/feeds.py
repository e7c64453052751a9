"""Feed and article documents for tests, with dates relative to now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape


@dataclass(frozen=True)
class Item:
    title: str
    link: str | None = None
    guid: str | None = None
    description: str = ""
    age: timedelta | None = timedelta(minutes=5)  # None: no date at all


def rss(items: list[Item], title: str = "Test Feed", extra: str = "") -> str:
    now = datetime.now(UTC)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>https://example.org/</link>{extra}",
    ]
    for it in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(it.title)}</title>")
        if it.link:
            parts.append(f"<link>{escape(it.link)}</link>")
        if it.guid:
            parts.append(f'<guid isPermaLink="false">{escape(it.guid)}</guid>')
        if it.description:
            parts.append(f"<description>{escape(it.description)}</description>")
        if it.age is not None:
            parts.append(f"<pubDate>{format_datetime(now - it.age)}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts)


def article_page(title: str, body: str, sidebar: str = "") -> str:
    """A news page in the usual shape: nav, article, a 'most read' sidebar, footer."""
    return f"""<!doctype html>
<html lang="de"><head><meta charset="utf-8"><title>{escape(title)}</title>
<script>var tracking = "DeepSeek Azure";</script></head>
<body>
<nav><ul><li><a href="/">Startseite</a></li><li><a href="/it">IT</a></li>
<li><a href="/news">News</a></li></ul></nav>
<main><article>
<h1>{escape(title)}</h1>
<p>{escape(body)}</p>
<p>Weitere Details nannte das Unternehmen zunächst nicht. Die Ankündigung erfolgte am
Rande einer Konferenz, auf der zahlreiche Hersteller ihre neuen Produkte vorstellten.</p>
</article></main>
<aside class="sidebar"><h2>Meistgelesen</h2><ul>
<li><a href="/a">{escape(sidebar)}</a></li><li><a href="/b">Neue Smartphones im Test</a></li>
</ul></aside>
<footer><p>Impressum · Datenschutz · Kontakt</p></footer>
</body></html>"""


def entity_bomb(
    title: str = "Bomb", *, value: int = 100_000, refs: int = 50_000, before: str = ""
) -> str:
    """Issue 10's feed: one ``value``-character entity referenced ``refs`` times.

    The defaults make a DOCTYPE longer than 64 KB and 5 GB once expanded;
    ``before`` goes between the XML declaration and the DOCTYPE.
    """
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n{before}'
        f'<!DOCTYPE rss [\n<!ENTITY big "{"x" * value}">\n]>\n'
        f'<rss version="2.0"><channel><title>{escape(title)}</title>'
        "<link>https://bomb.example/</link>"
        f'<item><guid isPermaLink="false">{escape(title)}-1</guid><title>Harmless news</title>'
        f"<description>{'&big;' * refs}</description></item></channel></rss>"
    )


def many_items(n: int, title: str = "Big") -> str:
    """A feed of ``n`` short entries: 40,000 are 9 MB, which takes about 120 MB to parse."""
    items = "".join(
        f"<item><guid>g{i}</guid><title>Eintrag {i}</title><description>{'Text ' * 30}"
        "</description></item>"
        for i in range(n)
    )
    return f'<rss version="2.0"><channel><title>{escape(title)}</title>{items}</channel></rss>'
