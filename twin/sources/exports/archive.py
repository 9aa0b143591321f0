"""An export archive read member by member in memory, under caps: nothing is extracted to disk,
and an archive with a path-traversal entry or that would expand past the caps (a zip bomb) is
refused whole."""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

from twin.errors import TwinError
from twin.sources.git_repository import format_size

MAX_UNCOMPRESSED_BYTES = 200_000_000
MAX_COMPRESSION_RATIO = 100
# Below this size a member cannot hurt whatever its ratio, and short repetitive files
# (a CSV header, an empty page) legitimately compress far beyond 100:1.
RATIO_FLOOR_BYTES = 1_000_000
MAX_MEMBERS = 100_000
EXPECTED_FORMATS = ("a LinkedIn data archive (Shares.csv), a Medium export (posts/*.html) "
                    "or a Substack export (posts.csv with posts/*.html), as the .zip you downloaded")
CHUNK_BYTES = 1 << 20
_HEADER_SNIFF_BYTES = 64 * 1024


class UnsafeArchive(Exception):
    """The archive is refused whole: path traversal or a decompression bomb."""



class MemberError(Exception):
    """One member could not be read (corrupt, encrypted, unsupported compression)."""



class Archive:
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
                while chunk := stream.read(CHUNK_BYTES):
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



def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise TwinError(f"{path.name} is not a zip archive ({exc}).", f"expected {EXPECTED_FORMATS}.") from exc
    except OSError as exc:
        raise TwinError(f"Cannot read {path}: {exc.strerror or exc}.", "give the path of the export .zip.") from exc



def _ratio_message(name: str, size: int, compressed: int) -> str:
    ratio = size / max(compressed, 1)
    return (f"entry {name!r} expands {ratio:,.0f}:1 ({format_size(compressed)} to at least "
            f"{format_size(size)}), over the {MAX_COMPRESSION_RATIO}:1 limit (a zip bomb?)")

