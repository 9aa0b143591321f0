"""`twin`: the platform's command line. Each command runs the same code as the Dagster assets.

The parser table below is the only place that knows argparse: each command is a plain function
with typed parameters (in the module named for its job), which `twin demo` calls directly too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestration.cli import db, ingest, models, search, servers
from orchestration.cli.demo import SAMPLE_CORPUS, demo
from orchestration.cli.operations import add_operations_commands
from orchestration.cli.servers import ui_command
from twin.errors import TwinError
from twin.settings import Settings

__all__ = ["SAMPLE_CORPUS", "main", "ui_command"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:  # a bad TWIN_* value is a TwinError too: one line and a fix
        return int(args.run(args, Settings.from_env()) or 0)
    except TwinError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, run the command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `twin import ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _quiet_libraries() -> None:
    """Keep the terminal for the platform's own lines: MLflow's store set-up notes and Dagster's
    preview warnings stay out of it (they are in the Dagster and MLflow logs)."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow resets its logger's level on import
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*is currently in preview.*")
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed.*", module="dagster")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twin", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    command = commands.add_parser("import", help="import JSONL files or an LLM Engineer's Handbook warehouse dump")
    command.add_argument("path", type=Path)
    command.add_argument("--prune", action="store_true",
                         help="delete documents previously imported from this file that are gone from it")
    command.set_defaults(run=lambda a, s: ingest.import_path(s, a.path, prune=a.prune))

    command = commands.add_parser("crawl", help="crawl an article, profile/archive page or feed")
    command.add_argument("url")
    command.add_argument("--twin", required=True, help="the author (name) the pages belong to")
    command.set_defaults(run=lambda a, s: ingest.crawl_url(s, a.url, a.twin))

    command = commands.add_parser("import-export", help="import a LinkedIn, Medium or Substack export zip")
    command.add_argument("path", type=Path)
    command.add_argument("--twin", required=True, help="the author (name) of the export")
    command.add_argument("--base-url", help="publication URL for Substack post links")
    command.set_defaults(run=lambda a, s: ingest.import_export(s, a.path, a.twin, base_url=a.base_url))

    command = commands.add_parser("add-twin", help="add a twin (and its partition) before any import")
    command.add_argument("name")
    command.set_defaults(run=lambda a, s: ingest.add_twin(s, a.name))

    command = commands.add_parser("materialize", help="build cleaned documents, chunks and embeddings")
    command.add_argument("--twin", help="one twin (name or slug); all twins when omitted")
    command.set_defaults(run=lambda a, s: ingest.materialize(s, a.twin))

    command = commands.add_parser("search", help="search the chunks (hybrid: vector + keyword, with self-query)")
    command.add_argument("query")
    command.add_argument("--twin", help="only this twin (name or slug); else the author the question names")
    command.add_argument("--category", choices=["article", "post", "repository"], help="only this category")
    command.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid",
                         help="ranking: hybrid (default; vector and keyword fused by RRF), vector or keyword")
    command.add_argument("--no-self-query", dest="self_query", action="store_false",
                         help="take no author, category or date filter from the question's words")
    command.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    command.add_argument("--json", action="store_true", help="print the filters and results as JSON")
    command.set_defaults(run=lambda a, s: search.search(s, a.query, twin=a.twin, category=a.category, mode=a.mode,
                                                        self_query=a.self_query, k=a.k, as_json=a.json))

    command = commands.add_parser("serve", help="run the serving API (chat page, /v1, /metrics)")
    command.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    command.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    command.add_argument("--role", choices=["all", "model", "rag"], default="all",
                         help="all: one process; model: only generation (GPU host); "
                              "rag: retrieval + prompts, generating through TWIN_MODEL_ENDPOINT")
    command.set_defaults(run=lambda a, s: servers.serve(s, a.host, a.port, a.role))

    command = commands.add_parser("ask", help="answer a question in a twin's voice, with numbered sources")
    command.add_argument("question")
    command.add_argument("--twin", help="the twin (name or slug); found in the question when omitted")
    command.add_argument("--category", choices=["article", "post", "repository"], help="only this category")
    command.add_argument("-k", type=int, default=None, help="chunks to retrieve (default 5)")
    command.add_argument("--max-tokens", type=int, default=None, help="answer length (default 256)")
    command.add_argument("--json", action="store_true", help="print the answer and sources as JSON")
    command.set_defaults(run=lambda a, s: search.ask(s, a.question, twin=a.twin, category=a.category, k=a.k,
                                                     max_tokens=a.max_tokens, as_json=a.json))

    command = commands.add_parser("train", help="dataset -> LoRA fine-tune -> evaluation -> promotion for a twin")
    command.add_argument("--twin", required=True, help="twin slug")
    command.add_argument("--profile", choices=["cpu-demo", "gpu"], default="cpu-demo")
    command.add_argument("--max-steps", type=int, default=None, help="override the profile's step count")
    command.set_defaults(run=lambda a, s: models.train(s, a.twin, a.profile, a.max_steps))

    command = commands.add_parser("models", help="a twin's model versions, aliases and evaluation figures")
    command.add_argument("--twin", required=True, help="twin slug")
    command.set_defaults(run=lambda a, s: models.models(s, a.twin))

    command = commands.add_parser("mlflow-ui", help="open the MLflow UI on the embedded tracking store")
    command.add_argument("--port", type=int, default=5000)
    command.set_defaults(run=lambda a, s: servers.mlflow_ui(s, a.port))

    command = commands.add_parser("demo", help="the whole chain on the sample corpus: import, features, train, evaluate, answer")
    command.set_defaults(run=lambda a, s: demo(s))

    command = commands.add_parser("db-url", help="print a URL psql accepts (starts the embedded server)")
    command.set_defaults(run=lambda a, s: db.db_url(s))

    command = commands.add_parser("embed", help="print the query vector of TEXT as a pgvector literal")
    command.add_argument("text")
    command.set_defaults(run=lambda a, s: search.embed(s, a.text))

    command = commands.add_parser("analyst-url", help="enable the read-only twin_analyst login; print its URL")
    command.set_defaults(run=lambda a, s: db.analyst_url(s))

    command = commands.add_parser("dbt", help="run dbt on dbt_project/ against the platform's database")
    command.add_argument("dbt_args", nargs=argparse.REMAINDER, help="e.g. build, test -s marts")
    command.set_defaults(run=lambda a, s: db.dbt(s, a.dbt_args))

    command = commands.add_parser("db-stop", help="stop the embedded PostgreSQL")
    command.set_defaults(run=lambda a, s: db.db_stop(s))

    command = commands.add_parser("embedding-dim", help="resize chunks.embedding for another model")
    command.add_argument("dimension", type=int)
    command.set_defaults(run=lambda a, s: db.embedding_dim(s, a.dimension))

    command = commands.add_parser("ui", help="open the Dagster UI on this platform's instance")
    command.add_argument("--port", default="3000")
    command.set_defaults(run=lambda a, s: servers.ui(s, a.port))
    add_operations_commands(commands)
    return parser
