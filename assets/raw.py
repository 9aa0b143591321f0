"""raw/documents: the author's writing as sources delivered it, one partition per twin."""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.metadata import CHEAP, table_metadata
from assets.partitions import twin_partitions
from resources import EmbeddingModelResource, PostgresResource, ProfilesResource
from twin.features import features_pending
from twin.ingest import import_profile, raw_snapshot
from twin.raw_store import ImportSummary


class RawDocumentsConfig(dg.Config):
    """Extra JSONL paths to import, and whether to stop here when nothing changed."""

    paths: list[str] = []
    prune: bool = False
    # A run that would change nothing materializes nothing, so no-op runs (the CLI, a sensor or
    # schedule tick, a click in the UI) trigger no training and no dbt run downstream.
    skip_downstream_if_unchanged: bool = True


@dg.asset(
    key=["raw", "documents"],
    partitions_def=twin_partitions,
    group_name="raw",
    kinds={"postgres"},
    tags=CHEAP,
    output_required=False,
    description=(
        "Raw documents of one twin (table raw_documents): imports the twin's sources from "
        "twins.yaml and any `paths`, then records a snapshot. `twin import` writes here too."
    ),
)
def raw_documents(
    context: dg.AssetExecutionContext,
    config: RawDocumentsConfig,
    postgres: PostgresResource,
    profiles: ProfilesResource,
    s3: S3Resource,
    embedding_model: EmbeddingModelResource,
) -> Iterator[dg.MaterializeResult]:
    twin = context.partition_key
    started = time.perf_counter()
    with postgres.connection() as conn:
        report = import_profile(conn, twin, profiles.get(twin), s3_client=s3.get_client,
                                max_document_bytes=profiles.max_document_bytes,
                                paths=[Path(p) for p in config.paths], prune=config.prune)
        for warning in report.warnings:
            context.log.warning(warning)
        summaries = report.summaries
        for summary in summaries:
            context.log.info(
                f"{summary.source}: {summary.accepted} new, {summary.updated} updated, "
                f"{summary.unchanged} unchanged, {summary.deleted} deleted, {len(summary.rejected)} rejected"
            )
        if config.skip_downstream_if_unchanged and not report.changed and features_pending(
                conn, twin, embedding_model.model, embedding_model.chunking_policy().signature) == 0:
            context.log.info(f"Nothing new for {twin}: downstream assets are not run.")
            return
        snapshot = raw_snapshot(conn, twin)
        table = table_metadata(conn, "raw_documents", twin)
    if snapshot.documents == 0:
        context.log.warning(f"Twin {twin} has no raw documents; add sources to twins.yaml or run `twin import`.")
    yield dg.MaterializeResult(
        metadata={
            "twin": twin, "documents": snapshot.documents, "articles": snapshot.articles, "posts": snapshot.posts,
            "repository_files": snapshot.repository_files, "seconds": round(time.perf_counter() - started, 3),
            **_import_totals(summaries), "sources": _sources_table(summaries), **table,
            **({"source_fingerprint": report.source_fingerprint} if report.source_fingerprint else {}),
        },
        data_version=dg.DataVersion(snapshot.fingerprint),
    )


def _import_totals(summaries: list[ImportSummary]) -> dict[str, int]:
    return {
        "import_accepted": sum(s.accepted for s in summaries),
        "import_updated": sum(s.updated for s in summaries),
        "import_unchanged": sum(s.unchanged for s in summaries),
        "import_deleted": sum(s.deleted for s in summaries),
        "import_rejected": sum(len(s.rejected) for s in summaries),
    }


def _sources_table(summaries: list[ImportSummary]) -> dg.MetadataValue:
    lines = ["| source | new | updated | unchanged | deleted | rejected | first rejection |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        first = s.rejected[0].reason.replace("|", "\\|")[:80] if s.rejected else ""
        lines.append(f"| {s.source} | {s.accepted} | {s.updated} | {s.unchanged} | {s.deleted} "
                     f"| {len(s.rejected)} | {first} |")
    return dg.MetadataValue.md("\n".join(lines))
