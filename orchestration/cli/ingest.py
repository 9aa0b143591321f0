"""`twin import`, `crawl`, `import-export`, `add-twin` and `materialize`: writing into the platform."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from orchestration.cli.common import known_twin, platform_database
from twin.documents import twin_slug
from twin.errors import TwinError
from twin.raw_store import ImportSummary, add_twins, list_twins
from twin.settings import Settings
from twin.sources.batch import store_batch
from twin.sources.jsonl import import_jsonl, jsonl_files
from twin.sources.warehouse import read_warehouse_dump, warehouse_dumps

SHOWN_REJECTIONS = 10


def import_path(settings: Settings, path: Path, prune: bool = False) -> int:
    """JSONL files and warehouse dumps (a dump folder, one of its files, or folders holding them)."""
    dumps = warehouse_dumps(path)
    has_jsonl = not (dumps and dumps[0] == path)
    try:
        files = jsonl_files(path) if has_jsonl else []
    except TwinError:
        if not dumps:
            raise
        files = []
    summaries: list[ImportSummary] = []
    with platform_database(settings).connect() as conn, \
            tqdm(total=len(files) + len(dumps), unit="file", desc="importing", disable=None) as bar:
        if files:
            summaries += import_jsonl(conn, path, prune=prune,
                                      max_document_bytes=settings.max_document_bytes,
                                      progress=lambda _file: bar.update())
        for dump in dumps:
            for batch in read_warehouse_dump(dump, max_document_bytes=settings.max_document_bytes):
                twins = {doc.twin for doc in batch.documents}
                only_twin = next(iter(twins)) if len(twins) == 1 else None
                summaries.append(store_batch(conn, batch, prune=prune and only_twin is not None,
                                             only_twin=only_twin))
            bar.update()
    return report_import(settings, summaries)


def crawl_url(settings: Settings, url: str, twin: str) -> int:
    from twin.sources.crawl import crawl

    with platform_database(settings).connect() as conn:
        summary = store_batch(conn, crawl(conn, url, twin), max_document_bytes=settings.max_document_bytes)
    return report_import(settings, [summary])


def import_export(settings: Settings, path: Path, twin: str, base_url: str | None = None) -> int:
    from twin.sources.exports import read_export

    batch = read_export(path, twin, base_url=base_url)
    with platform_database(settings).connect() as conn:
        summary = store_batch(conn, batch, max_document_bytes=settings.max_document_bytes)
    return report_import(settings, [summary])


def add_twin(settings: Settings, name: str) -> int:
    from orchestration.runs import register_twins

    slug = twin_slug(name)
    with platform_database(settings).connect() as conn:
        add_twins(conn, {slug: name.strip()})
    register_twins(settings, [slug])
    print(f"twin {slug} ready (partition added)")
    return 0


def materialize(settings: Settings, twin: str | None = None) -> int:
    """Every twin's (or one twin's) features through Dagster runs; 1 when a run failed."""
    from orchestration.runs import materialize_twins

    with platform_database(settings).connect() as conn:
        twins = [known_twin(conn, twin)] if twin else [slug for slug, _ in list_twins(conn)]
    if not twins:
        raise TwinError("There are no twins yet.", "import some writing first: twin import PATH")
    outcomes = materialize_twins(settings, twins)
    for outcome in outcomes:
        print(outcome.summary_line())
    failed = [outcome for outcome in outcomes if not outcome.success]
    for outcome in failed:
        print(f"error: {outcome.twin}: {outcome.error}", file=sys.stderr)
    return 1 if failed else 0


def report_import(settings: Settings, summaries: list[ImportSummary]) -> int:
    """Print each import's outcome, add partitions for its twins; 1 when anything was rejected."""
    for summary in summaries:
        _print_import(summary)
    twins = sorted(set().union(*(s.twins for s in summaries)))
    if twins:
        from orchestration.runs import register_twins

        register_twins(settings, twins)
        print(f"twins: {', '.join(twins)} (next: twin materialize)")
    return 1 if any(summary.rejected for summary in summaries) else 0


def _print_import(summary: ImportSummary) -> None:
    print(f"{summary.source}: {summary.accepted} accepted, {summary.updated} updated, "
          f"{summary.unchanged} unchanged, {summary.deleted} deleted, {len(summary.rejected)} rejected")
    for rejection in summary.rejected[:SHOWN_REJECTIONS]:
        print(f"  rejected line {rejection.line_number}: {rejection.reason}")
    if len(summary.rejected) > SHOWN_REJECTIONS:
        print(f"  ... {len(summary.rejected) - SHOWN_REJECTIONS} more")
    if summary.rejected:
        print(f"  rejected lines are kept: SELECT * FROM import_rejections WHERE import_id = {summary.import_id}")
    if summary.prune_skipped:
        print("  prune skipped: some lines were rejected; fix them and import again to prune")
