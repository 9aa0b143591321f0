"""Official data-export archives (LinkedIn, Medium, Substack), read member by member in memory.

Nothing is ever extracted to disk. An archive with a path-traversal entry or that would expand
past the caps (a zip bomb) is refused whole; a bad row or member is rejected and the rest goes on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from bs4 import BeautifulSoup, Tag
from bs4.builder import ParserRejectedMarkup

from twin.documents import Category, RawDocument
from twin.errors import TwinError
from twin.markup import inline_text, render, strip_boilerplate
from twin.sources.batch import SourceBatch
from twin.sources.git_repository import format_size
from twin.sources.text import decode_bytes, parse_date

FORMATS = ("linkedin", "medium", "substack")
MAX_UNCOMPRESSED_BYTES = 200_000_000
MAX_COMPRESSION_RATIO = 100
# Below this size a member cannot hurt whatever its ratio, and short repetitive files
# (a CSV header, an empty page) legitimately compress far beyond 100:1.
RATIO_FLOOR_BYTES = 1_000_000
MAX_MEMBERS = 100_000
DEFAULT_SUBSTACK_URL = "https://substack.com"
EXPECTED_FORMATS = ("a LinkedIn data archive (Shares.csv), a Medium export (posts/*.html) "
                    "or a Substack export (posts.csv with posts/*.html), as the .zip you downloaded")

SHARES_COLUMNS = ("Date", "ShareLink", "ShareCommentary")
SUBSTACK_COLUMNS = ("post_id", "post_date", "is_published", "title")
_CHUNK_BYTES = 1 << 20
_HEADER_SNIFF_BYTES = 64 * 1024
_TITLE_CHARS = 100


class UnsafeArchive(Exception):
    """The archive is refused whole: path traversal or a decompression bomb."""


class MemberError(Exception):
    """One member could not be read (corrupt, encrypted, unsupported compression)."""


def detect_export_format(path: Path) -> str:
    """`linkedin`, `medium` or `substack`; TwinError naming the file and the formats expected otherwise."""
    path = Path(path)
    with _open_zip(path) as zip_file:
        archive = _Archive(zip_file, MAX_UNCOMPRESSED_BYTES)
        try:
            archive.check_headers()  # detection inflates CSV headers; not those of a bomb
        except UnsafeArchive as exc:
            raise TwinError(f"{path.name} refused: {exc}.", "download the export again from the platform.") from exc
        return _detect(archive, path.name)


def read_export(
    path: Path,
    author: str,
    *,
    base_url: str | None = None,
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
) -> SourceBatch:
    """The posts or articles of one export archive as a `SourceBatch` (drafts, unpublished counted).

    `base_url` is the Substack publication's address, e.g. https://name.substack.com (posts get
    `{base_url}/p/<slug>`); without it they get https://substack.com/p/<slug>.
    """
    path = Path(path)
    if not path.is_file():
        raise TwinError(f"{path} does not exist or is not a file.", "give the path of the export .zip you downloaded.")
    base = _base_url(base_url)
    source = str(path.resolve())
    try:
        opened = _open_zip(path)
    except TwinError as exc:
        return _refused(source, exc.message)
    with opened as zip_file:
        archive = _Archive(zip_file, max_uncompressed_bytes)
        batch = SourceBatch(source=source)
        try:
            archive.check_headers()
            export_format = _detect(archive, path.name)
            _READERS[export_format](archive, batch, author, base)
        except UnsafeArchive as exc:
            return _refused(source, f"{path.name} refused: {exc}; nothing was imported from it")
        except TwinError as exc:
            return _refused(source, exc.message)
    return batch


def export_fingerprint(path: Path) -> str:
    """sha256 of the archive's bytes."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise TwinError(f"Cannot read {path}: {exc.strerror or exc}.", "give the path of the export .zip.") from exc
    return digest.hexdigest()


class _Archive:
    """A zip's members, read into memory under a total byte budget and a per-member ratio limit."""

    def __init__(self, zip_file: zipfile.ZipFile, max_bytes: int) -> None:
        self.zip = zip_file
        self.max_bytes = max_bytes
        self.read_bytes = 0
        self.members = [info for info in zip_file.infolist() if not info.is_dir()]

    def check_headers(self) -> None:
        """Refuse traversal names and what the central directory admits is too big."""
        if len(self.members) > MAX_MEMBERS:
            raise UnsafeArchive(f"{len(self.members)} entries, over the {MAX_MEMBERS} cap")
        for info in self.zip.infolist():
            name = info.filename
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in re.split(r"[\\/]", name):
                raise UnsafeArchive(f"entry {name!r} points outside the archive (path traversal)")
        declared = sum(info.file_size for info in self.members)
        if declared > self.max_bytes:
            raise UnsafeArchive(f"it expands to {format_size(declared)}, over the "
                                f"{format_size(self.max_bytes)} cap (a zip bomb?)")
        for info in self.members:
            if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_COMPRESSION_RATIO * info.compress_size:
                raise UnsafeArchive(_ratio_message(info.filename, info.file_size, info.compress_size))

    def read(self, info: zipfile.ZipInfo) -> bytes:
        """The member's bytes; headers can lie, so the limits are enforced again while inflating."""
        parts = []
        size = 0
        try:
            with self.zip.open(info) as stream:
                while chunk := stream.read(_CHUNK_BYTES):
                    size += len(chunk)
                    self.read_bytes += len(chunk)
                    if self.read_bytes > self.max_bytes:
                        raise UnsafeArchive(f"it expands past the {format_size(self.max_bytes)} cap (a zip bomb?)")
                    if size > info.file_size:
                        raise UnsafeArchive(f"entry {info.filename!r} is larger than its header says (a zip bomb?)")
                    if size > RATIO_FLOOR_BYTES and size > MAX_COMPRESSION_RATIO * info.compress_size:
                        raise UnsafeArchive(_ratio_message(info.filename, size, info.compress_size))
                    parts.append(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as exc:
            raise MemberError(f"{info.filename} could not be read: {exc}") from exc
        return b"".join(parts)

    def head(self, info: zipfile.ZipInfo) -> bytes:
        """At most the first 64 KB of a member (enough for a CSV header); empty when unreadable."""
        try:
            with self.zip.open(info) as stream:
                return stream.read(_HEADER_SNIFF_BYTES)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError):
            return b""


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise TwinError(f"{path.name} is not a zip archive ({exc}).", f"expected {EXPECTED_FORMATS}.") from exc
    except OSError as exc:
        raise TwinError(f"Cannot read {path}: {exc.strerror or exc}.", "give the path of the export .zip.") from exc


def _detect(archive: _Archive, name: str) -> str:
    basenames = {info.filename: PurePosixPath(info.filename).name.lower() for info in archive.members}
    if "shares.csv" in basenames.values():
        return "linkedin"
    if "posts.csv" in basenames.values():
        return "substack"
    if any(_is_shares_csv(archive, info) for info in archive.members):
        return "linkedin"
    if any(_is_post_page(info.filename) for info in archive.members):
        return "medium"
    found = ", ".join(sorted(basenames)[:5]) or "nothing"
    raise TwinError(f"{name} is not a LinkedIn, Medium or Substack export (it holds {found}).",
                    f"expected {EXPECTED_FORMATS}.")


def _is_shares_csv(archive: _Archive, info: zipfile.ZipInfo) -> bool:
    """A CSV whose header names ShareCommentary or ShareLink, whatever the file is called."""
    if not info.filename.lower().endswith(".csv"):
        return False
    if PurePosixPath(info.filename).name.lower() == "shares.csv":
        return True
    first_line = decode_bytes(archive.head(info))[0].split("\n", 1)[0].lower()
    return "sharecommentary" in first_line or "sharelink" in first_line


def _is_post_page(name: str) -> bool:
    path = PurePosixPath(name)
    return path.suffix.lower() == ".html" and path.parent.name == "posts"


def _read_linkedin(archive: _Archive, batch: SourceBatch, author: str, base_url: str) -> None:
    seen: dict[str, str] = {}
    for info in archive.members:
        if not _is_shares_csv(archive, info):
            continue
        for where, row, raw in _csv_rows(archive, info, batch, SHARES_COLUMNS):
            commentary = row["sharecommentary"]
            link = row["sharelink"].strip()
            if not commentary.strip():
                batch.reject(raw, f"{where}: ShareCommentary is empty (a repost without text?)")
                continue
            if not link:
                batch.reject(raw, f"{where}: ShareLink is empty, so the post has no url")
                continue
            try:
                published_at = parse_date(row["date"])
            except ValueError as exc:
                batch.reject(raw, f"{where}: {exc}")
                continue
            _add(batch, seen, where, raw, RawDocument(
                author=author, category=Category.POST, platform="linkedin", url=link,
                title=_title_from_text(commentary), content=commentary, published_at=published_at,
            ))


def _read_medium(archive: _Archive, batch: SourceBatch, author: str, base_url: str) -> None:
    seen: dict[str, str] = {}
    for info in sorted(archive.members, key=lambda member: member.filename):
        if not _is_post_page(info.filename):
            continue
        if PurePosixPath(info.filename).name.startswith("draft_"):
            batch.skip("draft")
            continue
        try:
            page = _parse_html(archive, info)
            title_tag = page.select_one("h1.p-name") or page.find("title")
            title = inline_text(title_tag) if title_tag else ""
            body = page.select_one('section[data-field="body"]') or page.select_one(".e-content")
            content = _page_text(info, body, drop_heading=title) if body is not None else ""
        except MemberError as exc:
            batch.reject(info.filename, str(exc))
            continue
        canonical = page.select_one("a.p-canonical")
        href = str(canonical.get("href") or "").strip() if canonical else ""
        if body is None:
            batch.reject(info.filename, f'{info.filename}: no body (<section data-field="body">)')
            continue
        if not href:
            batch.reject(info.filename, f'{info.filename}: no canonical link (<a class="p-canonical" href=...>)')
            continue
        if not content:
            batch.reject(info.filename, f"{info.filename}: the post body is empty")
            continue
        published = page.select_one("time.dt-published")
        try:
            published_at = parse_date(str(published.get("datetime") or "") if published else "")
        except ValueError as exc:
            batch.reject(info.filename, f"{info.filename}: {exc}")
            continue
        _add(batch, seen, info.filename, info.filename, RawDocument(
            author=author, category=Category.ARTICLE, platform="medium", url=href, title=title,
            content=content, published_at=published_at,
        ))


def _read_substack(archive: _Archive, batch: SourceBatch, author: str, base_url: str) -> None:
    posts_csv = min((info for info in archive.members if PurePosixPath(info.filename).name.lower() == "posts.csv"),
                    key=lambda info: len(info.filename))
    prefix = str(PurePosixPath(posts_csv.filename).parent).removeprefix(".")
    pages = {info.filename: info for info in archive.members}
    seen: dict[str, str] = {}
    for where, row, raw in _csv_rows(archive, posts_csv, batch, SUBSTACK_COLUMNS):
        post_id = row["post_id"].strip()
        if row["is_published"].strip().lower() not in ("true", "t", "1", "yes"):
            batch.skip("unpublished")
            continue
        slug = post_id.split(".", 1)[1] if "." in post_id else ""
        if not slug:
            batch.reject(raw, f"{where}: post_id {post_id!r} has no slug (expected <number>.<slug>)")
            continue
        page_name = f"{prefix}/posts/{post_id}.html".lstrip("/")
        page = pages.get(page_name)
        if page is None:
            batch.reject(raw, f"{where}: {page_name} is missing from the archive")
            continue
        try:
            content = _page_text(page, _parse_html(archive, page))
        except MemberError as exc:
            batch.reject(page_name, str(exc))
            continue
        if not content:
            batch.reject(raw, f"{where}: {page_name} has no text")
            continue
        try:
            published_at = parse_date(row["post_date"])
        except ValueError as exc:
            batch.reject(raw, f"{where}: {exc}")
            continue
        _add(batch, seen, where, raw, RawDocument(
            author=author, category=Category.ARTICLE, platform="substack",
            url=f"{base_url}/p/{quote(slug)}", title=row["title"].strip(), content=content,
            published_at=published_at,
        ))


_READERS: dict[str, Callable[[_Archive, SourceBatch, str, str], None]] = {
    "linkedin": _read_linkedin, "medium": _read_medium, "substack": _read_substack,
}


def _csv_rows(
    archive: _Archive, info: zipfile.ZipInfo, batch: SourceBatch, required: tuple[str, ...],
) -> Iterator[tuple[str, dict[str, str], str]]:
    """(`file line N`, row keyed by lower-case column, raw text) for each well-formed CSV row.

    A row with broken quoting or the wrong number of fields is rejected and reading resumes on
    the next line; a header without the `required` columns rejects the whole file.
    """
    name = info.filename
    try:
        text = decode_bytes(archive.read(info))[0]
    except MemberError as exc:
        batch.reject(name, str(exc))
        return
    if text is None:
        batch.reject(name, f"{name} is not text in UTF-8 or any detectable encoding")
        return
    header: list[str] | None = None
    for line_number, fields, raw, error in _csv_records(text):
        where = f"{name} line {line_number}"
        if error is not None:
            batch.reject(raw, f"{where}: broken CSV quoting ({error}); expected comma-separated "
                              "fields with quotes doubled inside quoted fields")
            if header is None:
                return
            continue
        if header is None:
            header = [column.strip().lower() for column in fields]
            missing = [column for column in required if column.lower() not in header]
            if missing:
                batch.reject(raw, f"{name}: unexpected header ({', '.join(fields)}); expected the "
                                  f"columns {', '.join(required)} (missing {', '.join(missing)})")
                return
            continue
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            batch.reject(raw, f"{where}: {len(fields)} fields where the header has {len(header)}")
            continue
        yield where, dict(zip(header, fields, strict=True)), raw
    if header is None:
        batch.reject(name, f"{name} is empty; expected a header with {', '.join(required)}")


def _csv_records(text: str) -> Iterator[tuple[int, list[str], str, str | None]]:
    """(first line number, fields, raw text, parse error) per CSV record, recovering after errors.

    An unterminated quote swallows every line after it, so after any error parsing restarts on
    the line after the one where the broken record began.
    """
    lines = list(io.StringIO(text, newline=""))
    start = 0
    while start < len(lines):
        reader = csv.reader(itertools.islice(lines, start, None), strict=True)
        consumed = 0
        try:
            for fields in reader:
                first = start + consumed
                consumed = reader.line_num
                yield first + 1, fields, "".join(lines[first:start + consumed]).rstrip("\r\n"), None
            return
        except csv.Error as exc:
            first = start + consumed
            yield first + 1, [], lines[first].rstrip("\r\n"), str(exc)
            start = first + 1


def _parse_html(archive: _Archive, info: zipfile.ZipInfo) -> BeautifulSoup:
    try:
        return BeautifulSoup(decode_bytes(archive.read(info))[0], "html.parser")
    except ParserRejectedMarkup as exc:
        raise MemberError(f"{info.filename} is not readable HTML: {exc}") from exc


def _page_text(info: zipfile.ZipInfo, body: Tag, *, drop_heading: str = "") -> str:
    try:
        return html_to_text(body, drop_heading=drop_heading)
    except RecursionError as exc:  # hostile pages can nest elements thousands deep
        raise MemberError(f"{info.filename} nests its HTML too deeply to read") from exc


def html_to_text(element: Tag, *, drop_heading: str = "") -> str:
    """The one converter's text of an export's HTML body (`twin/markup.py`).

    A first heading equal to `drop_heading` (Medium repeats the title in the body) is left out.
    """
    strip_boilerplate(element)
    blocks = render(element).split("\n\n")
    if blocks and drop_heading and blocks[0].lstrip("#").strip() == " ".join(drop_heading.split()):
        blocks = blocks[1:]
    return "\n\n".join(blocks).strip()


def _title_from_text(text: str) -> str:
    """A post's title: its first non-blank line, cut at a word near 100 characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) <= _TITLE_CHARS:
        return first
    cut = first[:_TITLE_CHARS].rsplit(" ", 1)[0]
    return cut + "…"


def _add(batch: SourceBatch, seen: dict[str, str], where: str, item: str, document: RawDocument) -> None:
    """Append a document unless its url already came earlier in this archive (one row per url)."""
    document = RawDocument(
        author=document.author, category=document.category, platform=document.platform,
        url=document.url.replace("\x00", ""), title=document.title.replace("\x00", ""),
        content=document.content.replace("\x00", ""), published_at=document.published_at,
    )
    earlier = seen.setdefault(document.url, where)
    if earlier != where:
        batch.reject(item, f"{where}: duplicate url {document.url} (first at {earlier})")
        return
    batch.documents.append(document)


def _base_url(base_url: str | None) -> str:
    if base_url is None:
        return DEFAULT_SUBSTACK_URL
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TwinError(f"base_url {base_url!r} is not an http(s) address.",
                        "give the publication's address, e.g. https://name.substack.com.")
    return base_url.strip().rstrip("/")


def _ratio_message(name: str, size: int, compressed: int) -> str:
    ratio = size / max(compressed, 1)
    return (f"entry {name!r} expands {ratio:,.0f}:1 ({format_size(compressed)} to at least "
            f"{format_size(size)}), over the {MAX_COMPRESSION_RATIO}:1 limit (a zip bomb?)")


def _refused(source: str, reason: str) -> SourceBatch:
    """The batch for an archive refused whole: one rejection, no documents."""
    batch = SourceBatch(source=source)
    batch.reject(source, reason)
    return batch
