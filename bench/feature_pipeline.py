"""Feature-pipeline benchmark: writes its figures to docs/benchmarks.md.

On the sample corpus copied until it makes at least --min-chunks chunks:
  (a) raw model encode throughput on the chunk texts alone;
  (b) end-to-end clean + chunk + embed + load throughput through the Dagster assets; (b)/(a);
  (c) a no-change re-run's wall time as a fraction of the full run;
  (d) binary COPY vs executemany insert rate for the same vectors.

Run: .venv/bin/python bench/feature_pipeline.py   (or `make bench`)
     --quick: one copy of the corpus, figures to a scratch file (what `make test` runs so the
       script cannot rot; not a measurement)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import torch  # noqa: E402

from assets.features import chunks, cleaned_documents, embeddings  # noqa: E402
from assets.raw import raw_documents  # noqa: E402
from bench.report import replace_section  # noqa: E402
from orchestration.definitions import build_definitions  # noqa: E402
from twin.database import Database, embedded_postgres_dir, start_embedded_postgres, stop_embedded_postgres  # noqa: E402
from twin.documents import twin_slug  # noqa: E402
from twin.embedding import load_embedder  # noqa: E402
from twin.settings import DEFAULT_EMBEDDING_MODEL, Settings  # noqa: E402
from twin.sources.jsonl import import_jsonl  # noqa: E402

CHUNKS_PER_CORPUS_COPY = 600  # about what one copy of the sample corpus yields
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-chunks", type=int, default=5000)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="one corpus copy; not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.min_chunks = 0  # one copy of the corpus

    home = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    url = start_embedded_postgres(embedded_postgres_dir(home))
    os.environ.update({"TWIN_HOME": str(home), "DATABASE_URL": url, "TWIN_PROFILES": str(home / "twins.yaml")})
    try:
        figures = run(home, url, args.min_chunks)
    finally:
        stop_embedded_postgres(embedded_postgres_dir(home))
    write_report(args.output, figures)
    print(json.dumps(figures, indent=2))


def run(home: Path, url: str, min_chunks: int) -> dict[str, object]:
    copies = -(-min_chunks // CHUNKS_PER_CORPUS_COPY) + 1
    corpus = home / "corpus.jsonl"
    twins = write_scaled_corpus(corpus, copies)
    Database(url).ensure_schema()
    with Database(url).connect() as conn:
        import_jsonl(conn, corpus, max_document_bytes=1_000_000)
    embedder = load_embedder(DEFAULT_EMBEDDING_MODEL)
    embedder.encode(["warm up the model once"])  # loading is not what we measure

    step_seconds: dict[str, float] = {}
    # the platform's own wiring (orchestration/definitions.py), not a hand-made resource dict
    resources = build_definitions(Settings.from_env()).resources

    def materialize_all() -> float:
        step_seconds.clear()
        started = time.perf_counter()
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("twins", twins)
            for twin in twins:
                result = dg.materialize(
                    [raw_documents, cleaned_documents, chunks, embeddings], partition_key=twin,
                    instance=instance, run_config=QUIET,
                    resources=resources,
                )
                assert result.success
                for event in result.get_asset_materialization_events():
                    materialization = event.event_specific_data.materialization
                    key = materialization.asset_key.to_user_string()
                    step_seconds[key] = step_seconds.get(key, 0.0) + materialization.metadata["seconds"].value
        return time.perf_counter() - started

    full_seconds = materialize_all()
    full_steps = {key: round(value, 1) for key, value in step_seconds.items()}
    Database(url).ensure_schema()
    with Database(url).connect() as conn:
        texts = [row[0] for row in conn.execute("SELECT text FROM chunks ORDER BY chunk_id")]
        tokens = conn.execute("SELECT avg(token_count) FROM chunks").fetchone()[0]
        documents = conn.execute("SELECT count(*) FROM cleaned_documents").fetchone()[0]
    rerun_seconds = materialize_all()

    started = time.perf_counter()
    vectors = embedder.encode(texts)
    encode_seconds = time.perf_counter() - started

    copy_rate, executemany_rate = insert_rates(url, vectors)
    encode_rate = len(texts) / encode_seconds
    pipeline_rate = len(texts) / full_seconds
    return {
        "date": date.today().isoformat(),
        "machine": machine(),
        "documents": documents,
        "chunks": len(texts),
        "mean_tokens_per_chunk": round(float(tokens), 1),
        "a_encode_chunks_per_s": round(encode_rate, 2),
        "b_pipeline_chunks_per_s": round(pipeline_rate, 2),
        "b_over_a": round(pipeline_rate / encode_rate, 3),
        "full_run_s": round(full_seconds, 1),
        "full_run_step_s": full_steps,
        "no_change_rerun_s": round(rerun_seconds, 2),
        "c_rerun_fraction": round(rerun_seconds / full_seconds, 4),
        "d_copy_rows_per_s": round(copy_rate),
        "d_executemany_rows_per_s": round(executemany_rate),
        "d_copy_over_executemany": round(copy_rate / executemany_rate, 1),
    }


def write_scaled_corpus(path: Path, copies: int) -> list[str]:
    """The sample corpus `copies` times over: copy i has its own urls and a marked first line."""
    twins: set[str] = set()
    with path.open("w", encoding="utf-8") as out:
        for source in sorted((REPO / "sample_corpus").glob("*.jsonl")):
            for line in source.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                for copy in range(copies):
                    record_copy = dict(record, url=f"{record['url']}?copy={copy}",
                                       content=f"(copy {copy}) {record['content']}")
                    out.write(json.dumps(record_copy, ensure_ascii=False) + "\n")
                twins.add(twin_slug(record["author"]))
    return sorted(twins)


def insert_rates(url: str, vectors) -> tuple[float, float]:
    """Rows/s for binary COPY and for executemany INSERT of the same vectors into a fresh table."""
    import uuid

    ids = [uuid.uuid4() for _ in range(len(vectors))]
    rates = []
    Database(url).ensure_schema()
    with Database(url).connect() as conn:
        for method in ("copy", "executemany"):
            conn.execute("DROP TABLE IF EXISTS bench_vectors")
            conn.execute("CREATE TABLE bench_vectors (chunk_id uuid PRIMARY KEY, embedding vector(384))")
            started = time.perf_counter()
            with conn.transaction():
                if method == "copy":
                    with conn.cursor().copy("COPY bench_vectors FROM STDIN WITH (FORMAT BINARY)") as copy:
                        copy.set_types(["uuid", "vector"])
                        for row in zip(ids, vectors, strict=False):
                            copy.write_row(row)
                else:
                    conn.cursor().executemany("INSERT INTO bench_vectors VALUES (%s, %s)", list(zip(ids, vectors, strict=False)))
            rates.append(len(ids) / (time.perf_counter() - started))
        conn.execute("DROP TABLE bench_vectors")
    return rates[0], rates[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = re.search(r"Model name:\s*(.+)", info).group(1).strip()
    except (OSError, subprocess.CalledProcessError, AttributeError):
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores visible, {memory_gib:.0f} GiB RAM, no GPU used; "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def write_report(path: Path, f: dict[str, object]) -> None:
    section = f"""## Feature pipeline (`bench/feature_pipeline.py`, {f['date']})

Machine: {f['machine']}.
Corpus: the sample corpus copied to {f['documents']} documents -> {f['chunks']} chunks
(mean {f['mean_tokens_per_chunk']} tokens), all-MiniLM-L6-v2, embedded PostgreSQL 18 + pgvector 0.8.

| figure | value | target |
|---|---|---|
| (a) model encode alone | {f['a_encode_chunks_per_s']} chunks/s | |
| (b) clean + chunk + embed + load through the Dagster assets | {f['b_pipeline_chunks_per_s']} chunks/s ({f['full_run_s']} s) | |
| (b)/(a) | **{f['b_over_a']}** | >= 0.85 |
| (b) seconds per asset | {', '.join(f'{k} {v}' for k, v in f['full_run_step_s'].items())} | |
| (c) no-change re-run | {f['no_change_rerun_s']} s = **{f['c_rerun_fraction']}** of the full run | <= 0.03 |
| (d) binary COPY insert | {f['d_copy_rows_per_s']} rows/s | |
| (d) executemany insert | {f['d_executemany_rows_per_s']} rows/s | |
| (d) COPY / executemany | **{f['d_copy_over_executemany']}x** | |
"""
    replace_section(path, "Feature pipeline", section)


if __name__ == "__main__":
    main()
