"""`twin` commands for operating the platform (docs/runbook.md): each prints what it found or did
and exits non-zero when something needs attention."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from orchestration.cli.common import platform_database
from twin.chunking import ChunkingPolicy
from twin.database import Database
from twin.embedding import load_embedder
from twin.errors import TwinError
from twin.lag import STAGES, over_limit, pipeline_lag
from twin.settings import Settings


def add_operations_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    command = commands.add_parser("lag", help="documents waiting per twin and stage; source-to-vector latency")
    command.add_argument("--twin", help="only this twin (slug)")
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(run=cmd_lag)

    command = commands.add_parser("reindex", help="rebuild the HNSW vector index (concurrently)")
    command.set_defaults(run=cmd_reindex)

    command = commands.add_parser("db-dump", help="pg_dump the platform's database (custom format)")
    command.add_argument("path", type=Path)
    command.set_defaults(run=cmd_db_dump)

    command = commands.add_parser("db-restore", help="replace the database with a db-dump file (one transaction)")
    command.add_argument("path", type=Path)
    command.add_argument("--yes", action="store_true", help="required: the current contents are replaced")
    command.set_defaults(run=cmd_db_restore)

    command = commands.add_parser("replay-imports", help="re-read the sources of the imports of a period")
    command.add_argument("--since", required=True, type=_moment, help="ISO date or time (UTC when no zone)")
    command.add_argument("--until", type=_moment, default=None, help="ISO date or time (default: now)")
    command.add_argument("--dry-run", action="store_true", help="only list what would be replayed")
    command.set_defaults(run=cmd_replay_imports)

    command = commands.add_parser("runs", help="failed Dagster runs with their first error")
    command.add_argument("--limit", type=int, default=20)
    command.set_defaults(run=cmd_runs)

    command = commands.add_parser("retry", help="re-run failed runs (features, training) not since succeeded")
    command.add_argument("--run", dest="run_ids", action="append", help="only this run id (repeatable)")
    command.set_defaults(run=cmd_retry)

    command = commands.add_parser("rollback", help="move a twin's champion alias back to the previous version")
    command.add_argument("--twin", required=True, help="twin slug")
    command.add_argument("--to", type=int, default=None, help="this version instead of the previous one")
    command.set_defaults(run=cmd_rollback)

    command = commands.add_parser("api-keys", help="list, add or revoke serving API keys (prints TWIN_API_KEYS)")
    command.add_argument("action", choices=["list", "add", "revoke"])
    command.add_argument("key_id", nargs="?", help="revoke: the key's id (key-...), as `list` shows it")
    command.add_argument("--twins", help="add: the twins the new key may use (comma-separated; default all)")
    command.set_defaults(run=cmd_api_keys)

    command = commands.add_parser("topology", help="start or stop the production topology on this machine (deploy/)")
    command.add_argument("action", choices=["up", "down", "status", "restart"])
    command.add_argument("root", type=Path, help="folder for its data, logs and process ids")
    command.add_argument("service", nargs="?", help="restart: the service to stop and start again (postgres, s3, mlflow, "
                                                    "code-server, webserver, daemon, model, rag)")
    command.add_argument("--max-concurrent-runs", type=int, default=2)
    command.set_defaults(run=cmd_topology)


def cmd_lag(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 1 when a twin's oldest waiting document is older than TWIN_LAG_LIMIT_SECONDS."""
    embedder = load_embedder(settings.embedding_model)
    chunker = ChunkingPolicy(max_tokens=embedder.max_tokens).signature
    with platform_database(settings).connect() as conn:
        lags = pipeline_lag(conn, embedder.model_id, chunker, twin=args.twin)
    late = {lag.twin for lag in over_limit(lags, settings.lag_limit_seconds)}
    if args.json:
        print(json.dumps([{"twin": lag.twin, **lag.as_metadata(), "over_limit": lag.twin in late} for lag in lags],
                         indent=2))
    else:
        print(f"{'twin':<24}" + "".join(f"{stage + ' waiting':>15}{'oldest s':>10}" for stage in STAGES)
              + f"{'p50 s':>9}{'p95 s':>9}{'docs':>6}")
        for lag in lags:
            cells = "".join(f"{lag.stages[stage].waiting:>15}{_age(lag.stages[stage].oldest_seconds):>10}"
                            for stage in STAGES)
            latency = lag.latency
            print(f"{lag.twin:<24}{cells}{_age(latency.p50_seconds):>9}{_age(latency.p95_seconds):>9}"
                  f"{latency.documents:>6}" + ("  OVER LIMIT" if lag.twin in late else ""))
        print(f"limit {settings.lag_limit_seconds:g} s (TWIN_LAG_LIMIT_SECONDS); latency over documents "
              "that arrived in the last 7 days")
    return 1 if late else 0


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from twin.maintenance import rebuild_vector_index

    with platform_database(settings).connect() as conn:
        rebuilt = rebuild_vector_index(conn)
    print(f"{rebuilt.index}: rebuilt in {rebuilt.seconds:.1f} s, {rebuilt.bytes_before:,} -> "
          f"{rebuilt.bytes_after:,} bytes, {'valid' if rebuilt.valid else 'INVALID'}")
    return 0 if rebuilt.valid else 1


def cmd_db_dump(args: argparse.Namespace, settings: Settings) -> int:
    from twin.maintenance import dump_database

    url = platform_database(settings).url  # migrated: the dump has the current schema
    size = dump_database(url, args.path)
    print(f"dumped to {args.path} ({size:,} bytes)")
    return 0


def cmd_db_restore(args: argparse.Namespace, settings: Settings) -> int:
    from twin.maintenance import restore_database

    if not args.yes:
        raise TwinError("db-restore replaces the database's current contents.", "add --yes to go ahead.")
    database = Database.from_settings(settings)  # starts the embedded server when it is not running
    restore_database(database.url, args.path)
    database.migrate()  # a dump older than this code gets the newer migrations
    with database.connect() as conn:
        twins = conn.execute("SELECT count(*) FROM twins").fetchone()[0]
    print(f"restored {args.path}: {twins} twins; run `twin materialize` (or let the sensor run) to converge")
    return 0


def cmd_replay_imports(args: argparse.Namespace, settings: Settings) -> int:
    """File sources of the period are imported again; every twin they touch is then materialized,
    which also re-reads that twin's twins.yaml sources (crawls, exports, S3, git)."""
    from orchestration.cli.ingest import report_import
    from orchestration.runs import materialize_twins
    from twin.maintenance import imports_between
    from twin.sources.jsonl import import_jsonl

    until = args.until or dt.datetime.now(dt.UTC)
    with platform_database(settings).connect() as conn:
        records = imports_between(conn, args.since, until)
        files = sorted({record.source for record in records if Path(record.source).is_file()})
        twins = sorted({twin for record in records for twin in record.twins})
        print(f"{len(records)} imports between {args.since.isoformat()} and {until.isoformat()}: "
              f"{len(files)} files to import again, twins {', '.join(twins) or '-'}")
        for record in records:
            if record.source not in files:
                print(f"  {record.source}: not a file here; re-read through its twin's sources")
        if args.dry_run:
            return 0
        summaries = [summary for file in files for summary in
                     import_jsonl(conn, Path(file), max_document_bytes=settings.max_document_bytes)]
    status = report_import(settings, summaries) if summaries else 0
    twins = sorted(set(twins) | {twin for summary in summaries for twin in summary.twins})
    outcomes = materialize_twins(settings, twins) if twins else []
    for outcome in outcomes:
        print(outcome.summary_line())
    return 1 if status or any(not outcome.success for outcome in outcomes) else 0


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.runs import dagster_instance, failed_runs

    runs = failed_runs(dagster_instance(settings), limit=args.limit)
    waiting = [run for run in runs if not run.retried]
    for run in runs:
        when = dt.datetime.fromtimestamp(run.failed_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{run.run_id}  {when}  {run.job:<20} {run.twin or '-':<20} "
              f"{'retried' if run.retried else 'FAILED':<8} {run.error}")
    print(f"{len(runs)} failed runs, {len(waiting)} not since succeeded" + ("; `twin retry` re-runs them" if waiting else ""))
    return 1 if waiting else 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.runs import RETRYABLE_JOBS, dagster_instance, failed_runs, materialize_twins, train_twin

    runs = [run for run in failed_runs(dagster_instance(settings)) if not run.retried
            and (not args.run_ids or run.run_id in args.run_ids)]
    unknown = set(args.run_ids or ()) - {run.run_id for run in runs}
    if unknown:
        raise TwinError(f"No failed, not yet retried run {', '.join(sorted(unknown))}.", "see `twin runs`.")
    for run in runs:
        if run.job not in RETRYABLE_JOBS or run.twin is None:
            print(f"{run.run_id}: {run.job} is not retried from here; re-execute it in the Dagster UI")
    features = sorted({run.twin for run in runs if run.job == "build_features_job" and run.twin})
    training = sorted({run.twin for run in runs if run.job == "train_twin_job" and run.twin})
    failed = 0
    for outcome in materialize_twins(settings, features) if features else []:
        print(outcome.summary_line())
        failed += not outcome.success
    for twin in training:
        trained = train_twin(settings, twin)
        print(f"{twin}: training {'succeeded' if trained.success else 'FAILED: ' + trained.error}")
        failed += not trained.success
    if not features and not training:
        print("nothing to retry")
    return 1 if failed else 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from training.registry import configure_mlflow, rollback_champion

    client = configure_mlflow(settings)
    with platform_database(settings).connect() as conn:
        done = rollback_champion(client, conn, args.twin, args.to)
    target = f"v{done.to_version}" if done.to_version is not None else "the base model (alias removed)"
    print(f"{done.registered_model}: champion v{done.from_version} -> {target}; serving switches within "
          "TWIN_MODEL_CHECK_SECONDS")
    return 0


def cmd_api_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Keys live in TWIN_API_KEYS (a secret of the deployment): this prints its next value."""
    from twin.api_keys import ApiKey, format_api_keys, new_api_key

    keys = settings.serving.api_keys
    if args.action == "list":
        for key in keys:
            print(f"{key.id}  {'all twins' if key.twins is None else ','.join(sorted(key.twins))}")
        print(f"{len(keys)} keys")
        return 0
    if args.action == "add":
        twins = frozenset(t.strip() for t in (args.twins or "").split(",") if t.strip()) or None
        added = ApiKey(new_api_key(), twins)
        keys = (*keys, added)
        print(f"new key {added.id}: {added.key}", file=sys.stderr)
    else:
        if not args.key_id or args.key_id not in {key.id for key in keys}:
            raise TwinError(f"No key {args.key_id!r} in TWIN_API_KEYS.", "see `twin api-keys list` for the ids.")
        keys = tuple(key for key in keys if key.id != args.key_id)
    print(f"TWIN_API_KEYS={format_api_keys(keys)}")
    return 0


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or time (2026-11-30 or 2026-11-30T12:00)") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def cmd_topology(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration import topology

    if args.action == "up":
        started = topology.up(args.root, args.max_concurrent_runs)
        for name, seconds in started.started_seconds.items():
            print(f"{name:<12} pid {started.pids[name]:<8} port {started.ports[name]:<6} started in {seconds:.1f} s")
        print(f"Dagster UI {started.endpoint('webserver')}  MLflow {started.endpoint('mlflow')}  "
              f"RAG {started.endpoint('rag')}  model {started.endpoint('model')}")
        print(f"stop with: twin topology down {args.root}")
    elif args.action == "down":
        print("stopped: " + ", ".join(topology.down(args.root)))
    elif args.action == "restart":
        if args.service is None:
            raise TwinError("`twin topology restart` needs the service to restart.",
                            f"name one: twin topology restart {args.root} {' | '.join(topology.SERVICES)}")
        restarted = topology.restart(args.root, args.service)
        print(f"{args.service:<12} pid {restarted.pids[args.service]:<8} port {restarted.ports[args.service]:<6} restarted")
    else:
        state = topology.Topology.load(args.root.resolve())
        for name, pid in state.pids.items():
            print(f"{name:<12} pid {pid:<8} port {state.ports[name]:<6} {'running' if topology._alive(pid) else 'GONE'}")
    return 0
