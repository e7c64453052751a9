"""Story identity: canonical URLs and near-duplicate fingerprints of wire copy."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

import pytest

from monitor.normalize import prepare
from monitor.story import (
    BANDS,
    BINS,
    FINGERPRINT_VERSION,
    MIN_CONTAINMENT,
    MIN_SHINGLES,
    Fingerprint,
    band_keys,
    canonical_url,
    fingerprint,
    resemblance,
    similar,
    story_text,
)

# --------------------------------------------------------------------------
# canonical_url

CANONICAL = [
    # German outlets: tracking, mobile and AMP variants, fragments
    (
        "https://www.heise.de/news/DeepSeek-V4-vorgestellt-10234567.html"
        "?wt_mc=rss.red.ho.ho.atom.beitrag.beitrag",
        "https://heise.de/news/DeepSeek-V4-vorgestellt-10234567.html",
    ),
    (
        "http://heise.de/news/DeepSeek-V4-vorgestellt-10234567.html?wt_zmc=nl.x&WT_MC=y",
        "https://heise.de/news/DeepSeek-V4-vorgestellt-10234567.html",
    ),
    (
        "https://www.golem.de/news/ki-deepseek-2501-192345.html"
        "?utm_source=nl.2025-01-28.html&utm_medium=e-mail&utm_campaign=golem.de-newsletter",
        "https://golem.de/news/ki-deepseek-2501-192345.html",
    ),
    (
        "https://www.golem.de/news/ki-deepseek-2501-192345.amp.html",
        "https://golem.de/news/ki-deepseek-2501-192345.html",
    ),
    ("https://t3n.de/news/deepseek-v4-1678901/amp/", "https://t3n.de/news/deepseek-v4-1678901"),
    (
        "https://m.spiegel.de/netzwelt/web/deepseek-a-1b2c3d.html?sara_ref=re-so-app-sh",
        "https://spiegel.de/netzwelt/web/deepseek-a-1b2c3d.html",
    ),
    (
        "https://www.tagesschau.de/wirtschaft/azure-stoerung-100.html#kommentare",
        "https://tagesschau.de/wirtschaft/azure-stoerung-100.html",
    ),
    (
        "https://www.welt.de/amp/wirtschaft/article255123456/Intel-Magdeburg.html",
        "https://welt.de/wirtschaft/article255123456/Intel-Magdeburg.html",
    ),
    (
        "https://mobil.derstandard.at/story/3000000212345/azure",
        "https://derstandard.at/story/3000000212345/azure",
    ),
    (
        "https://www.br.de/nachrichten/netzwelt/ki,Uabc123?at_medium=rss&at_campaign=feed",
        "https://br.de/nachrichten/netzwelt/ki,Uabc123",
    ),
    (  # an umlaut in the path, as written and percent-encoded in either case
        "https://www.zdf.de/nachrichten/digitales/künstliche-intelligenz-100.html",
        "https://zdf.de/nachrichten/digitales/k%C3%BCnstliche-intelligenz-100.html",
    ),
    (
        "https://www.zdf.de/nachrichten/digitales/k%c3%bcnstliche-intelligenz-100.html",
        "https://zdf.de/nachrichten/digitales/k%C3%BCnstliche-intelligenz-100.html",
    ),
    # English outlets
    (
        "https://www.bbc.co.uk/news/technology-68123456?at_medium=RSS&at_campaign=rss",
        "https://bbc.co.uk/news/technology-68123456",
    ),
    ("https://www.bbc.com/news/articles/c0k1l2m3.amp", "https://bbc.com/news/articles/c0k1l2m3"),
    (
        "https://amp.theguardian.com/technology/2025/jan/28/deepseek-ai?CMP=share_btn_url",
        "https://theguardian.com/technology/2025/jan/28/deepseek-ai",
    ),
    (
        "https://www.reuters.com/technology/deepseek-2025-01-28/"
        "?utm_source=twitter&utm_medium=social&fbclid=IwAR0abc",
        "https://reuters.com/technology/deepseek-2025-01-28",
    ),
    (  # a parameter we don't know stays
        "https://www.theregister.com/2025/01/28/deepseek_r1/?td=rt-3a",
        "https://theregister.com/2025/01/28/deepseek_r1?td=rt-3a",
    ),
    (
        "http://arstechnica.com:80/ai/2025/01/deepseek/",
        "https://arstechnica.com/ai/2025/01/deepseek",
    ),
    (
        "https://www.nytimes.com/2025/01/28/technology/deepseek.html"
        "?smid=nytcore-ios-share&referringSource=articleShare",
        "https://nytimes.com/2025/01/28/technology/deepseek.html",
    ),
    (
        "https://mobile.twitter.com/heiseonline/status/1884000000000000000?s=20&ref_src=twsrc",
        "https://twitter.com/heiseonline/status/1884000000000000000?s=20",
    ),
    # AMP caches and AMP query forms
    (
        "https://www-golem-de.cdn.ampproject.org/c/s/www.golem.de/news/ki-2501-192345.amp.html",
        "https://golem.de/news/ki-2501-192345.html",
    ),
    (
        "https://www.google.com/amp/s/arstechnica.com/ai/2025/01/deepseek/amp/",
        "https://arstechnica.com/ai/2025/01/deepseek",
    ),
    ("https://example.com/story?id=5&outputType=amp", "https://example.com/story?id=5"),
    ("https://example.com/story?amp", "https://example.com/story"),
    ("https://example.com/story?amp=1&output=amp", "https://example.com/story"),
    ("https://example.com/story?output=json", "https://example.com/story?output=json"),
    # more tracking ids
    (
        "https://example.com/a?gclid=1&dclid=2&msclkid=3&mc_cid=4&mc_eid=5&igshid=6&yclid=7"
        "&_ga=8&spm=9&share=10&cmpid=11&xtor=12&ns_mchannel=13&ns_campaign=14&ref=15&id=16",
        "https://example.com/a?id=16",
    ),
    # query order, repeated parameters, case of the path
    ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
    ("https://example.com/a?tag=b&tag=a", "https://example.com/a?tag=b&tag=a"),
    ("https://example.com/News/X", "https://example.com/News/X"),
    # hosts, ports, user info
    ("HTTPS://WWW.Heise.DE./", "https://heise.de"),
    ("//www.heise.de/news/x.html", "https://heise.de/news/x.html"),
    ("https://bücher.de/x", "https://xn--bcher-kva.de/x"),
    ("https://user:secret@example.com:8443/a/", "https://example.com:8443/a"),
    ("http://[2001:db8::1]:8080/a/", "https://[2001:db8::1]:8080/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("https://m.example/a", "https://m.example/a"),  # two labels: "m" is the name
    ("ftp://FTP.Example.com/pub/", "ftp://ftp.example.com/pub"),
    # not a URL with a host: returned stripped, otherwise as is
    ("", ""),
    ("   ", ""),
    ("  not a url ", "not a url"),
    ("javascript:alert(1)", "javascript:alert(1)"),
    ("mailto:redaktion@example.com", "mailto:redaktion@example.com"),
    ("/news/relative.html", "/news/relative.html"),
    ("http://", "http://"),
    ("https://example.com:99999/a", "https://example.com:99999/a"),
    ("https://example.com:port/a", "https://example.com:port/a"),
    ("http://[::1", "http://[::1"),
    ("https://example.com/\ud800", "https://example.com/\ud800"),
]


@pytest.mark.parametrize(("url", "expected"), CANONICAL)
def test_canonical_url_table(url: str, expected: str) -> None:
    assert expected == canonical_url(url)


@pytest.mark.parametrize(("url", "expected"), CANONICAL)
def test_canonical_url_is_stable_on_its_own_output(url: str, expected: str) -> None:
    assert expected == canonical_url(expected)


def test_canonical_url_never_raises_on_junk() -> None:
    rng = random.Random(11)
    alphabet = "htps:/[]@%?&=#.:-_~aAmpü\x00\n\t \ud800ß0123456789"
    for _ in range(3000):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert isinstance(canonical_url(junk), str)
        assert isinstance(canonical_url("https://" + junk), str)


def test_http_https_www_and_tracking_variants_share_one_key() -> None:
    variants = [
        "https://www.heise.de/news/Azure-Stoerung-10234567.html",
        "http://heise.de/news/Azure-Stoerung-10234567.html",
        "https://www.heise.de:443/news/Azure-Stoerung-10234567.html/",
        "https://m.heise.de/news/Azure-Stoerung-10234567.html?wt_mc=rss.red&utm_source=x#top",
        "https://www.heise.de/news/Azure-Stoerung-10234567.html?view=amp",
    ]
    assert len({canonical_url(v) for v in variants}) == 1


# --------------------------------------------------------------------------
# fingerprints

WIRE_DE = [
    "Redmond/Berlin (dpa) - Eine Störung der Cloud-Plattform Azure hat am Montag zahlreiche "
    "Dienste von Microsoft in Europa lahmgelegt.",
    "Betroffen waren unter anderem die Videokonferenz-Software Teams, der E-Mail-Dienst Outlook "
    "und das Verwaltungsportal von Azure.",
    "Die Probleme begannen gegen 9.30 Uhr mitteleuropäischer Zeit und dauerten nach Angaben von "
    "Microsoft rund sechs Stunden.",
    "Als Ursache nannte das Unternehmen eine fehlerhafte Konfigurationsänderung an "
    "Azure Front Door.",
    "Azure Front Door verteilt als weltweites Netz die Anfragen an Webanwendungen und Dienste von "
    "Microsoft und seinen Kunden.",
    "Die Änderung sei zurückgenommen worden, danach hätten sich die Dienste schrittweise erholt.",
    "Auf dem Portal Allestörungen.de gingen in der Spitze mehr als 40.000 Meldungen ein.",
    "Azure ist nach Amazon Web Services der zweitgrößte Anbieter von Cloud-Infrastruktur weltweit.",
]
SUMMARY_DE = (
    "Eine Störung der Microsoft-Cloud Azure hat am Montag in weiten Teilen Europas Teams, Outlook "
    "und das Azure-Portal unerreichbar gemacht."
)
# the next story on the same topic, repeating two background sentences verbatim
FOLLOW_UP_DE = [
    "Redmond (dpa) - Microsoft hat zwei Tage nach der großen Azure-Störung einen vorläufigen "
    "Bericht zu den Ursachen veröffentlicht.",
    "Demnach hatte ein Softwarefehler in einem Prüfwerkzeug dazu geführt, dass eine ungültige "
    "Konfiguration nicht gestoppt wurde.",
    "Die Änderung sei anschließend in alle Regionen verteilt worden, statt wie vorgesehen zunächst "
    "nur in einer einzelnen Testregion.",
    "Azure Front Door verteilt als weltweites Netz die Anfragen an Webanwendungen und Dienste von "
    "Microsoft und seinen Kunden.",
    "Microsoft kündigte an, Änderungen künftig in kleineren Schritten auszurollen und die "
    "Prüfwerkzeuge zu überarbeiten.",
    "Kunden mit Service-Level-Vereinbarungen sollen Gutschriften erhalten.",
    "Azure ist nach Amazon Web Services der zweitgrößte Anbieter von Cloud-Infrastruktur weltweit.",
]

WIRE_EN = [
    "BEIJING (Reuters) - Chinese artificial intelligence start-up DeepSeek on Thursday released "
    "R2, the successor to the reasoning model that shook global technology stocks earlier this "
    "year.",
    "The company said R2 can break down complex requests into steps and call external tools such "
    "as web search and code interpreters to complete them.",
    "In benchmark results published alongside the release, DeepSeek said R2 matched or exceeded "
    "OpenAI's o3 on several mathematics and coding tests.",
    "The figures could not be independently verified.",
    "DeepSeek said it would charge developers $0.55 per million input tokens, well below the "
    "prices of US rivals.",
    "DeepSeek, based in Hangzhou, is backed by the quantitative hedge fund High-Flyer and has "
    "released most of its models under open licences.",
    "The company did not disclose how many chips were used to train R2.",
]
OTHER_EN = [
    "WASHINGTON (AP) - A bipartisan group of lawmakers introduced a bill on Tuesday that would "
    "prohibit federal employees from using the Chinese AI app DeepSeek on government devices.",
    "The sponsors said the app's privacy policy allows user data to be stored on servers in China.",
    "The bill would give agencies 60 days to remove the app from phones and computers they manage.",
    "Similar bans already apply to TikTok on federal devices.",
    "DeepSeek, based in Hangzhou, is backed by the quantitative hedge fund High-Flyer and has "
    "released most of its models under open licences.",
    "DeepSeek did not respond to a request for comment.",
]


def _fp(title: str, summary: str, body: list[str]) -> Fingerprint:
    doc = prepare(title=title, summary=summary, content=" ".join(body))
    f = doc.fields
    return fingerprint(story_text(title=f["title"], summary=f["summary"], content=f["content"]))


def test_wire_copy_with_a_new_headline_is_similar() -> None:
    a = _fp("Azure-Störung legt Teams und Outlook lahm", SUMMARY_DE, WIRE_DE)
    b = _fp("Microsoft-Cloud streikt: Tausende Firmen ohne Teams", SUMMARY_DE, WIRE_DE)
    assert similar(a, b)
    assert similar(b, a)


def test_cut_and_extended_copies_are_similar() -> None:
    full = _fp("Azure-Störung legt Teams und Outlook lahm", SUMMARY_DE, WIRE_DE)
    cut = _fp("Stundenlanger Ausfall bei Microsoft", SUMMARY_DE, WIRE_DE[:4])
    extended = _fp(
        "Azure in Europa gestört",
        SUMMARY_DE,
        [
            "Hinweis der Redaktion: Dieser Text wird laufend aktualisiert.",
            *WIRE_DE[:5],
            "Auch mehrere Bundesländer meldeten Probleme in ihren Verwaltungen.",
            *WIRE_DE[5:],
            "Dieser Artikel wurde mit Material der Nachrichtenagentur dpa erstellt.",
        ],
    )
    assert similar(full, cut)
    assert similar(full, extended)
    assert similar(cut, extended)
    assert resemblance(full, cut).containment > 0.9


def test_english_wire_copy_without_dateline_and_with_a_tail_is_similar() -> None:
    summary = "DeepSeek released R2, a reasoning model that can use external tools."
    a = _fp("DeepSeek releases R2 reasoning model", summary, WIRE_EN)
    body = [WIRE_EN[0].removeprefix("BEIJING (Reuters) - "), *WIRE_EN[1:]]
    body.append("(Reporting by Anna Lee; Editing by Mark Potter)")
    b = _fp("China's DeepSeek unveils R2, says it rivals OpenAI", summary, body)
    assert similar(a, b)


def test_a_follow_up_repeating_background_sentences_is_not_similar() -> None:
    first = _fp("Azure-Störung legt Teams und Outlook lahm", SUMMARY_DE, WIRE_DE)
    follow_up = _fp(
        "Azure-Ausfall: Microsoft legt vorläufigen Bericht vor",
        "Zwei Tage nach dem Ausfall hat Microsoft einen ersten Bericht veröffentlicht.",
        FOLLOW_UP_DE,
    )
    assert not similar(first, follow_up)
    assert resemblance(first, follow_up).containment < MIN_CONTAINMENT


def test_different_stories_on_one_topic_are_not_similar() -> None:
    a = _fp("DeepSeek releases R2", "DeepSeek released R2.", WIRE_EN)
    b = _fp("US lawmakers move to ban DeepSeek", "A bill would ban DeepSeek.", OTHER_EN)
    assert not similar(a, b)


def test_short_texts_are_never_similar_even_when_equal() -> None:
    a = _fp("Azure-Störung behoben", "", [])
    b = _fp("Azure-Störung behoben", "", [])
    assert a == b
    assert a.size < MIN_SHINGLES
    assert not similar(a, b)
    assert band_keys(a) == ()
    empty = fingerprint("")
    assert empty.size == 0
    assert not similar(empty, empty)


def test_teasers_sharing_the_wire_lede_are_similar() -> None:
    lede = (
        "Chinese AI start-up DeepSeek on Thursday released R2, a reasoning model that it says "
        "can plan and carry out multi-step tasks using external tools. The company claims "
        "performance on par with leading US models."
    )
    a = _fp("DeepSeek releases R2 reasoning model with agent features", lede, [])
    b = _fp("DeepSeek R2 arrives with tool use and a lower price tag", lede, [])
    assert similar(a, b)


def test_story_text_leaves_the_headline_out_of_a_long_enough_body() -> None:
    body = " ".join(WIRE_EN)
    assert story_text(title="headline", summary="lede", content=body) == f"lede {body}"
    assert story_text(title="headline", summary="a short teaser", content="") == (
        "headline a short teaser"
    )


def test_a_few_chance_agreements_do_not_make_a_short_text_contained_in_a_long_one() -> None:
    short = Fingerprint(30, tuple(range(BINS)))
    long = Fingerprint(3000, (0, 1, 2, *range(10_000, 10_000 + BINS - 3)))
    assert resemblance(short, long).matching_bins == 3
    assert resemblance(short, long).containment >= MIN_CONTAINMENT
    assert not similar(short, long)


def test_band_keys_of_similar_fingerprints_share_a_band() -> None:
    a = _fp("Azure-Störung legt Teams und Outlook lahm", SUMMARY_DE, WIRE_DE)
    pairs = [
        (a, _fp("Ausfall bei Microsoft", SUMMARY_DE, WIRE_DE[:5])),
        (a, _fp("Microsoft-Cloud streikt", SUMMARY_DE, [*WIRE_DE, "(dpa/fw)"])),
        (
            _fp("DeepSeek releases R2", "R2 is out.", WIRE_EN),
            _fp("DeepSeek unveils R2", "R2 is out.", WIRE_EN[:5]),
        ),
    ]
    for x, y in pairs:
        assert similar(x, y)
        assert set(band_keys(x)) & set(band_keys(y))


def test_band_keys_are_distinct_per_band_and_fit_sqlite_integers() -> None:
    keys = band_keys(_fp("t", SUMMARY_DE, WIRE_DE))
    assert len(keys) == BANDS
    assert len(set(keys)) == BANDS
    assert all(0 <= k < 2**63 for k in keys)


def test_fingerprint_round_trips_through_bytes() -> None:
    fp = _fp("t", SUMMARY_DE, WIRE_DE)
    data = fp.to_bytes()
    assert len(data) == 5 + 4 * BINS
    assert fp == Fingerprint.from_bytes(data)
    with pytest.raises(ValueError, match="version"):
        Fingerprint.from_bytes(bytes([FINGERPRINT_VERSION + 1]) + data[1:])
    with pytest.raises(ValueError, match="bytes"):
        Fingerprint.from_bytes(data[:-1])


_CHILD = """
import json, sys
from monitor.story import band_keys, fingerprint
fp = fingerprint(sys.argv[1])
print(json.dumps({"fp": fp.to_bytes().hex(), "keys": list(band_keys(fp))}))
"""


def test_fingerprints_and_band_keys_are_the_same_in_every_process() -> None:
    text = " ".join(WIRE_DE).casefold()
    fp = fingerprint(text)
    here = {"fp": fp.to_bytes().hex(), "keys": list(band_keys(fp))}
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, text], env=env, capture_output=True, check=True
        )
        assert here == json.loads(out.stdout)


def test_fingerprint_algorithm_is_pinned() -> None:
    # Stored sketches are compared with new ones: a change here needs FINGERPRINT_VERSION + 1.
    fp = fingerprint(" ".join(WIRE_DE).casefold())
    digest = hashlib.blake2b(fp.to_bytes() + repr(band_keys(fp)).encode(), digest_size=8)
    assert fp.size == 121
    assert digest.hexdigest() == "fefd0285bab764d2"
