"""Text helpers every source shares: decoding bytes of unknown encoding, parsing dates."""

from __future__ import annotations

import codecs
import re
from datetime import date, datetime
from email.utils import parsedate_to_datetime

import charset_normalizer

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# WHATWG: these labels mean windows-1252 on the web
_WINDOWS_1252_ALIASES = frozenset({"iso8859-1", "ascii", "cp1252"})
# forms seen in exports, pages and warehouses besides ISO-8601 and RFC 2822 (LinkedIn's US style
# among them); day-first slashes are left out on purpose: 03/04/2024 reads as US month/day
_DATE_FORMATS = ("%m/%d/%y, %I:%M %p", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d %b %Y", "%d %B %Y", "%b %d, %Y",
                 "%B %d, %Y", "%b %d %Y", "%B %d %Y", "%d-%b-%Y", "%d-%B-%Y", "%d-%b-%y", "%Y/%m/%d",
                 "%Y.%m.%d", "%d.%m.%Y", "%b %Y", "%B %Y", "%a, %d %b %Y", "%A, %B %d, %Y", "%Y%m%d")


def decode_bytes(body: bytes, declared_charset: str | None = None) -> tuple[str, str]:
    """(text, encoding): BOM, a declared charset (header, then meta) that fits, UTF-8, then detection.

    A declaration is believed only when the bytes decode with it (wrong ones are common), and valid
    non-ASCII UTF-8 wins over a single-byte declaration.
    """
    for bom, bom_encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(bom_encoding, errors="replace"), bom_encoding
    utf8 = _decode_or_none(body, "utf-8")
    meta = _META_CHARSET.search(body[:4096])
    for label in (declared_charset, meta.group(1).decode("ascii") if meta else None):
        encoding = _codec(label)
        if encoding is None:
            continue
        if utf8 is not None and not body.isascii() and not encoding.startswith("utf"):
            continue  # e.g. UTF-8 pages labelled ISO-8859-1 by a server default: valid UTF-8 wins
        text = _decode_or_none(body, encoding)
        if text is not None:
            return text, encoding
    if utf8 is not None:
        return utf8, "utf-8"
    return _detect(body)


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return "cp1252" if name in _WINDOWS_1252_ALIASES else name


def _decode_or_none(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):  # LookupError: a declared codec that is not text
        return None


def _detect(body: bytes) -> tuple[str, str]:
    matches = charset_normalizer.from_bytes(body[:200_000])
    # Detectors cannot tell Latin code pages apart on short text (they pick cp1250 for "Señor");
    # windows-1252 is the web's default, so it wins whenever it is a plausible reading.
    if any("cp1252" in (match.encoding, *match.could_be_from_charset) for match in matches):
        text = _decode_or_none(body, "cp1252")
        if text is not None:
            return text, "cp1252"
    best = matches.best()
    if best is not None:
        return body.decode(best.encoding, errors="replace"), best.encoding
    return body.decode("cp1252", errors="replace"), "cp1252"


def parse_date(value: str | None) -> date | None:
    """The calendar date of an ISO-8601, RFC 822 (feeds) or export-style timestamp; None if blank.

    Raises ValueError naming the value when it is not blank and no form fits.
    """
    value = " ".join((value or "").split())
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).date()
    except (TypeError, ValueError, IndexError):
        pass
    plain = re.sub(r"(?<=\d)(?:st|nd|rd|th)\b", "", value).replace("Sept ", "Sep ")  # "July 13th", "Sept"
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(plain, pattern).date()
        except ValueError:
            continue
    match = re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})", value)
    if match:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            pass
    raise ValueError(f"date {value!r} is not a date (expected e.g. 2024-05-01, 2024-05-01T09:30:00Z, "
                     "Sat, 13 Jul 2024 09:30:00 GMT, Jul 13, 2024 or 13-Jul-2024)")


def parse_date_or_none(value: str | None) -> date | None:
    """parse_date for pages and feeds, whose dates lie often: None when no form fits."""
    try:
        return parse_date(value)
    except ValueError:
        return None


def parse_date_field(field: str, value: object) -> date | None:
    """A record's date field (a string, a date or a datetime); None when absent or blank.

    Raises ValueError naming the field and the value when it is not a date.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{field} {value!r} is not a date string (e.g. 2024-05-01)")
    try:
        return parse_date(value)
    except ValueError as exc:
        raise ValueError(f"{field} {str(exc).removeprefix('date ')}") from None

