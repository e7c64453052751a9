"""One story, one alert (issue 11 item 3): identity of links and of texts across feeds.

Pure functions, no I/O. Two questions, two answers:

* **Is this the same page?** :func:`canonical_url` turns a link into a key
  that is the same for the tracking, AMP, mobile, ``http``/``https`` and
  ``www.`` variants of one article URL.
* **Is this the same wire story?** :func:`fingerprint` sketches an entry's
  normalized text; :func:`similar` says whether two sketches are copies of
  one story (a dpa/AFP/Reuters/AP text republished with a new headline, cut,
  extended by an intro or a closing paragraph, lightly edited);
  :func:`band_keys` gives the keys under which a database finds the few
  stored sketches worth comparing, among thousands in the window.

The sketch is MinHash over word 3-shingles, computed with one hash per
shingle ("one permutation hashing": the hash picks one of :data:`BINS` bins
and the smallest value per bin is kept; empty bins are filled by optimal
densification, Shrivastava 2017). The share of bins two sketches agree on
estimates the Jaccard resemblance of their shingle sets; with the sizes of
both sets that gives the share of the *shorter* text found in the longer one
(containment), which is what survives a wire copy being cut or extended. A
64-bit SimHash was the other candidate: it separates only very close copies
(a few differing bits) and can't be banded for the Hamming distances a cut
paragraph causes.

All hashing is blake2b over UTF-8 (never Python's salted ``hash()``), so
sketches and band keys are the same in every process and on every machine.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
import struct
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode, urlsplit

__all__ = [
    "BANDS",
    "BAND_ROWS",
    "BINS",
    "FINGERPRINT_VERSION",
    "MAX_WORDS",
    "MIN_BODY_WORDS",
    "MIN_CONTAINMENT",
    "MIN_MATCHING_BINS",
    "MIN_SHINGLES",
    "SHINGLE_WORDS",
    "TRACKING_PARAMETERS",
    "TRACKING_PREFIXES",
    "Fingerprint",
    "Resemblance",
    "band_keys",
    "canonical_url",
    "fingerprint",
    "resemblance",
    "similar",
    "story_text",
]

# --------------------------------------------------------------------------
# canonical_url

# Query parameters that say how a reader arrived, never which article it is.
# Matched case-insensitively, exactly or (next list) by prefix.
TRACKING_PARAMETERS = frozenset(
    {
        # click ids of ad and social networks
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "gclsrc",
        "dclid",  # Google Display
        "gbraid",
        "wbraid",
        "msclkid",  # Microsoft Ads
        "yclid",  # Yandex
        "twclid",  # X/Twitter
        "ttclid",  # TikTok
        "li_fat_id",  # LinkedIn
        "igshid",  # Instagram
        "igsh",
        "s_kwcid",  # Adobe
        "ef_id",
        # newsletters and marketing automation
        "mc_cid",  # Mailchimp
        "mc_eid",
        "mkt_tok",  # Marketo
        "_hsenc",  # HubSpot
        "_hsmi",
        "_ke",  # Klaviyo
        "vero_id",
        "vero_conv",
        # analytics
        "_ga",  # Google Analytics cross-domain
        "_gl",
        "spm",  # Alibaba/Aplus
        "xtor",  # AT Internet (French outlets)
        "xtref",
        "cmpid",  # campaign ids (Spiegel, Zeit, many CMSs)
        "cmp",  # The Guardian (CMP=share_btn_tw)
        "icid",
        "ocid",  # MSN
        "ncid",  # Yahoo
        "soc_src",
        "soc_trk",
        "smid",  # The New York Times share links
        "referringsource",
        "sara_ref",  # Spiegel
        "ito",  # Sky
        "trk",
        "trkcampaign",
        "sc_cid",
        "__twitter_impression",
        # where a click came from
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "referer",
        "share",
        "shared",
    }
)
TRACKING_PREFIXES = (
    "utm_",  # Google Analytics campaigns, everywhere
    "wt_",  # Webtrekk/Mapp: heise's wt_mc, wt_zmc, wt_ref
    "wt.",  # Webtrends: WT.mc_id
    "at_",  # AT Internet / Piano: BBC and ARD's at_medium, at_campaign
    "ns_",  # comScore: BBC's ns_mchannel, ns_campaign, ns_source
    "pk_",  # Piwik: pk_campaign, pk_kwd
    "mtm_",  # Matomo
    "hsa_",  # HubSpot ads
    "oly_",  # Omeda
    "guce_",  # Yahoo consent redirects
    "guccounter",
)
# Query parameters that ask for the AMP rendering of the same article.
_AMP_PARAMETERS = frozenset({"amp", "_amp", "amp_js_v", "amp_gsa", "amp_r", "usqp"})
# ... and parameters that do so with the value "amp" (output=amp, outputType=amp).
_AMP_VALUED = frozenset({"output", "outputtype", "outputformat", "view", "format", "mode"})
# A first host label that names a variant of the same site, dropped while at
# least two labels remain (m.spiegel.de, mobil.derstandard.at, amp.cnn.com).
_VARIANT_HOST_LABELS = frozenset({"www", "m", "mobile", "mobil", "amp"})
_DEFAULT_PORTS = frozenset({80, 443})  # http and https count as one scheme
# RFC 3986 sub-delims plus ":" and "@" stay literal in a path; quote() keeps
# letters, digits and "-._~" itself.
_PATH_SAFE = "/!$&'()*+,;=:@"


def canonical_url(url: str) -> str:
    """A key for ``url`` that is the same for every variant of one article's address.

    Scheme and host lower-case, ``http`` and ``https`` both ``https``, no
    user info, no default port, no fragment, no trailing slash; a leading
    ``www.``, ``m.``, ``mobile.``, ``mobil.`` or ``amp.`` label dropped (while
    two labels remain); AMP variants folded into the article (``/amp``,
    ``/amp/...``, ``.amp``, ``.amp.html``, ``?amp``, ``output=amp``,
    ``outputType=amp``, the Google AMP cache and ``google.com/amp/s/...``);
    tracking parameters (:data:`TRACKING_PARAMETERS`,
    :data:`TRACKING_PREFIXES`) dropped, the rest sorted by name; percent-escapes
    made uniform (``ü`` and ``%c3%bc`` are one path). International hosts
    are compared in their ``xn--`` form.

    A page that names its ``rel=canonical`` knows better: pass that URL when
    there is one. Never raises: a string that is not an absolute URL with a
    host (``javascript:...``, a relative path, a bad port) comes back
    stripped of surrounding white space, otherwise unchanged.
    """
    text = url.strip()
    try:
        return _canonical(text, unwrap=True)
    except ValueError:  # UnicodeError is one: bad ports, brackets, surrogates
        return text


def _canonical(text: str, *, unwrap: bool) -> str:
    split = urlsplit(text)
    scheme = split.scheme.lower()
    host = (split.hostname or "").rstrip(".")
    if not host or scheme not in ("", "http", "https", "ftp"):
        return text
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    host = host.lower()
    port = split.port
    if unwrap:
        inner = _amp_cache_target(host, split.path)
        if inner is not None:
            query = f"?{split.query}" if split.query else ""
            return _canonical(f"https://{inner}{query}", unwrap=False)
    labels = host.split(".")
    while len(labels) > 2 and labels[0] in _VARIANT_HOST_LABELS:
        labels.pop(0)
    host = ".".join(labels)
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = host if port is None or port in _DEFAULT_PORTS else f"{host}:{port}"
    path = _amp_path(quote(unquote_to_bytes(split.path), safe=_PATH_SAFE)).rstrip("/")
    # sorted by name only: the order of a repeated parameter's values is kept
    pairs = sorted(
        (
            (key, value)
            for key, value in parse_qsl(split.query, keep_blank_values=True)
            if not _dropped_parameter(key, value)
        ),
        key=lambda pair: pair[0],
    )
    query = urlencode(pairs, quote_via=quote)
    if scheme in ("", "http"):
        scheme = "https"
    return f"{scheme}://{netloc}{path}{'?' if query else ''}{query}"


def _amp_cache_target(host: str, path: str) -> str | None:
    """``host/path`` of the article an AMP cache URL serves, else None.

    ``www-heise-de.cdn.ampproject.org/c/s/www.heise.de/news/x.html`` and
    ``www.google.com/amp/s/www.heise.de/news/x.html`` both serve
    ``www.heise.de/news/x.html``.
    """
    parts = path.split("/")  # parts[0] is "" (the path starts with "/")
    if host.endswith(".cdn.ampproject.org"):
        marker: tuple[str, ...] = ("c", "v")  # /c/: a page, /v/: a viewer page
    elif host in ("google.com", "www.google.com"):
        marker = ("amp",)
    else:
        return None
    if len(parts) < 3 or parts[1] not in marker:
        return None
    rest = parts[2:]
    if rest[0] == "s":  # "s": the article is served over https
        rest = rest[1:]
    if not rest or "." not in rest[0]:
        return None
    return "/".join(rest)


def _amp_path(path: str) -> str:
    """``path`` without the AMP markers of common news CMSs."""
    segments = path.rstrip("/").split("/")
    if len(segments) > 2 and segments[1] == "amp":  # welt.de/amp/..., /amp/news/...
        del segments[1]
    if len(segments) > 1 and segments[-1] == "amp":  # t3n.de/news/.../amp/
        segments.pop()
    last = segments[-1]
    if last.endswith(".amp"):  # bbc.com/news/world-123.amp
        segments[-1] = last[: -len(".amp")]
    elif ".amp." in last:  # ...-12345.amp.html
        segments[-1] = last.replace(".amp.", ".", 1)
    return "/".join(segments)


def _dropped_parameter(key: str, value: str) -> bool:
    name = key.lower()
    return (
        name in TRACKING_PARAMETERS
        or name.startswith(TRACKING_PREFIXES)
        or name in _AMP_PARAMETERS
        or (name in _AMP_VALUED and value.lower() == "amp")
    )


# --------------------------------------------------------------------------
# fingerprints

FINGERPRINT_VERSION = 1  # in every stored sketch and band key: a change of the constants
#                          below makes old sketches incomparable, so it bumps this
SHINGLE_WORDS = 3  # words per shingle: a reworded sentence still shares its untouched
#                    phrases, while the single words and word pairs of a topic ("azure
#                    front door", "der chinesische") are shared by every story about it;
#                    2 and 4 words scored lower on the labelled set
BINS = 128  # MinHash values per sketch (512 bytes stored); the Jaccard estimate's standard
#             error is sqrt(J(1-J)/128), 0.044 at J = 0.5. With 64 the labelled set scored
#             the same, but a story 3x longer than another turned an estimate 4 standard
#             errors high into a false duplicate among 10,000 synthetic stories
BAND_ROWS = 2  # bins per band key: a pair at Jaccard J shares one of the 32 bands with
#                probability 1-(1-J^2)^32: 0.73 at J = 0.2, 0.95 at 0.3, 0.99 at 0.38 (two
#                texts of one length at the containment threshold), while unrelated news
#                at J < 0.02 meets in fewer than 1.3 % of pairs; a text under a fifth of
#                the other's length (J < 0.2) is often missed
BANDS = 32  # band keys per sketch, over the first BANDS * BAND_ROWS bins: more keys find
#             the short-in-long copies better but cost an index row each
MIN_SHINGLES = 25  # distinct shingles both texts need before they are compared at all:
#                    a headline, or a headline and a one-line teaser, says too little to
#                    tell two stories on one topic apart ("Azure-Störung behoben" twice)
MIN_MATCHING_BINS = 10  # of 128 bins two sketches must agree on (an estimated J of 0.078):
#                         texts of very different length need it, where one or two chance
#                         agreements would make a 30-shingle text look contained in a
#                         1,000-shingle one. Stories on one topic (J = 0.02) reach 10 by
#                         chance with probability 3e-4, unrelated news (J = 0.002) never
MIN_CONTAINMENT = 0.55  # share of the shorter text's shingles estimated to be in the
#                         longer one. A copy with a new headline, cut to half, or with an
#                         outlet's intro and closing lines keeps 0.9-1.0, two lightly
#                         reworded copies 0.45-0.7; a follow-up repeating a background
#                         paragraph, an analysis quoting the release stay below 0.35; two
#                         stories sharing a long boilerplate block reach 0.4-0.6. F1 on the
#                         labelled set is as high at 0.5, but a false duplicate hides a
#                         different story while a missed one only alerts twice, so the
#                         precision side (see the sweep of benchmarks/bench_story.py)
MAX_WORDS = 3000  # words of a text that are sketched: more than any wire story, and it
#                   bounds the cost of a huge page (about 1.5 µs per word)
MIN_BODY_WORDS = 40  # summary + content below this: the headline is sketched too

_BIN_BITS = BINS.bit_length() - 1
_VALUE_MASK = 0xFFFF_FFFF  # 32 bits per bin: a chance tie between two minima is 1 in 4e9
_EMPTY = _VALUE_MASK + 1  # no shingle fell into the bin (never stored: densified away)
_WORD = re.compile(r"\w+")
_HEADER = struct.Struct("<BI")  # version, size
_MINS = struct.Struct(f"<{BINS}I")
_KEY_MASK = (1 << 63) - 1  # band keys fit SQLite's signed 64-bit INTEGER

assert BINS == 1 << _BIN_BITS and BANDS * BAND_ROWS <= BINS


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The MinHash sketch of one text.

    ``size`` is the number of distinct word shingles of the text, ``mins``
    the :data:`BINS` 32-bit minima. :meth:`to_bytes` is the compact stored
    form (517 bytes); :meth:`from_bytes` reads it back.
    """

    size: int
    mins: tuple[int, ...]

    def to_bytes(self) -> bytes:
        """The sketch as bytes: version, size, then the minima (little-endian)."""
        return _HEADER.pack(FINGERPRINT_VERSION, self.size) + _MINS.pack(*self.mins)

    @classmethod
    def from_bytes(cls, data: bytes) -> Fingerprint:
        """Read :meth:`to_bytes`; ValueError for bytes of another version or length."""
        if len(data) != _HEADER.size + _MINS.size:
            raise ValueError(f"a fingerprint is {_HEADER.size + _MINS.size} bytes, not {len(data)}")
        version, size = _HEADER.unpack_from(data)
        if version != FINGERPRINT_VERSION:
            raise ValueError(f"fingerprint version {version}, expected {FINGERPRINT_VERSION}")
        return cls(size, _MINS.unpack_from(data, _HEADER.size))


@dataclass(frozen=True, slots=True)
class Resemblance:
    """How much of two texts is shared, estimated from their sketches.

    ``jaccard``: shared shingles / all shingles of both; ``containment``:
    shared shingles / shingles of the shorter text (capped at 1);
    ``matching_bins``: how many of the :data:`BINS` minima agree.
    """

    jaccard: float
    containment: float
    matching_bins: int


def story_text(*, title: str, summary: str, content: str) -> str:
    """The text of an entry to sketch (each part already normalized).

    Outlets change the headline of a wire story and keep the body, so the
    title is left out when summary and content have :data:`MIN_BODY_WORDS`
    words or more. The summary is kept even when the content repeats it:
    sketches are sets, a repeated lede counts once, and an entry whose feed
    gives only a teaser still shares it with a full copy.
    """
    body = f"{summary} {content}".strip()
    if len(_WORD.findall(body, 0, 2000)) >= MIN_BODY_WORDS:
        return body
    return f"{title} {body}".strip()


def fingerprint(text: str) -> Fingerprint:
    """The sketch of ``text``, our normalized text (see :func:`monitor.normalize.prepare`).

    Words are runs of letters and digits (``ki-modell`` is two words);
    shingles are :data:`SHINGLE_WORDS` consecutive words; at most the first
    :data:`MAX_WORDS` words count. Deterministic across processes.
    """
    words = _WORD.findall(text)[:MAX_WORDS]
    if len(words) >= SHINGLE_WORDS:
        last = len(words) - SHINGLE_WORDS
        shingles = {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(last + 1)}
    else:
        shingles = {" ".join(words)} if words else set()
    bins = [_EMPTY] * BINS
    shift = 64 - _BIN_BITS
    for shingle in shingles:
        h = int.from_bytes(
            hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "little"
        )
        index = h >> shift
        value = (h >> (shift - 32)) & _VALUE_MASK
        if value < bins[index]:
            bins[index] = value
    return Fingerprint(len(shingles), _densify(bins))


def _densify(bins: list[int]) -> tuple[int, ...]:
    """Fill empty bins from filled ones, the same way for every text.

    Optimal densification: an empty bin ``i`` takes the value of the first
    filled bin along a fixed pseudo-random sequence of bins that depends on
    ``i`` only. Two texts then agree on a bin with probability equal to their
    Jaccard resemblance, also where one of them is short.
    """
    if _EMPTY not in bins:
        return tuple(bins)
    if all(value == _EMPTY for value in bins):
        return (0,) * BINS  # an empty text; never similar (size 0 < MIN_SHINGLES)
    out = list(bins)
    probes = _probes()
    for i, value in enumerate(bins):
        if value != _EMPTY:
            continue
        for j in probes[i]:
            if bins[j] != _EMPTY:
                out[i] = bins[j]
                break
        else:  # the fixed sequence missed every filled bin: walk on in order
            out[i] = next(
                bins[(i + k) % BINS] for k in range(BINS) if bins[(i + k) % BINS] != _EMPTY
            )
    return tuple(out)


_PROBES_PER_BIN = 48  # a text of MIN_SHINGLES shingles fills about 23 of 128 bins: 48 probes
#                       all miss with probability (105/128)^48 = 7e-5; the walk-on covers it


@functools.cache
def _probes() -> tuple[tuple[int, ...], ...]:
    """For every bin, the fixed pseudo-random sequence of bins it borrows from (splitmix64)."""
    mask = 0xFFFF_FFFF_FFFF_FFFF
    table = []
    for i in range(BINS):
        row = []
        for k in range(_PROBES_PER_BIN):
            z = (((i << 16) | k) + 0x9E3779B97F4A7C15) & mask
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            row.append((z ^ (z >> 31)) % BINS)
        table.append(tuple(row))
    return tuple(table)


def resemblance(a: Fingerprint, b: Fingerprint) -> Resemblance:
    """Estimated Jaccard resemblance and containment of the texts behind ``a`` and ``b``."""
    return _resemblance(a, b, sum(map(operator.eq, a.mins, b.mins)))


def _resemblance(a: Fingerprint, b: Fingerprint, matching: int) -> Resemblance:
    jaccard = matching / BINS
    smaller = min(a.size, b.size)
    if smaller == 0:
        return Resemblance(jaccard, 0.0, matching)
    # |A ∩ B| = J / (1 + J) * (|A| + |B|)
    shared = jaccard / (1.0 + jaccard) * (a.size + b.size)
    return Resemblance(jaccard, min(1.0, shared / smaller), matching)


def similar(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether ``a`` and ``b`` are sketches of copies of one story.

    True when both texts have :data:`MIN_SHINGLES` distinct shingles or more,
    their sketches agree on :data:`MIN_MATCHING_BINS` bins or more, and at
    least :data:`MIN_CONTAINMENT` of the shorter text's shingles are
    estimated to be in the longer one. Symmetric.
    """
    if a.size < MIN_SHINGLES or b.size < MIN_SHINGLES:
        return False
    matching = sum(map(operator.eq, a.mins, b.mins))
    if matching < MIN_MATCHING_BINS:  # most candidates end here
        return False
    return _resemblance(a, b, matching).containment >= MIN_CONTAINMENT


def band_keys(fp: Fingerprint) -> tuple[int, ...]:
    """The :data:`BANDS` keys to store and look ``fp`` up by, or () for a short text.

    Key ``i`` hashes band ``i``'s :data:`BAND_ROWS` minima together with
    ``i`` and :data:`FINGERPRINT_VERSION`, so keys of different bands (and
    versions) never collide and one indexed column can hold them all; each
    fits SQLite's signed INTEGER. Two sketches are candidates when any key
    is equal; only candidates need :func:`similar`. A text below
    :data:`MIN_SHINGLES` is never similar to anything: it has no keys.
    """
    if fp.size < MIN_SHINGLES:
        return ()
    keys = []
    for band in range(BANDS):
        rows = fp.mins[band * BAND_ROWS : (band + 1) * BAND_ROWS]
        data = struct.pack(f"<BH{BAND_ROWS}I", FINGERPRINT_VERSION, band, *rows)
        digest = hashlib.blake2b(data, digest_size=8).digest()
        keys.append(int.from_bytes(digest, "little") & _KEY_MASK)
    return tuple(keys)
