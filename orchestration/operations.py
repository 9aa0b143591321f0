"""`twin` commands for operating the platform (docs/runbook.md): each prints what it found or did
and exits non-zero when something needs attention."""

from __future__ import annotations

import argparse
import json

from twin.chunking import ChunkingPolicy
from twin.database import connect, database_url
from twin.embedding import load_embedder
from twin.lag import STAGES, over_limit, pipeline_lag
from twin.settings import Settings


def add_operations_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    command = commands.add_parser("lag", help="documents waiting per twin and stage; source-to-vector latency")
    command.add_argument("--twin", help="only this twin (slug)")
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(run=cmd_lag)


def cmd_lag(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 1 when a twin's oldest waiting document is older than TWIN_LAG_LIMIT_SECONDS."""
    embedder = load_embedder(settings.embedding_model)
    chunker = ChunkingPolicy(max_tokens=embedder.max_tokens).signature
    with connect(database_url(settings)) as conn:
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
