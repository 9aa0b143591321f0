"""Git repository source: each text file of a repository (a remote clone or a local folder) as one document."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from twin.documents import Category, RawDocument
from twin.errors import TwinError
from twin.sources.batch import SourceBatch
from twin.sources.text import decode_bytes

CLONE_TIMEOUT_S = 600
GIT_TIMEOUT_S = 60

SKIPPED_DIRS = frozenset({
    ".git", "node_modules", "vendor", "third_party", "dist", "build", "target", ".venv", "venv",
    "__pycache__", ".next", "coverage",
})
LOCK_FILES = frozenset({
    "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "Cargo.lock", "poetry.lock", "Pipfile.lock",
    "uv.lock", "composer.lock", "Gemfile.lock", "go.sum",
})
MEDIA_SUFFIXES = frozenset({
    # images
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".icns", ".webp", ".tif", ".tiff", ".svg",
    ".avif", ".heic", ".psd",
    # archives
    ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".jar", ".war", ".whl",
    # fonts
    ".ttf", ".otf", ".woff", ".woff2", ".eot",
})
_MINIFIED_SUFFIXES = (".min.js", ".min.css")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:(?!//)")  # git@github.com:owner/repo.git
_GITHUB = re.compile(r"github\.com(?::\d+)?[:/]+(?P<owner>[^/]+)/(?P<repo>[^/]+?)(?:\.git)?/*$", re.I)
# Variables that would point git at another repository than the one we name.
_REPOSITORY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                   "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX")


@dataclass(frozen=True)
class _Origin:
    """Where the files of one read come from and how their documents are named."""

    source: str
    platform: str
    web_root: str | None  # https://github.com/owner/repo for GitHub, else None

    def url(self, path: str, branch: str) -> str:
        if self.web_root is not None:
            return f"{self.web_root}/blob/{quote(branch, safe='')}/{quote(path)}"
        if self.source.startswith("/"):  # a local folder: file:// URLs, like file:// clones
            return Path(self.source, path).as_uri()
        scp = re.fullmatch(r"([\w.-]+@)?([\w.-]+):(?!//)(.+)", self.source)  # user@host:path
        if scp:
            return f"ssh://{scp.group(1) or ''}{scp.group(2)}/{scp.group(3).lstrip('/')}/{path}"
        return f"{self.source}/{path}"


def read_git_repository(
    location: str,
    author: str,
    *,
    workdir: Path,
    max_file_bytes: int = 200_000,
    max_files: int = 2_000,
) -> SourceBatch:
    """Every kept text file of a git URL (shallow-cloned under `workdir`, removed after) or a local folder.

    The result is a `SourceBatch`: binaries and over-size files are rejections, vendored folders,
    lock files, minified files and media are counted in `skipped`.
    """
    location = location.strip()
    if is_remote(location):
        origin = _remote_origin(location)
        batch = SourceBatch(source=origin.source)
        workdir.mkdir(parents=True, exist_ok=True)
        clone_dir = Path(tempfile.mkdtemp(prefix="clone-", dir=workdir))
        try:
            root = clone_dir / "repository"
            error = _clone(location, root, shown_as=origin.source)
            if error is not None:
                batch.reject(origin.source, error)
                return batch
            _read_tree(batch, root, author, origin, is_git=True,
                       max_file_bytes=max_file_bytes, max_files=max_files)
        finally:
            shutil.rmtree(clone_dir, ignore_errors=True)
        return batch

    root = Path(location).expanduser().resolve()
    batch = SourceBatch(source=str(root))
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        batch.reject(location, f"{location} {state}; give a git URL or the path of a local folder")
        return batch
    _read_tree(batch, root, author, _Origin(str(root), "git", None), is_git=_is_work_tree(root),
               max_file_bytes=max_file_bytes, max_files=max_files)
    return batch


def git_fingerprint(location: str) -> str:
    """A cheap change detector: the remote HEAD sha, or a local HEAD sha plus a hash of uncommitted changes.

    A plain folder (no git) fingerprints the names, sizes and modification times of its files.
    """
    location = location.strip()
    if is_remote(location):
        shown = _remote_origin(location).source
        try:
            result = _git(["ls-remote", "--", location, "HEAD"], timeout=GIT_TIMEOUT_S)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise TwinError(f"Cannot read git repository {shown}: {exc}.",
                            "install git and check that the URL answers.") from exc
        if result.returncode != 0:
            raise TwinError(f"Cannot read git repository {shown}: {_first_error(result.stderr, location, shown)}.",
                            "check the URL and that you can clone it without a password prompt.")
        fields = result.stdout.split()
        if not fields:
            raise TwinError(f"Git repository {shown} has no HEAD (is it empty?).", "push a commit to it first.")
        return fields[0]
    root = Path(location).expanduser().resolve()
    if not root.is_dir():
        raise TwinError(f"{location} is not a folder.", "give a git URL or the path of a local folder.")
    digest = hashlib.sha256()
    if not _is_work_tree(root):
        for relative in _walk_files(root, SourceBatch(source=str(root))):
            if skip_reason(relative) is None:
                _hash_stat(digest, root, relative)
        return f"folder+{digest.hexdigest()[:32]}"
    head = _git(["rev-parse", "HEAD"], cwd=root).stdout.strip() or "no-commits"
    top = Path(_git(["rev-parse", "--show-toplevel"], cwd=root).stdout.strip() or root)
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], cwd=root).stdout
    digest.update(status.encode("utf-8", "surrogateescape"))
    # The same status line hides a second edit of a dirty file; its size and mtime do not.
    for relative in _status_paths(status):
        _hash_stat(digest, top, relative)
    return f"{head}+{digest.hexdigest()[:32]}"


def is_remote(location: str) -> bool:
    """Whether `location` is a git URL (https, ssh, git, file:// or user@host:path) rather than a folder."""
    return bool(_URL.match(location) or _SCP_LIKE.match(location))


def skip_reason(relative_path: str) -> str | None:
    """Why a repository path is passed over without reading it, or None when it should be read."""
    parts = relative_path.split("/")
    for part in parts[:-1]:
        if part in SKIPPED_DIRS or part.endswith(".egg-info"):
            return "vendored or generated folder"
    name = parts[-1]
    lowered = name.lower()
    if name in LOCK_FILES:
        return "lock file"
    if name in (".git", ".DS_Store"):
        return "git or OS metadata"
    if lowered.endswith(_MINIFIED_SUFFIXES):
        return "minified file"
    if os.path.splitext(lowered)[1] in MEDIA_SUFFIXES:
        return "image, archive or font"
    return None


def format_size(size: int) -> str:
    """`1.2 MB`, `300 KB`, `512 bytes` (decimal units, like the rest of the platform)."""
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _read_tree(
    batch: SourceBatch, root: Path, author: str, origin: _Origin, *, is_git: bool,
    max_file_bytes: int, max_files: int,
) -> None:
    paths = _git_files(root, batch) if is_git else _walk_files(root, batch)
    published_at = _head_date(root) if is_git else None
    branch = _branch(root) if is_git else ""
    candidates = []
    for relative in paths:
        reason = skip_reason(relative)
        if reason is None:
            candidates.append(relative)
        else:
            batch.skip(reason)
    if len(candidates) > max_files:
        batch.reject(origin.source, f"{len(candidates)} files, over the {max_files}-file cap; "
                                    f"read the first {max_files} in path order")
        candidates = candidates[:max_files]
    real_root = root.resolve()
    for relative in candidates:
        path = root / relative
        # Symlinks may point outside the repository; submodules and deleted files are not files here.
        if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(real_root):
            batch.skip("symlink, submodule or missing file")
            continue
        text = _read_text(batch, path, relative, max_file_bytes)
        if text is None:
            continue
        if not text.strip():
            batch.skip("empty file")
            continue
        batch.documents.append(RawDocument(
            author=author, category=Category.REPOSITORY, platform=origin.platform,
            url=origin.url(relative, branch), title=relative, content=text, published_at=published_at,
        ))


def _read_text(batch: SourceBatch, path: Path, relative: str, max_file_bytes: int) -> str | None:
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            batch.reject(relative, f"file is {format_size(size)}, over the {format_size(max_file_bytes)} cap")
            return None
        data = path.read_bytes()
    except OSError as exc:
        batch.reject(relative, f"cannot read the file: {exc.strerror or exc}")
        return None
    # Git sniffs the first 8 KB; we check it all, since a later NUL cannot go into PostgreSQL text.
    if b"\x00" in data:
        batch.reject(relative, "binary file")
        return None
    text = decode_bytes(data)[0]
    if text is None:
        batch.reject(relative, "not text in UTF-8 or any detectable encoding")
    return text


def _git_files(root: Path, batch: SourceBatch) -> list[str]:
    """Tracked and untracked-but-not-ignored files under `root`, relative to it, in path order."""
    result = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root, text=False)
    paths = set()
    for raw in result.stdout.split(b"\x00"):
        if raw:
            name = _decoded_name(raw, batch)
            if name is not None:
                paths.add(name)
    return sorted(paths)


def _walk_files(root: Path, batch: SourceBatch) -> list[str]:
    """Files of a plain folder, relative to it; vendored folders are pruned and counted once each."""
    paths = []
    for folder, dirnames, filenames in os.walk(root):
        kept = []
        for dirname in sorted(dirnames):
            if dirname in SKIPPED_DIRS or dirname.endswith(".egg-info"):
                batch.skip("vendored or generated folder")
            else:
                kept.append(dirname)
        dirnames[:] = kept
        base = Path(folder).relative_to(root)
        for filename in filenames:
            name = _decoded_name(os.fsencode((base / filename).as_posix()), batch)
            if name is not None:
                paths.append(name)
    return sorted(paths)


def _decoded_name(raw: bytes, batch: SourceBatch) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        batch.reject(raw.decode("utf-8", "backslashreplace"), "file name is not valid UTF-8")
        return None


def _clone(location: str, destination: Path, *, shown_as: str) -> str | None:
    """Shallow-clone `location`; None on success, else the reason (git's first error line)."""
    command = ["-c", "advice.detachedHead=false", "clone", "--depth", "1", "--quiet", "--no-tags",
               "--", location, str(destination)]
    try:
        result = _git(command, timeout=CLONE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"git clone timed out after {CLONE_TIMEOUT_S} s"
    except FileNotFoundError:
        return "git is not installed (no `git` on PATH)"
    if result.returncode != 0:
        return f"git clone failed: {_first_error(result.stderr, location, shown_as)}"
    return None


def _first_error(stderr: str, location: str, shown_as: str) -> str:
    for line in stderr.splitlines():
        line = line.strip()
        if line:
            # git may echo the URL as typed; never show credentials that were in it.
            line = line.replace(location, shown_as)
            return re.sub(r"^(fatal|error|remote):\s*", "", line)
    return "git exited with an error and no message"


def _remote_origin(location: str) -> _Origin:
    github = _GITHUB.search(location)
    if github is not None:
        web_root = f"https://github.com/{github['owner']}/{github['repo']}"
        return _Origin(web_root, "github", web_root)
    parts = urlsplit(location) if _URL.match(location) else None
    if parts is not None and parts.scheme in ("http", "https") and "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])  # drop user:token@
        location = urlunsplit(parts)
    return _Origin(location.rstrip("/"), "git", None)


def _is_work_tree(folder: Path) -> bool:
    try:
        result = _git(["rev-parse", "--is-inside-work-tree"], cwd=folder)
    except FileNotFoundError:
        return False
    return result.returncode == 0 and result.stdout.strip() == "true"


def _head_date(root: Path) -> date | None:
    """Date of the HEAD commit (committer date); None for a repository without commits."""
    output = _git(["log", "-1", "--format=%cI", "HEAD"], cwd=root).stdout.strip()
    try:
        return datetime.fromisoformat(output).date() if output else None
    except ValueError:
        return None


def _branch(root: Path) -> str:
    """The checked-out branch, or the commit sha when HEAD is detached."""
    name = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=root).stdout.strip()
    if name and name != "HEAD":
        return name
    return _git(["rev-parse", "HEAD"], cwd=root).stdout.strip() or "HEAD"


def _status_paths(status: str) -> list[str]:
    """Paths named by `git status --porcelain=v1 -z` (a rename's second entry is its old path)."""
    entries = status.split("\x00")
    paths = []
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) > 3:
            paths.append(entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:
                index += 1
    return paths


def _hash_stat(digest: hashlib._Hash, root: Path, relative: str) -> None:
    try:
        stat = (root / relative).lstat()
        digest.update(f"{relative}\x00{stat.st_size}\x00{stat.st_mtime_ns}\x00".encode("utf-8", "surrogateescape"))
    except OSError:
        digest.update(f"{relative}\x00gone\x00".encode("utf-8", "surrogateescape"))


def _git(
    args: list[str], *, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S, text: bool = True,
) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run git without any prompt: no terminal, no askpass, ssh in batch mode, English messages."""
    env = {key: value for key, value in os.environ.items() if key not in _REPOSITORY_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="", GCM_INTERACTIVE="never",
               LC_ALL="C", LANGUAGE="C")
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=timeout, text=text, errors="replace" if text else None,
    )
