"""Import throughput benchmark for the export and git sources; prints its figures as JSON.

  (a) a generated 10,000-post LinkedIn export: read_export, then store_batch into a fresh database;
  (b) a generated 200-file git repository: read_git_repository (local path and file:// clone),
      then store_batch.
Each figure is documents per second; a second store of the same batch (all unchanged) is timed too.

Run: .venv/bin/python bench/imports.py [--posts 10000] [--files 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.exports import Share, build_linkedin_export  # noqa: E402
from twin.database import Database, start_embedded_postgres, stop_embedded_postgres  # noqa: E402
from twin.sources.batch import SourceBatch, store_batch  # noqa: E402
from twin.sources.exports import read_export  # noqa: E402
from twin.sources.git_repository import read_git_repository  # noqa: E402

AUTHOR = "Bench Author"
WORDS = ("postgres vacuum index batch stream latency cache shard replica lock query plan tuple page "
         "budget deploy rollback schema migration incident alert metric trace queue worker retry "
         "timeout backfill partition watermark snapshot checkpoint throughput the a of to and we "
         "our it is was never always because when then team learned shipped broke fixed").split()
T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="twin-bench-imports-"))
    pgdata = work / "postgres"
    url = start_embedded_postgres(pgdata)
    try:
        figures = {"date": date.today().isoformat(), "machine": machine()}
        figures["linkedin_export"] = bench_export(work, url, args.posts)
        figures["git_repository"] = bench_git(work, url, args.files)
    finally:
        stop_embedded_postgres(pgdata)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))


def bench_export(work: Path, url: str, posts: int) -> dict[str, object]:
    rng = random.Random(7)
    start = datetime(2020, 1, 1, 8, 0, 0)
    shares = [
        Share((start + timedelta(hours=7 * i)).strftime("%Y-%m-%d %H:%M:%S"),
              f"https://www.linkedin.com/feed/update/urn:li:share:{7_000_000_000_000_000_000 + i}",
              commentary(rng))
        for i in range(posts)
    ]
    path = build_linkedin_export(work / "export", shares)
    read_s, batch = timed(lambda: read_export(path, AUTHOR))
    assert len(batch.documents) == posts and not batch.rejections, batch.rejections[:3]
    return {"posts": posts, "archive_mb": round(path.stat().st_size / 1e6, 2),
            **store_figures(url, batch, read_s)}


def bench_git(work: Path, url: str, files: int) -> dict[str, object]:
    root = work / "repository"
    write_repository(root, files, random.Random(11))
    read_s, batch = timed(lambda: read_git_repository(str(root), AUTHOR, workdir=work / "clones"))
    assert len(batch.documents) == files and not batch.rejections, batch.rejections[:3]
    clone_s, cloned = timed(lambda: read_git_repository(f"file://{root}", AUTHOR, workdir=work / "clones"))
    assert len(cloned.documents) == files
    figures = store_figures(url, batch, read_s)
    figures["file_url_clone_and_read_s"] = round(clone_s, 3)
    figures["file_url_clone_and_read_docs_per_s"] = round(files / clone_s)
    text_mb = sum(len(doc.content.encode("utf-8")) for doc in batch.documents) / 1e6
    return {"files": files, "repository_mb": round(text_mb, 2), **figures}


def store_figures(url: str, batch: SourceBatch, read_s: float) -> dict[str, object]:
    """Store the batch (all new documents), then store it again (all unchanged)."""
    Database(url).ensure_schema()
    with Database(url).connect() as conn:
        store_s, summary = timed(lambda: store_batch(conn, batch))
        assert summary.accepted == len(batch.documents), summary
        restore_s, again = timed(lambda: store_batch(conn, batch))
        assert again.unchanged == len(batch.documents), again
    documents = len(batch.documents)
    return {
        "read_s": round(read_s, 3), "read_docs_per_s": round(documents / read_s),
        "store_s": round(store_s, 3), "store_docs_per_s": round(documents / store_s),
        "read_and_store_docs_per_s": round(documents / (read_s + store_s)),
        "unchanged_restore_s": round(restore_s, 3),
    }


def commentary(rng: random.Random) -> str:
    """A post of 1-4 paragraphs of random words, some with quotes and commas (CSV quoting)."""
    paragraphs = []
    for _ in range(rng.randint(1, 4)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 60))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), '"quoted",')
        paragraphs.append(" ".join(words).capitalize() + ".")
    return "\n\n".join(paragraphs)


def write_repository(root: Path, files: int, rng: random.Random) -> None:
    """A git repository of `files` Python modules (1-8 KB each) in a few packages, one commit."""
    for i in range(files):
        path = root / f"pkg{i % 10}" / f"module_{i:03d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        functions = []
        for j in range(rng.randint(2, 16)):
            body = "\n".join(f"    {rng.choice(WORDS)}_{k} = {rng.randint(0, 999)}" for k in range(rng.randint(2, 8)))
            docstring = " ".join(rng.choices(WORDS, k=8))
            functions.append(f'def f_{i}_{j}(x):\n    """{docstring}."""\n{body}\n    return x\n')
        path.write_text("\n\n".join(functions), encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    for command in (["init", "--quiet", "-b", "main"], ["add", "-A"], ["commit", "--quiet", "-m", "bench"]):
        subprocess.run(["git", *command], cwd=root, env=env, check=True)


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores visible; Python {platform.python_version()}"


if __name__ == "__main__":
    main()
