"""The LLM Engineer's Handbook's data-warehouse dump, read with the MongoDB source's mapping.

That project's `tools/data_warehouse.py --export-raw-data` writes one JSON list per document class
(`ArticleDocument.json`, `PostDocument.json`, `RepositoryDocument.json`, `UserDocument.json`) of
the MongoDB items its crawlers stored: `content` (an article's is {Title, Subtitle, Content}),
`platform`, `link`, `author_id`, `author_full_name`; users have `first_name`/`last_name`.
A folder with any of those files, or one of the files alone, is a dump.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twin.errors import TwinError
from twin.settings import DEFAULT_MAX_DOCUMENT_BYTES
from twin.sources.batch import SourceBatch
from twin.sources.mongodb import warehouse_batches

DUMP_FILES = {"ArticleDocument.json": "articles", "PostDocument.json": "posts",
              "RepositoryDocument.json": "repositories", "UserDocument.json": "users"}
_EXPECTED = ", ".join(DUMP_FILES)


def is_warehouse_dump(path: Path) -> bool:
    """One of the dump's files, or a folder holding at least one of them."""
    path = Path(path)
    if path.is_file():
        return path.name in DUMP_FILES
    return path.is_dir() and any((path / name).is_file() for name in DUMP_FILES)


def warehouse_dumps(path: Path) -> list[Path]:
    """The dumps at or under `path` (a dump file, a dump folder, or folders holding dumps)."""
    path = Path(path)
    if is_warehouse_dump(path):
        return [path]
    if not path.is_dir():
        return []
    folders = {file.parent for file in path.rglob("*.json") if file.name in DUMP_FILES}
    return sorted(folders)


def read_warehouse_dump(
    path: Path, *, only_author: str | None = None, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> list[SourceBatch]:
    """One batch per twin (authors, platforms and links kept), plus one for what could not be read.

    A file that is not JSON, not a list of documents, or not one of the dump's collections is a
    rejection naming the file; the other files are read all the same.
    """
    path = Path(path)
    if not is_warehouse_dump(path):
        raise TwinError(f"{path} is not a warehouse dump.",
                        f"give the folder `tools/data_warehouse.py --export-raw-data` wrote, or one of {_EXPECTED}.")
    source = str((path.parent if path.is_file() else path).resolve())  # a dump is its folder, whole or in parts
    files = [path] if path.is_file() else sorted(file for file in path.iterdir() if file.is_file()
                                                 and file.suffix.lower() == ".json")
    problems = SourceBatch(source=source)
    collections: dict[str, list[dict[str, Any]]] = {}
    for file in files:
        collection = DUMP_FILES.get(file.name)
        if collection is None:
            problems.reject(str(file), f"{file.name}: not a collection of the dump (expected {_EXPECTED})")
            continue
        items, problem = _read_list(file)
        if problem is not None:
            problems.reject(str(file), problem)
            continue
        for position, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                problems.reject(f"{file.name} item {position}",
                                f"{file.name} item {position}: expected a JSON object, got {type(item).__name__}")
        collections[collection] = [item for item in items if isinstance(item, dict)]
    batches = warehouse_batches(collections, ref_base=f"warehouse://{Path(source).name}", source=source,
                                only_author=only_author, max_document_bytes=max_document_bytes)
    return batches + ([problems] if problems.rejections else [])


def _read_list(file: Path) -> tuple[list[Any], str | None]:
    try:
        data = json.loads(file.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        return [], f"{file.name} could not be read: {exc.strerror or exc}"
    except UnicodeDecodeError as exc:
        return [], f"{file.name} is not UTF-8 text (byte {exc.start}); it is not a warehouse dump file"
    except json.JSONDecodeError as exc:
        return [], f"{file.name} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return [], f"{file.name} nests its JSON too deeply to read"
    if not isinstance(data, list):
        return [], f"{file.name}: expected a JSON list of documents, got {type(data).__name__}"
    return data, None
