"""Official data-export archives (LinkedIn, Medium, Substack): detect the format, read the
archive safely (`archive.py`), and hand it to the format's reader (one module per format).

A bad row or member is rejected and the rest goes on; an unsafe archive is refused whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from twin.errors import TwinError
from twin.sources.batch import SourceBatch
from twin.sources.exports.archive import (
    CHUNK_BYTES,
    EXPECTED_FORMATS,
    MAX_UNCOMPRESSED_BYTES,
    Archive,
    UnsafeArchive,
    open_zip,
)
from twin.sources.exports.linkedin import is_shares_csv, read_linkedin
from twin.sources.exports.medium import read_medium
from twin.sources.exports.pages import is_post_page
from twin.sources.exports.substack import read_substack

FORMATS = ("linkedin", "medium", "substack")

DEFAULT_SUBSTACK_URL = "https://substack.com"



def detect_export_format(path: Path) -> str:
    """`linkedin`, `medium` or `substack`; TwinError naming the file and the formats expected otherwise."""
    path = Path(path)
    with open_zip(path) as zip_file:
        archive = Archive(zip_file, MAX_UNCOMPRESSED_BYTES)
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
        opened = open_zip(path)
    except TwinError as exc:
        return _refused(source, exc.message)
    with opened as zip_file:
        archive = Archive(zip_file, max_uncompressed_bytes)
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
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise TwinError(f"Cannot read {path}: {exc.strerror or exc}.", "give the path of the export .zip.") from exc
    return digest.hexdigest()



def _detect(archive: Archive, name: str) -> str:
    basenames = {info.filename: PurePosixPath(info.filename).name.lower() for info in archive.members}
    if "shares.csv" in basenames.values():
        return "linkedin"
    if "posts.csv" in basenames.values():
        return "substack"
    if any(is_shares_csv(archive, info) for info in archive.members):
        return "linkedin"
    if any(is_post_page(info.filename) for info in archive.members):
        return "medium"
    found = ", ".join(sorted(basenames)[:5]) or "nothing"
    raise TwinError(f"{name} is not a LinkedIn, Medium or Substack export (it holds {found}).",
                    f"expected {EXPECTED_FORMATS}.")



_READERS: dict[str, Callable[[Archive, SourceBatch, str, str], None]] = {
    "linkedin": read_linkedin, "medium": read_medium, "substack": read_substack,
}



def _base_url(base_url: str | None) -> str:
    if base_url is None:
        return DEFAULT_SUBSTACK_URL
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TwinError(f"base_url {base_url!r} is not an http(s) address.",
                        "give the publication's address, e.g. https://name.substack.com.")
    return base_url.strip().rstrip("/")



def _refused(source: str, reason: str) -> SourceBatch:
    """The batch for an archive refused whole: one rejection, no documents."""
    batch = SourceBatch(source=source)
    batch.reject(source, reason)
    return batch

