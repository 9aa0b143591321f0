"""raw/documents: the author's writing as sources delivered it, one partition per twin."""

import time
from pathlib import Path

import dagster as dg

from assets.metadata import preview
from assets.partitions import twin_partitions
from resources import PostgresResource
from twin.settings import Settings
from twin.sources.jsonl import import_jsonl


class RawDocumentsConfig(dg.Config):
    """JSONL files or folders to import for this twin before the snapshot is taken."""

    paths: list[str] = []
    prune: bool = False


@dg.asset(
    key=["raw", "documents"],
    partitions_def=twin_partitions,
    group_name="raw",
    kinds={"postgres"},
    description="Raw documents of one twin (table raw_documents); `twin import` writes here too.",
)
def raw_documents(
    context: dg.AssetExecutionContext, config: RawDocumentsConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    twin = context.partition_key
    started = time.perf_counter()
    metadata: dict[str, object] = {"twin": twin}
    with postgres.connection() as conn:
        for path in config.paths:
            for summary in import_jsonl(conn, Path(path), only_twin=twin, prune=config.prune,
                                        max_document_bytes=Settings.from_env().max_document_bytes):
                context.log.info(
                    f"{summary.source}: {summary.accepted} new, {summary.updated} updated, "
                    f"{summary.unchanged} unchanged, {summary.deleted} deleted, "
                    f"{len(summary.rejected)} rejected"
                )
                for key in ("accepted", "updated", "unchanged", "deleted"):
                    metadata[f"import_{key}"] = int(metadata.get(f"import_{key}", 0)) + getattr(summary, key)
                metadata["import_rejected"] = int(metadata.get("import_rejected", 0)) + len(summary.rejected)
        total, articles, posts, files, fingerprint = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE category = 'article'),
                      count(*) FILTER (WHERE category = 'post'),
                      count(*) FILTER (WHERE category = 'repository'),
                      md5(coalesce(string_agg(url || ':' || content_hash, ',' ORDER BY url), ''))
               FROM raw_documents WHERE twin = %s""",
            (twin,),
        ).fetchone()
        metadata["preview"] = preview(
            conn,
            """SELECT category, title, published_at, url FROM raw_documents WHERE twin = %s
               ORDER BY published_at DESC NULLS LAST, url""",
            (twin,),
        )
    if total == 0:
        context.log.warning(f"Twin {twin} has no raw documents; import some with `twin import PATH`.")
    metadata.update({"documents": total, "articles": articles, "posts": posts,
                     "repository_files": files, "seconds": round(time.perf_counter() - started, 3)})
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(fingerprint))
