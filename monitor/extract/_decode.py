"""Bytes to text for HTML pages: pick the encoding, then repair mojibake.

Order of evidence: a byte-order mark, then the HTTP ``Content-Type`` charset,
then ``<meta charset>`` / ``http-equiv``, then the bytes themselves. Declared
legacy single-byte charsets lose to valid UTF-8 bytes, because servers and
templates often claim ISO-8859-1 for pages that are really UTF-8, while the
reverse accident (cp1252 bytes that happen to be valid multi-byte UTF-8) is
vanishingly rare.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

from bs4.dammit import UnicodeDammit

from monitor.mojibake import repair as repair_mojibake

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_CHARSET_RE = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_META_RE = re.compile(rb"<meta\b[^>]*>", re.IGNORECASE)
_XML_DECL_RE = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""")
# How far into the document a <meta charset> may appear (HTML says 1024 bytes;
# real pages put long <script>s first, so look a little further).
_META_SCAN_BYTES = 16_384

# WHATWG: these labels mean windows-1252 in browsers, and pages rely on it.
_WHATWG_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "x-user-defined": "cp1252",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
}
_MIN_BYTES_TO_DETECT = 64
_UTF16_OR_32 = {"utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le", "utf-32be"}


def _normalize_label(label: str) -> str | None:
    name = label.strip().strip("\"'").lower()
    name = _WHATWG_ALIASES.get(name, name)
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # A page declaring UTF-16 in ASCII-compatible bytes is lying (HTML spec).
    if codec.replace("_", "-") in _UTF16_OR_32:
        return "utf-8"
    return codec


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _http_charset(headers: Mapping[str, str] | None) -> str | None:
    content_type = _header(headers, "content-type")
    if not content_type:
        return None
    match = _CHARSET_RE.search(content_type.encode("latin-1", "replace"))
    return _normalize_label(match.group(1).decode("ascii")) if match else None


def _meta_charset(body: bytes) -> str | None:
    head = body[:_META_SCAN_BYTES]
    xml = _XML_DECL_RE.match(head)
    if xml:
        found = _normalize_label(xml.group(1).decode("ascii"))
        if found:
            return found
    for meta in _META_RE.finditer(head):
        match = _CHARSET_RE.search(meta.group(0))
        if match:
            found = _normalize_label(match.group(1).decode("ascii"))
            if found:
                return found
    return None


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _choose_encoding(body: bytes) -> str:
    """Without any declaration: UTF-8 if valid, else ask bs4's detector."""
    if _is_utf8(body):
        return "utf-8"
    # Statistical detection needs material: on a few stray bytes it guesses
    # wildly, and cp1252 is the browsers' own fallback.
    if sum(1 for byte in body[:65_536] if byte > 0x7F) < _MIN_BYTES_TO_DETECT:
        return "cp1252"
    # Detection on a bounded prefix keeps huge pages cheap.
    found = UnicodeDammit(body[:65_536], is_html=True).original_encoding
    return (_normalize_label(found) if found else None) or "cp1252"


def decode_html(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """Decode an HTML page to text; never raises.

    BOM > HTTP charset > ``<meta charset>``/``http-equiv`` > detection. A
    declared single-byte charset yields to bytes that are valid, non-ASCII
    UTF-8. Mojibake (``GroÃŸinvestor``) is then repaired with ftfy, only when a
    cheap precheck finds it.
    """
    if not body:
        return ""
    text: str | None = None
    for bom, codec in _BOMS:
        if body.startswith(bom):
            text = body[len(bom) :].decode(codec, "replace")
            break
    if text is None:
        declared = _http_charset(headers) or _meta_charset(body)
        if declared is None:
            encoding = _choose_encoding(body)
        elif declared != "utf-8" and body.isascii() is False and _is_utf8(body):
            encoding = "utf-8"
        else:
            encoding = declared
        try:
            text = body.decode(encoding, "replace")
        except (LookupError, ValueError):
            text = body.decode("cp1252", "replace")
    text = text.replace("\x00", "")
    return repair_mojibake(text)
