"""Boilerplate phrases, German and English: what page furniture says about itself.

Names of classes and ids (in ``_content``) catch most furniture; these catch
what is left inside the article container: the heading of a "related" box,
a "Was this article helpful?" line, a date line, a photo credit, a promotion.
Every pattern is anchored or bounded by length in ``_clean``, so an article
sentence that merely mentions a newsletter stays.
"""

from __future__ import annotations

import re

# The heading of a box that is not article text; the box goes with it. Phrases
# match the start of the heading; single words only the whole heading ("Anzeige",
# "Kontakt (3)"), since "Anzeige gegen Unbekannt" or "Kontakt zu Außerirdischen"
# are headings of article sections.
_BOX_PHRASES = (
    # English
    r"related(?: posts| articles| stories| content| coverage)?|read (?:more|also|next)|"
    r"more (?:from|on|about|stories|news|in|like this)|most (?:read|popular|viewed|shared)|"
    r"recommended(?: for you)?|you (?:may|might) (?:also )?like|popular posts|"
    r"top stories|latest (?:news|stories|posts|articles)|recent posts|similar (?:posts|articles)|"
    r"further reading|leave a (?:reply|comment)|share (?:this|the|on)|follow us|"
    r"sign up|subscribe|newsletter|sponsored content|about the author|"
    r"filed under|was this (?:article|page|post|story) (?:helpful|useful)|"
    r"did you (?:like|enjoy) this|we respect your privacy|your privacy|"
    # German
    r"meistgelesen|meist gelesen|meistgeklickt|lesen sie (?:auch|mehr)|mehr zum thema|"
    r"mehr (?:aus|zu|von|vom|interviews|nachrichten|news|artikel)|auch interessant|"
    r"auch lesenswert|schon gelesen|das (?:k[öo]nnte|d[üu]rfte) sie (?:auch )?interessieren|"
    r"weitere (?:artikel|themen|nachrichten|meldungen|beitr[äa]ge|kommentare|interviews|"
    r"informationen|artikel zum thema)|[äa]hnliche (?:beitr[äa]ge|artikel|themen|nachrichten)|"
    r"verwandte (?:artikel|themen|beitr[äa]ge)|passend (?:dazu|zum thema)|dazu passend|"
    r"empfehlungen(?: f[üu]r sie)?|unsere empfehlung|neueste (?:beitr[äa]ge|artikel|meldungen)|"
    r"zuletzt erschienen|beliebte (?:artikel|beitr[äa]ge)|alle teile der serie|"
    r"[üu]ber (?:den|die) autor(?:in)?|autoreninfo|ansprechpartner(?:in)?|pressekontakt|"
    r"r[üu]ckfragen (?:bitte )?an|wissenschaftlicher kontakt|schlagw[öo]rter|schlagworte|"
    r"stichw[öo]rter|(?:diesen |den )?(?:artikel|beitrag|seite) teilen|teilen mit|"
    r"m[öo]chten sie (?:den|diesen) (?:artikel|beitrag) teilen|"
    r"war (?:der|dieser) (?:artikel|beitrag) (?:n[üu]tzlich|hilfreich)|"
    r"wie (?:gef[äa]llt|hat) ihnen (?:der|dieser) (?:artikel|beitrag)|gef[äa]llt mir|"
    r"wir respektieren (?:ihre|deine) privatsph[äa]re|ihre privatsph[äa]re|"
    r"wir brauchen ihre zustimmung|datenschutz-?einstellungen|zugeh[öo]rige dateien|"
    r"podcast-tipp|zum thema|siehe auch|top-?themen|top-artikel|diskutieren sie mit"
)
_BOX_WORDS = (
    r"comments?|tags|trending|popular|advertisement|sponsored|kontakt|kommentare|anzeigen?|"
    r"werbung|beliebt|bildergalerie|leserbriefe|traueranzeigen|downloads?|empfehlungen|"
    r"r[üu]ckfragen"
)
BOX_HEADING = re.compile(
    rf"^\W*(?:{_BOX_PHRASES})(?:\W|$)|^\W*(?:{_BOX_WORDS})(?:\s*\(\d+\))?\W*$",
    re.IGNORECASE,
)

# A whole short line that is a button or a label of the page, not a sentence.
UI_LINE = re.compile(
    r"^\W*(?:"
    r"gef[äa]llt mir|teilen|drucken|merken|artikel merken|vorlesen|kommentieren|"
    r"jetzt kommentieren|\d+ kommentare?|kommentare \(\d+\)|lesezeit:? .{1,20}|"
    r"\d+ min(?:\.|uten)? lesezeit|bildergalerie:? \d+ bilder|alle bilder(?: ansehen)?|"
    r"seite \d+ von \d+|n[äa]chste seite|vorherige seite|vorheriger artikel|n[äa]chster artikel|"
    r"zur[üu]ck(?: zur [üu]bersicht)?|seite drucken|herunterladen|"
    r"jetzt (?:testen|kaufen|abonnieren|anmelden|lesen|bestellen|sichern|spenden)|"
    r"mehr erfahren|weiterlesen|anzeige|werbung|wird geladen|"
    r"share|print|tweet|email|read more|\d+ min(?:ute)?s? read|listen|sponsored|advertisement|"
    r"loading|like this|show comments|view comments|\d+ comments?"
    r")\W*$",
    re.IGNORECASE,
)

# Lines that say where a text or picture comes from, or who wrote it.
CREDIT_LINE = re.compile(
    r"^\W*(?:"
    r"(?:text|texte|fotos?|bilder?|grafik|video|quelle|quellen|mitarbeit|recherche|redaktion|"
    r"[üu]bersetzung|protokoll|interview|photos?|images?|source|sources|illustration|"
    r"credits?|reporting|editing)\s*:|"
    r"das interview f[üu]hrte|das gespr[äa]ch f[üu]hrte|aufgezeichnet von"
    r")",
    re.IGNORECASE,
)
# "Von Max Muster", "By Jane Doe and John Roe | 5 May 2024".
BYLINE = re.compile(
    r"^\W*(?:[Vv]on|[Bb]y)\s+(?:(?:[A-ZÄÖÜ][\w'’.-]*|und|and|&|,)\s*){1,7}(?:[|·/–—-].*)?$"
)

# Notices and promotions: a short block that contains one of these goes.
NOTICE = re.compile(
    r"(?:all rights reserved|alle rechte vorbehalten|jetzt anmelden|"
    r"bild:|foto:|image:|photo:|©|\(c\)|getty images|reuters/|dpa/|afp/|"
    r"[üu]ber dieses thema berichtete|original-content von|keine anlageberatung|"
    r"diskutieren sie mit)",
    re.IGNORECASE,
)
# Calls to subscribe, register or accept cookies, offers: a notice only when they
# speak to the reader ("Mehr als 20.000 Menschen haben den Newsletter bestellt" and
# "Im ersten Monat verkaufte der Hersteller..." are news).
CALL = re.compile(
    r"(?:subscri|sign up|newsletter|cookies?|abonnier|abo abschlie|registrieren|werbefrei|"
    r"jederzeit k[üu]ndbar|im ersten monat|probeabo|netiquette|datenschutzerkl[äa]rung)",
    re.IGNORECASE,
)
_READER = re.compile(r"\b(?:jetzt|hier|now|here|you|your|du|dich|dir|dein\w*)\b", re.IGNORECASE)
_FORMAL_YOU = re.compile(r"(?<=\S )(?:Sie|Ihnen|Ihr\w*)\b")


def is_notice(text: str) -> bool:
    """A copyright, credit, promotion or call to subscribe, not a sentence of news."""
    if NOTICE.search(text):
        return True
    return bool(CALL.search(text)) and bool(_READER.search(text) or _FORMAL_YOU.search(text))


# Words of cookie and consent layers; a block with several of them is one.
_CONSENT_TERMS = re.compile(
    r"cookie|einwilligung|zustimm|datenschutz|privatsph[äa]re|personenbezogen|drittanbieter|"
    r"partner|tracking|consent|privacy|personali[sz]|akzeptier|widerruf|ip-adresse|endger[äa]t|"
    r"third[- ]part|analytics|opt[- ]out",
    re.IGNORECASE,
)
_CONSENT_MIN_TERMS = 3
# Every consent layer names one of these; text without them needs no closer look.
_CONSENT_CUES = ("cookie", "daten", "privacy", "consent", "einwillig", "tracking", "privatsph")
# A consent layer speaks as "we" to "you"; news about cookie banners does not.
_WE = re.compile(r"\b(?:wir|uns|unsere?[mnrs]?|we|us|our)\b", re.IGNORECASE)
_YOU = re.compile(r"\b(?:Sie|Ihnen|Ihr\w*|du|dich|dir|dein\w*|you|your)\b")


def is_consent(text: str) -> bool:
    """Text of a cookie or consent layer: several distinct consent words, said by
    the site ("we") to the reader ("you")."""
    lowered = text.lower()
    if not any(word in lowered for word in _CONSENT_CUES):  # most text: no consent word
        return False
    found = {m.group(0).lower() for m in _CONSENT_TERMS.finditer(text)}
    return len(found) >= _CONSENT_MIN_TERMS and bool(_WE.search(text)) and bool(_YOU.search(text))


# A heading that opens the comments: everything after it in its container is comments.
COMMENTS_HEADING = re.compile(
    r"^\W*(?:comments?|kommentare|leserkommentare|leave a (?:reply|comment)|"
    r"schreibe einen kommentar|diskutieren sie mit)(?:\s*\(\d+\))?\W*$",
    re.IGNORECASE,
)


# Date and time expressions, and the words that come with them on a date line.
_TIME = re.compile(r"\d{1,2}[:.]\d{2}(?::\d{2})?")
_DATE = re.compile(
    r"\d{1,2}\.\s?\d{1,2}\.(?:\d{2,4})?|\d{4}-\d{2}-\d{2}|"
    r"\d{1,2}\.?\s+(?:januar|februar|märz|maerz|april|mai|juni|juli|august|september|"
    r"oktober|november|dezember|jan|feb|mär|apr|jun|jul|aug|sep|sept|okt|nov|dez)\w*\.?"
    r"(?:\s+\d{4})?|"
    r"(?:january|february|march|april|may|june|july|august|september|october|november|"
    r"december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?\s+\d{1,2}(?:st|nd|rd|th)?"
    r",?(?:\s+\d{4})?|"
    r"vor \d+ (?:minuten?|stunden?|tagen?)|\d+ (?:minutes?|hours?|days?) ago",
    re.IGNORECASE,
)
_DATE_WORDS = frozenset(
    {
        "stand", "aktualisiert", "veröffentlicht", "erschienen", "zuletzt", "geändert", "am",
        "um", "uhr", "datum", "vom", "nr", "von", "updated", "published", "posted", "on", "at",
        "last", "modified", "by", "mez", "mesz", "cet", "cest", "gmt", "utc", "pm", "et",
        "heute", "gestern", "today", "yesterday", "montag", "dienstag", "mittwoch",
        "donnerstag", "freitag", "samstag", "sonntag", "monday", "tuesday", "wednesday",
        "thursday", "friday", "saturday", "sunday", "min", "lesezeit", "read",
    }
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+")
_MAX_DATE_LINE_CHARS = 90
# A date line names at most a place or an author besides the date.
_MAX_DATE_LINE_WORDS = 3


def is_date_line(text: str) -> bool:
    """A short line that is a date (with a place, an author or "Updated"), not a sentence.

    A time alone ("4:14 p.m." in a live blog) is not enough, nor a quoted
    post's attribution ("(@handle) November 18, 2019").
    """
    if len(text) > _MAX_DATE_LINE_CHARS or "(@" in text or not _DATE.search(text):
        return False
    rest = _TIME.sub(" ", _DATE.sub(" ", text))
    words = [w for w in _WORD.findall(rest) if w.lower() not in _DATE_WORDS]
    return len(words) <= _MAX_DATE_LINE_WORDS
