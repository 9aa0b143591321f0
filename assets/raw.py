"""raw/documents: the author's writing as sources delivered it, one partition per twin."""

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.metadata import CHEAP, preview, table_metadata
from assets.partitions import twin_partitions
from resources import EmbeddingModelResource, PostgresResource, ProfilesResource
from twin.features import features_pending
from twin.profiles import TwinProfile
from twin.raw_store import ImportSummary
from twin.sources.batch import store_batch
from twin.sources.jsonl import import_jsonl
from twin.sources.kinds import profile_fingerprint, read_source


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
    profile = profiles.get(twin)
    fingerprint_before = _fingerprint(context, profile, s3)  # before reading: a change meanwhile is seen next time
    summaries: list[ImportSummary] = []
    with postgres.connection() as conn:
        for spec in profile.sources if profile else ():
            with tempfile.TemporaryDirectory(prefix="twin-source-") as workdir:
                s3_client = s3.get_client() if spec.kind == "s3" else None
                for batch in read_source(conn, spec, profile, workdir=Path(workdir), s3_client=s3_client,
                                         max_document_bytes=profiles.max_document_bytes):
                    summaries.append(store_batch(conn, batch, only_twin=twin,
                                                          max_document_bytes=profiles.max_document_bytes))
        for path in config.paths:
            summaries += import_jsonl(conn, Path(path), only_twin=twin, prune=config.prune,
                                      max_document_bytes=profiles.max_document_bytes)
        for summary in summaries:
            context.log.info(
                f"{summary.source}: {summary.accepted} new, {summary.updated} updated, "
                f"{summary.unchanged} unchanged, {summary.deleted} deleted, {len(summary.rejected)} rejected"
            )
        changed = any(summary.changed_twins for summary in summaries)
        if config.skip_downstream_if_unchanged and not changed and features_pending(
                conn, twin, embedding_model.model, embedding_model.chunking_policy().signature) == 0:
            context.log.info(f"Nothing new for {twin}: downstream assets are not run.")
            return
        total, articles, posts, files, fingerprint = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE category = 'article'),
                      count(*) FILTER (WHERE category = 'post'),
                      count(*) FILTER (WHERE category = 'repository'),
                      md5(coalesce(string_agg(url || ':' || content_hash, ',' ORDER BY url), ''))
               FROM raw_documents WHERE twin = %s""",
            (twin,),
        ).fetchone()
        sample = preview(
            conn,
            """SELECT category, title, published_at, url FROM raw_documents WHERE twin = %s
               ORDER BY published_at DESC NULLS LAST, url""",
            (twin,),
        )
        table = table_metadata(conn, "raw_documents", twin)
    if total == 0:
        context.log.warning(f"Twin {twin} has no raw documents; add sources to twins.yaml or run `twin import`.")
    yield dg.MaterializeResult(
        metadata={
            "twin": twin, "documents": total, "articles": articles, "posts": posts,
            "repository_files": files, "seconds": round(time.perf_counter() - started, 3),
            **_import_totals(summaries), "sources": _sources_table(summaries), "preview": sample, **table,
            **({"source_fingerprint": fingerprint_before} if fingerprint_before else {}),
        },
        data_version=dg.DataVersion(fingerprint),
    )


def _fingerprint(context: dg.AssetExecutionContext, profile: TwinProfile | None, s3: S3Resource) -> str | None:
    """What source_change_sensor compares: recorded here so a run from the UI or the CLI counts."""
    if profile is None:
        return None
    try:
        return profile_fingerprint(profile, s3.get_client)
    except Exception as error:  # noqa: BLE001 - an unreachable source is reported by the import itself
        context.log.warning(f"could not fingerprint the sources of {profile.slug}: {error}")
        return None


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
