"""features/*: cleaned documents -> chunks -> embeddings, per twin, incremental by content hash."""

import time

import dagster as dg
from tqdm import tqdm

from assets.checks import check_specs, selected_checks
from assets.metadata import CHEAP, step_metadata, table_metadata
from assets.partitions import twin_partitions
from assets.raw import raw_documents
from resources import EmbeddingModelResource, PostgresResource
from twin import features
from twin.features.chunks import CHUNK_CHECKS, check_chunks
from twin.features.embeddings import EMBEDDING_DIMENSION_MATCHES, check_embeddings_match, count_vectors
from twin.lag import pipeline_lag


@dg.asset(
    key=["features", "cleaned_documents"],
    deps=[raw_documents],
    partitions_def=twin_partitions,
    group_name="features",
    kinds={"postgres"},
    tags=CHEAP,
    description="Cleaned text per document (table cleaned_documents): the fine-tuning snapshot. Cheap: "
                "only new or changed documents are cleaned again (seconds per twin).",
)
def cleaned_documents(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.MaterializeResult:
    twin = context.partition_key
    started = time.perf_counter()
    with postgres.connection() as conn:
        counts = features.clean_documents(conn, twin)
        chrome = features.chrome_summary(conn, twin)
        table = table_metadata(conn, "cleaned_documents", twin)
    removed = "\n".join(f"- {note}" for note in counts.notes) or "nothing removed in this run"
    return dg.MaterializeResult(
        metadata={**step_metadata(counts, time.perf_counter() - started), **chrome, **table,
                  "chrome_removed": dg.MetadataValue.md(removed)}
    )


@dg.asset(
    key=["features", "chunks"],
    deps=[cleaned_documents],
    partitions_def=twin_partitions,
    group_name="features",
    kinds={"postgres"},
    check_specs=check_specs(["features", "chunks"], CHUNK_CHECKS),
    tags=CHEAP,
    description="Chunks with source attribution (table chunks), sized to the embedding model. Cheap: "
                "only changed documents are re-chunked.",
)
def chunks(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.MaterializeResult:
    twin = context.partition_key
    started = time.perf_counter()
    embedder = embedding_model.embedder()
    policy = embedding_model.chunking_policy()
    with postgres.connection() as conn:
        counts = features.chunk_documents(conn, twin, embedder, policy)
        checks = check_chunks(conn, twin, policy.max_tokens)
        table = table_metadata(conn, "chunks", twin)
    return dg.MaterializeResult(
        metadata={**step_metadata(counts, time.perf_counter() - started), **table, "chunker": policy.signature},
        check_results=selected_checks(context, checks),
    )


@dg.asset(
    key=["features", "embeddings"],
    deps=[chunks],
    partitions_def=twin_partitions,
    group_name="features",
    kinds={"postgres", "pgvector"},
    check_specs=check_specs(["features", "embeddings"], [EMBEDDING_DIMENSION_MATCHES]),
    tags=CHEAP,
    description="Chunk vectors (chunks.embedding, HNSW cosine index) from the embedding model. Cheap: "
                "only chunks without a vector are encoded (about 28 chunks/s on 2 CPU cores, docs/benchmarks.md).",
)
def embeddings(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.MaterializeResult:
    twin = context.partition_key
    started = time.perf_counter()
    embedder = embedding_model.embedder()

    bar = tqdm(desc=f"embedding {twin}", unit="chunk", disable=None)  # shown on a terminal only

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        context.log.info(f"embedded {done}/{total} chunks of {twin}")

    with postgres.connection() as conn:
        counts = features.embed_chunks(conn, twin, embedder, on_progress=report)
    bar.close()
    with postgres.connection() as conn:
        check = check_embeddings_match(conn, twin, embedder)
        lag = pipeline_lag(conn, embedder.model_id, embedding_model.chunking_policy().signature, twin=twin)
        vectors = dg.MetadataValue.int(count_vectors(conn, twin))
    seconds = time.perf_counter() - started
    embedded = counts.new + counts.changed
    return dg.MaterializeResult(
        metadata={**step_metadata(counts, seconds), "embedded": embedded, "dagster/row_count": vectors,
                  "model": embedder.model_id, "dimension": embedder.dimension,
                  "chunks_per_second": round(embedded / seconds, 2) if embedded else 0.0,
                  **(lag[0].as_metadata() if lag else {})},
        check_results=selected_checks(context, [check]),
    )
