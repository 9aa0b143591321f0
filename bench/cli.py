"""CLI start-up benchmark: wall time of `twin --help`, `twin embed` and `twin search`, cold and warm,
and what the imports behind them cost. Writes the "CLI" section of docs/benchmarks.md.

Cold = the first run after `twin db-stop` (search starts the embedded PostgreSQL again) in a fresh
process; warm = the median of the next runs. The OS file cache is not dropped (the machine is
shared), so "cold" means a cold database and process, not a cold disk.

Run: .venv/bin/python bench/cli.py [--runs 3] [--output PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import replace_section  # noqa: E402

QUESTION = "How do I keep Postgres tables from bloating when autovacuum falls behind?"
TWIN = "priya-raman.jsonl"  # one twin is enough to time start-up; search also reads the others' names
IMPORTS = {
    "sentence_transformers (the full embedder)": "import sentence_transformers",
    "transformers AutoModel (the query encoder)": "from transformers import AutoModel, AutoTokenizer",
    "spacy.blank (self-query)": "import spacy; spacy.blank('en')",
    "orchestration.cli (the CLI module)": "import orchestration.cli",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="twin-bench-cli-"))
    env = {**os.environ, "TWIN_HOME": str(home), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("DATABASE_URL", None)
    twin = [str(Path(sys.executable).with_name("twin"))]
    corpus = home / "corpus"
    corpus.mkdir()
    (corpus / TWIN).write_bytes((REPO / "sample_corpus" / TWIN).read_bytes())
    _run(twin + ["import", str(corpus)], env)
    _run([sys.executable, "-c", _FEATURES], env)  # clean, chunk, embed without Dagster runs
    load = os.getloadavg()[0]
    rows = []
    for label, command in (("twin --help", ["--help"]), ("twin embed", ["embed", QUESTION]),
                           ("twin search", ["search", QUESTION, "-k", "3"])):
        _run(twin + ["db-stop"], env)
        cold = _timed(twin + command, env)
        warm = statistics.median(_timed(twin + command, env) for _ in range(args.runs))
        rows.append((label, cold, warm))
    _run(twin + ["db-stop"], env)
    imports = [(label, statistics.median(_timed([sys.executable, "-c", code], env) for _ in range(2)))
               for label, code in IMPORTS.items()]
    lines = [f"## CLI start-up (`bench/cli.py`, {date.today().isoformat()})", "",
             f"Machine: AMD EPYC, 2 cores, 24 GiB RAM, no GPU, shared with other agents' work (load average "
             f"{load:.1f} when it started, {os.getloadavg()[0]:.1f} at the end): read the figures as relative. "
             f"One twin ({TWIN}) in the embedded PostgreSQL. Cold = first run after `twin db-stop`; warm = median "
             f"of {args.runs} runs after it.", "",
             "| command | cold | warm |", "|---|---|---|"]
    lines += [f"| `{label}` | {cold:.1f} s | {warm:.1f} s |" for label, cold, warm in rows]
    lines += ["", "What the imports cost (a fresh interpreter, median of 2): " + "; ".join(
        f"{label} {seconds:.1f} s" for label, seconds in imports) + ". `twin search` and `twin embed` encode "
        "with `twin/embedding.py: QueryEncoder` (the model through `transformers` alone, same vectors) and never "
        "import sentence-transformers; every other command imports only what it runs."]
    replace_section(args.output, "CLI start-up", "\n".join(lines))
    print("\n".join(lines))


_FEATURES = """
from twin.chunking import ChunkingPolicy
from twin.database import Database
from twin.embedding import load_embedder
from twin.raw_store import list_twins
from twin.settings import Settings
from twin import features
settings = Settings.from_env()
embedder = load_embedder(settings.embedding_model)
database = Database.from_settings(settings)
database.ensure_schema()
with database.connect() as conn:
    for twin, _ in list_twins(conn):
        features.clean_documents(conn, twin)
        features.chunk_documents(conn, twin, embedder, ChunkingPolicy(max_tokens=embedder.max_tokens))
        features.embed_chunks(conn, twin, embedder)
"""


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    _run(command, env)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
