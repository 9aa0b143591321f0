"""`twin`: the platform's command line. Each command runs the same code as the Dagster assets."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from tqdm import tqdm

from orchestration.operations import add_operations_commands
from twin.database import connect, database_url, embedded_postgres_dir, set_embedding_column_dimension
from twin.documents import twin_slug
from twin.errors import TwinError
from twin.grounding import CITATION_THRESHOLD
from twin.raw_store import ImportSummary, list_twins
from twin.settings import Settings
from twin.sources.batch import store_batch
from twin.sources.jsonl import import_jsonl, jsonl_files
from twin.sources.warehouse import read_warehouse_dump, warehouse_dumps

if TYPE_CHECKING:
    from twin.retrieval import RetrievedChunk

SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "sample_corpus"
DEMO_QUESTION = "How do I keep Postgres tables from bloating when autovacuum falls behind?"
DEMO_TWIN = "maya-lindqvist"  # the author who wrote about it
DEMO_EXPORT_AUTHOR = "Ines Varga"  # the sample author whose writing arrives as real pages and exports
DEMO_MAX_TOKENS = 160
SHOWN_REJECTIONS = 10


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
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
    parser = argparse.ArgumentParser(prog="twin", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    command = commands.add_parser("import", help="import JSONL files or an LLM Engineer's Handbook warehouse dump")
    command.add_argument("path", type=Path)
    command.add_argument("--prune", action="store_true",
                         help="delete documents previously imported from this file that are gone from it")
    command.set_defaults(run=cmd_import)

    command = commands.add_parser("crawl", help="crawl an article, profile/archive page or feed")
    command.add_argument("url")
    command.add_argument("--twin", required=True, help="the author (name) the pages belong to")
    command.set_defaults(run=cmd_crawl)

    command = commands.add_parser("import-export", help="import a LinkedIn, Medium or Substack export zip")
    command.add_argument("path", type=Path)
    command.add_argument("--twin", required=True, help="the author (name) of the export")
    command.add_argument("--base-url", help="publication URL for Substack post links")
    command.set_defaults(run=cmd_import_export)

    command = commands.add_parser("add-twin", help="add a twin (and its partition) before any import")
    command.add_argument("name")
    command.set_defaults(run=cmd_add_twin)

    command = commands.add_parser("materialize", help="build cleaned documents, chunks and embeddings")
    command.add_argument("--twin", help="one twin (name or slug); all twins when omitted")
    command.set_defaults(run=cmd_materialize)

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
    command.set_defaults(run=cmd_search)

    command = commands.add_parser("serve", help="run the serving API (chat page, /v1, /metrics)")
    command.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    command.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    command.add_argument("--role", choices=["all", "model", "rag"], default="all",
                         help="all: one process; model: only generation (GPU host); "
                              "rag: retrieval + prompts, generating through TWIN_MODEL_ENDPOINT")
    command.set_defaults(run=cmd_serve)

    command = commands.add_parser("ask", help="answer a question in a twin's voice, with numbered sources")
    command.add_argument("question")
    command.add_argument("--twin", help="the twin (name or slug); found in the question when omitted")
    command.add_argument("--category", choices=["article", "post", "repository"], help="only this category")
    command.add_argument("-k", type=int, default=None, help="chunks to retrieve (default 5)")
    command.add_argument("--max-tokens", type=int, default=None, help="answer length (default 256)")
    command.add_argument("--json", action="store_true", help="print the answer and sources as JSON")
    command.set_defaults(run=cmd_ask)

    command = commands.add_parser("train", help="dataset -> LoRA fine-tune -> evaluation -> promotion for a twin")
    command.add_argument("--twin", required=True, help="twin slug")
    command.add_argument("--profile", choices=["cpu-demo", "gpu"], default="cpu-demo")
    command.add_argument("--max-steps", type=int, default=None, help="override the profile's step count")
    command.set_defaults(run=cmd_train)

    command = commands.add_parser("models", help="a twin's model versions, aliases and evaluation figures")
    command.add_argument("--twin", required=True, help="twin slug")
    command.set_defaults(run=cmd_models)

    command = commands.add_parser("mlflow-ui", help="open the MLflow UI on the embedded tracking store")
    command.add_argument("--port", type=int, default=5000)
    command.set_defaults(run=cmd_mlflow_ui)

    command = commands.add_parser("demo", help="the whole chain on the sample corpus: import, features, train, evaluate, answer")
    command.set_defaults(run=cmd_demo)

    command = commands.add_parser("db-url", help="print a URL psql accepts (starts the embedded server)")
    command.set_defaults(run=cmd_db_url)

    command = commands.add_parser("embed", help="print the query vector of TEXT as a pgvector literal")
    command.add_argument("text")
    command.set_defaults(run=cmd_embed)

    command = commands.add_parser("analyst-url", help="enable the read-only twin_analyst login; print its URL")
    command.set_defaults(run=cmd_analyst_url)

    command = commands.add_parser("dbt", help="run dbt on dbt_project/ against the platform's database")
    command.add_argument("dbt_args", nargs=argparse.REMAINDER, help="e.g. build, test -s marts")
    command.set_defaults(run=cmd_dbt)

    command = commands.add_parser("db-stop", help="stop the embedded PostgreSQL")
    command.set_defaults(run=cmd_db_stop)

    command = commands.add_parser("embedding-dim", help="resize chunks.embedding for another model")
    command.add_argument("dimension", type=int)
    command.set_defaults(run=cmd_embedding_dim)

    command = commands.add_parser("ui", help="open the Dagster UI on this platform's instance")
    command.add_argument("--port", default="3000")
    command.set_defaults(run=cmd_ui)
    add_operations_commands(commands)
    return parser


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """JSONL files and warehouse dumps (a dump folder, one of its files, or folders holding them)."""
    dumps = warehouse_dumps(args.path)
    has_jsonl = not (dumps and dumps[0] == args.path)
    try:
        files = jsonl_files(args.path) if has_jsonl else []
    except TwinError:
        if not dumps:
            raise
        files = []
    summaries: list[ImportSummary] = []
    with connect(database_url(settings)) as conn, \
            tqdm(total=len(files) + len(dumps), unit="file", desc="importing", disable=None) as bar:
        if files:
            summaries += import_jsonl(conn, args.path, prune=args.prune,
                                      max_document_bytes=settings.max_document_bytes,
                                      progress=lambda _file: bar.update())
        for dump in dumps:
            for batch in read_warehouse_dump(dump, max_document_bytes=settings.max_document_bytes):
                twins = {doc.twin for doc in batch.documents}
                only_twin = next(iter(twins)) if len(twins) == 1 else None
                summaries.append(store_batch(conn, batch, prune=args.prune and only_twin is not None,
                                             only_twin=only_twin))
            bar.update()
    return _report_import(settings, summaries)


def _report_import(settings: Settings, summaries: list[ImportSummary]) -> int:
    """Print each import's outcome, add partitions for its twins; 1 when anything was rejected."""
    for summary in summaries:
        _print_import(summary)
    twins = sorted(set().union(*(s.twins for s in summaries)))
    if twins:
        from orchestration.runs import register_twins

        register_twins(settings, twins)
        print(f"twins: {', '.join(twins)} (next: twin materialize)")
    return 1 if any(summary.rejected for summary in summaries) else 0


def cmd_crawl(args: argparse.Namespace, settings: Settings) -> int:
    from twin.sources.crawl import crawl

    with connect(database_url(settings)) as conn:
        summary = store_batch(conn, crawl(conn, args.url, args.twin),
                              max_document_bytes=settings.max_document_bytes)
    return _report_import(settings, [summary])


def cmd_import_export(args: argparse.Namespace, settings: Settings) -> int:
    from twin.sources.exports import read_export

    batch = read_export(args.path, args.twin, base_url=args.base_url)
    with connect(database_url(settings)) as conn:
        summary = store_batch(conn, batch, max_document_bytes=settings.max_document_bytes)
    return _report_import(settings, [summary])


def cmd_add_twin(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.runs import register_twins

    slug = twin_slug(args.name)
    with connect(database_url(settings)) as conn:
        conn.execute("INSERT INTO twins (slug, name) VALUES (%s, %s) ON CONFLICT (slug) DO NOTHING",
                     (slug, args.name.strip()))
    register_twins(settings, [slug])
    print(f"twin {slug} ready (partition added)")
    return 0


def cmd_materialize(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.runs import materialize_twins

    with connect(database_url(settings)) as conn:
        twins = [_known_twin(conn, args.twin)] if args.twin else [slug for slug, _ in list_twins(conn)]
    if not twins:
        raise TwinError("There are no twins yet.", "import some writing first: twin import PATH")
    outcomes = materialize_twins(settings, twins)
    for outcome in outcomes:
        print(outcome.summary_line())
    failed = [outcome for outcome in outcomes if not outcome.success]
    for outcome in failed:
        print(f"error: {outcome.twin}: {outcome.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.runs import train_twin

    with connect(database_url(settings)) as conn:
        twin = _known_twin(conn, args.twin)
    print(f"training {twin} with profile {args.profile} (dataset -> Axolotl LoRA -> evaluation -> promotion)...")
    outcome = train_twin(settings, twin, args.profile, args.max_steps)
    for line in outcome.summary_lines():
        print(line)
    if not outcome.success:
        print(f"error: {twin}: {outcome.error}", file=sys.stderr)
        print("  fix: see the run in the Dagster UI (twin ui) for the full log", file=sys.stderr)
        return 1
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from training.registry import registered_model_name

    with connect(database_url(settings)) as conn:
        twin = _known_twin(conn, args.twin)
        rows = conn.execute(
            """SELECT m.version, m.profile, m.train_steps, m.train_loss, left(m.dataset_fingerprint, 16), m.created_at,
                      e.perplexity, e.reference, e.reference_perplexity, e.attribution_share,
                      e.reference_attribution_share, e.delta, e.promoted,
                      EXISTS (SELECT 1 FROM promotions p WHERE p.registered_model = m.registered_model AND p.version = m.version)
               FROM model_versions m
               LEFT JOIN LATERAL (SELECT * FROM evaluations e WHERE e.registered_model = m.registered_model
                                  AND e.version = m.version ORDER BY e.id DESC LIMIT 1) e ON true
               WHERE m.twin = %s ORDER BY m.version""",
            (twin,),
        ).fetchall()
    if not rows:
        print(f"{twin} has no fine-tuned models yet; run: twin train --twin {twin}")
        return 0
    aliases = _aliases(settings, twin)
    print(f"{registered_model_name(twin)} (MLflow registry)")
    print(f"{'version':>7}  {'aliases':<20} {'profile':<9} {'steps':>5} {'loss':>6}  {'dataset':<16}  {'ppl':>7} {'author':>6} "
          f"{'delta':>6}  vs {'reference':<14} {'ppl':>7} {'author':>6}  gate")
    for version, profile, steps, loss, dataset, _, ppl, reference, ref_ppl, share, ref_share, delta, promoted, _ in rows:
        gate = "-" if promoted is None else ("passed" if promoted else "refused")
        print(f"{version:>7}  {','.join(aliases.get(str(version), [])) or '-':<20} {profile:<9} {steps:>5} "
              f"{(loss or 0):>6.3f}  {dataset:<16}  {_num(ppl):>7} {_pct(share):>6} {_num(delta, 3):>6}  vs "
              f"{reference or '-':<14} {_num(ref_ppl):>7} {_pct(ref_share):>6}  {gate}")
    print("author: share of held-out answers attributed to the author (- when not measurable); "
          "delta: Burrows' Delta to the author's held-out text (lower is closer)")
    return 0


def _aliases(settings: Settings, twin: str) -> dict[str, list[str]]:
    from training.registry import configure_mlflow, registered_model_name

    try:
        model = configure_mlflow(settings).get_registered_model(registered_model_name(twin))
    except TwinError:
        raise
    except Exception:  # the twin has rows but MLflow lost the model: show no aliases
        return {}
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    return aliases


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def cmd_mlflow_ui(args: argparse.Namespace, settings: Settings) -> int:
    from serving.monitoring import TRACE_EXPERIMENT
    from training.registry import EXPERIMENT_PREFIX, configure_mlflow, ensure_experiment

    client = configure_mlflow(settings)
    url = f"http://127.0.0.1:{args.port}"
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.mlflow_tracking_uri,
               "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI on {url} (store {settings.mlflow_tracking_uri}); Ctrl-C stops it")
    experiments = [e for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)
                   and e.name != TRACE_EXPERIMENT]
    for experiment in experiments:  # tags the older ones too, so each opens on its runs table
        ensure_experiment(client, settings, experiment.name.removeprefix(EXPERIMENT_PREFIX))
        print(f"  {experiment.name} runs: {url}/#/experiments/{experiment.experiment_id}/runs")
    print(f"  registered models: {url}/#/models")
    os.execvp(command[0], command)
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from twin.embedding import load_query_encoder
    from twin.query import QueryFilters
    from twin.retrieval import no_results_reason, search

    if not 1 <= args.k <= 100:
        raise TwinError(f"-k must be between 1 and 100 (got {args.k}).", "pass -k 5, for example.")
    with connect(database_url(settings)) as conn:
        twin = _known_twin(conn, args.twin) if args.twin else None
        embedder = load_query_encoder(settings.embedding_model)
        result = search(conn, embedder, args.query, k=args.k, mode=args.mode,
                        filters=QueryFilters(twin=twin, category=args.category), self_query=args.self_query)
        reason = no_results_reason(conn, embedder.model_id, result.filters.twin) if not result.chunks else ""
    if args.json:
        print(json.dumps({"query": result.queries[0], "mode": result.mode, "filters": result.filters.describe(),
                          "notes": list(result.notes), "results": [chunk.as_json() for chunk in result.chunks]},
                         ensure_ascii=False, indent=2))
        return 0
    shown = {name: value for name, value in result.filters.describe().items() if value}
    filters = ", ".join(f"{name} {'..'.join(str(v or '') for v in value) if isinstance(value, list) else value}"
                        for name, value in shown.items()) or "none"
    print(f"{result.mode} search; filters: {filters}")
    for note in result.notes:
        print(f"  note: {note}")
    if not result.chunks:
        print(f"no results: {reason}")
    for rank, chunk in enumerate(result.chunks, start=1):
        _print_hit(rank, chunk)
    print("(similarity: cosine similarity of the chunk to the question)")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from serving.server import serve

    serve(settings, args.host, args.port, args.role)
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from serving.rag import answer_question

    if args.k is not None and not 1 <= args.k <= 20:
        raise TwinError(f"-k must be between 1 and 20 (got {args.k}).", "pass -k 5, for example.")
    result = answer_question(settings, args.question, args.twin, category=args.category, k=args.k,
                             max_tokens=args.max_tokens)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        return 0
    print(f"answered by {result.answered_by}")
    print()
    print(result.answer or "(the model returned no text)")
    print()
    if result.grounded is not None:
        grounded = result.grounded
        supported = sum(1 for sentence in grounded.sentences if sentence.supported)
        print(f"grounding: {supported} of {len(grounded.sentences)} sentences supported by a cited source "
              f"({grounded.grounding:.0%}; citation threshold {CITATION_THRESHOLD} cosine)")
    version = f" v{result.model_version}" if result.model_version else ""
    print(f"sources ({result.model_name}{version}, {result.backend}):")
    if not result.sources:
        from twin.retrieval import RELEVANCE_THRESHOLD, no_results_reason

        with connect(database_url(settings)) as conn:
            reason = no_results_reason(conn, settings.embedding_model, result.twin)
        if reason.startswith("nothing matched"):
            reason = f"no chunk is similar enough to the question (similarity >= {RELEVANCE_THRESHOLD})"
        print(f"  none: {reason}")
    for source in result.sources:
        print(f"  [{source.number}] {source.title} - {source.author} ({source.category}) {source.url}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The whole chain on the sample corpus: import -> features -> dataset -> CPU fine-tune ->
    evaluation -> a cited answer, printed and then served over HTTP."""
    print(f"== 1/6 importing the sample corpus ({SAMPLE_CORPUS}): JSONL, a Handbook warehouse dump, a LinkedIn export")
    cmd_import(argparse.Namespace(path=SAMPLE_CORPUS, prune=False), settings)
    cmd_import_export(argparse.Namespace(path=_demo_linkedin_export(settings), twin=DEMO_EXPORT_AUTHOR,
                                         base_url=None), settings)
    print("== 2/6 materializing raw -> cleaned -> chunks -> embeddings for every twin")
    status = cmd_materialize(argparse.Namespace(twin=None), settings)
    if status:
        return status
    _print_chrome(settings)
    print(f"== 3/6 twin search {DEMO_QUESTION!r} -k 3")
    cmd_search(argparse.Namespace(query=DEMO_QUESTION, twin=None, category=None, mode="hybrid", self_query=True,
                                  k=3, json=False), settings)
    print(f"== 4/6 twin train --twin {DEMO_TWIN}: dataset -> Axolotl LoRA on CPU (cpu-demo) -> evaluation -> promotion")
    status = cmd_train(argparse.Namespace(twin=DEMO_TWIN, profile="cpu-demo", max_steps=None), settings)
    if status:
        return status
    print(f"== 5/6 twin ask {DEMO_QUESTION!r} --twin {DEMO_TWIN}")
    status = cmd_ask(argparse.Namespace(question=DEMO_QUESTION, twin=DEMO_TWIN, category=None, k=3,
                                        max_tokens=DEMO_MAX_TOKENS, json=False), settings)
    if status:
        return status
    print("== 6/6 the same question through the API (twin serve, POST /v1/rag)")
    return _serve_once(settings, DEMO_QUESTION, DEMO_TWIN)


def _demo_linkedin_export(settings: Settings) -> Path:
    """The sample's LinkedIn Shares.csv zipped the way LinkedIn delivers it (the repo keeps it as text)."""
    import zipfile

    archive = settings.home / "demo" / "ines-varga-linkedin.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zip_file:
        zip_file.write(SAMPLE_CORPUS / "ines-varga" / "linkedin" / "Shares.csv", "Shares.csv")
    return archive


def _print_chrome(settings: Settings) -> None:
    """How much page chrome cleaning removed, per twin that had any."""
    from twin.features import chrome_by_family, chrome_summary

    with connect(database_url(settings)) as conn:
        for slug, _ in list_twins(conn):
            summary = chrome_summary(conn, slug)
            if not summary["chrome_lines_removed"]:
                print(f"chrome removed: {slug}: none (from {summary['documents']} documents)")
                continue
            families = ", ".join(f"{family} {lines}" for family, lines in chrome_by_family(conn, slug).items())
            print(f"chrome removed: {slug}: {summary['chrome_lines_removed']} lines from "
                  f"{summary['documents_with_chrome']} of {summary['documents']} documents ({families})")


def _serve_once(settings: Settings, question: str, twin: str) -> int:
    """Start the API on a free loopback port, ask it once, print the cited answer, stop it."""
    import socket
    import threading
    import time

    import requests
    import uvicorn

    from serving.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise TwinError("The API did not start within 60 s.", "run `twin serve` to see its log.")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/v1/rag"
        response = requests.post(url, json={"query": question, "twin": twin, "k": 3, "max_tokens": DEMO_MAX_TOKENS},
                                 timeout=300)
        if response.status_code != 200:
            raise TwinError(f"POST {url} answered {response.status_code}: {response.text[:300]}",
                            "run `twin serve` and check its log.")
        body = response.json()
        print(f"POST {url} -> 200 ({body['backend']}); answered by {body['answered_by']}")
        print(body["answer"].strip() or "(the model returned no text)")
        if body.get("citations"):
            print(f"grounding: {body['citations']['grounding']:.0%} of sentences supported by a cited source")
        for source in body["sources"]:
            print(f"  [{source['number']}] {source['title']} - {source['author']} ({source['category']}) {source['url']}")
    finally:
        server.should_exit = True
        thread.join(15)
    print("\nChat with the twin: .venv/bin/twin serve, then open http://127.0.0.1:8000/ "
          "(Dagster UI: .venv/bin/twin ui; MLflow: .venv/bin/twin mlflow-ui)")
    return 0


def cmd_db_url(args: argparse.Namespace, settings: Settings) -> int:
    url = database_url(settings)
    with connect(url):
        pass  # applies migrations, so psql sees the schema
    print(url)
    return 0


def cmd_embed(args: argparse.Namespace, settings: Settings) -> int:
    from twin.analyst import vector_literal
    from twin.embedding import load_query_encoder
    from twin.retrieval import encode_queries

    print(vector_literal(encode_queries(load_query_encoder(settings.embedding_model), [args.text])[0].tolist()))
    return 0


def cmd_analyst_url(args: argparse.Namespace, settings: Settings) -> int:
    from twin.analyst import analyst_url, enable_analyst_login

    url = database_url(settings)
    given = settings.analyst_password
    with connect(url) as conn:
        password = enable_analyst_login(conn, given, None if settings.database_url else settings.home,
                                        settings.analyst_limits)
    # a password of your own stays out of the printed URL; the embedded server's generated one is in it
    print(analyst_url(url, None if given else password))
    return 0


def cmd_dbt(args: argparse.Namespace, settings: Settings) -> int:
    from twin.dbt import run_dbt

    url = database_url(settings)  # this process holds the embedded server while dbt runs
    with connect(url):
        pass  # migrations: the analytics schema and the analyst role exist
    return run_dbt(args.dbt_args or ["build"], url).returncode


def cmd_db_stop(args: argparse.Namespace, settings: Settings) -> int:
    from twin.database import stop_embedded_postgres

    if settings.database_url:
        raise TwinError("DATABASE_URL is set: the platform does not manage that server.",
                        "stop it with its own tools, or unset DATABASE_URL.")
    stopped = stop_embedded_postgres(embedded_postgres_dir(settings.home))
    print("stopped" if stopped else "not running")
    return 0


HNSW_MAX_DIMENSIONS = 2_000


def cmd_embedding_dim(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.dimension <= HNSW_MAX_DIMENSIONS:
        raise TwinError(
            f"Dimension {args.dimension} is out of range: pgvector's HNSW index over vector(n) takes at most "
            f"{HNSW_MAX_DIMENSIONS:,} dimensions.",
            f"use a model of at most {HNSW_MAX_DIMENSIONS:,} dimensions (or one that can truncate its "
            "embeddings, e.g. Matryoshka models, to 1024).")
    with connect(database_url(settings)) as conn:
        set_embedding_column_dimension(conn, args.dimension)
    print(f"chunks.embedding is now vector({args.dimension}); run `twin materialize` to re-embed")
    return 0


# `dagster dev` is superseded by `dg dev`, which wants a `dg` project layout this repository does
# not have; Dagster's documented way to hide a lifecycle warning is a warnings filter on it.
DEV_HINT_FILTER = "ignore:Function `dev_command` is superseded:FutureWarning"


def ui_command(settings: Settings, port: str) -> tuple[list[str], dict[str, str]]:
    """The `dagster dev` command line and environment: absolute paths everywhere, so the code
    server and run workers (other processes, another working directory) find the same TWIN_HOME
    and training environment as this command did."""
    from orchestration.runs import prepare_dagster_home

    home = prepare_dagster_home(settings)
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    env = {**os.environ, "TWIN_HOME": str(settings.home), "DAGSTER_HOME": str(home),
           "TWIN_TRAINING_PYTHON": settings.training_python,
           # dagster-dbt parses the dbt project on each load under `dagster dev`, with the `dbt` on PATH
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return [sys.executable, "-W", DEV_HINT_FILTER, "-m", "dagster", "dev", "-w", str(workspace), "-p", port], env


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    python = Path(settings.training_python)
    if not python.exists():
        print(f"warning: the training environment's Python {python} does not exist; training runs will fail "
              "(run `make demo`, or set TWIN_TRAINING_PYTHON)", file=sys.stderr)
    command, env = ui_command(settings, args.port)
    os.execve(command[0], command, env)


def _known_twin(conn: psycopg.Connection, name: str) -> str:
    """The slug of a twin given by name or slug; a clear error when there is no such twin."""
    twins = [slug for slug, _ in list_twins(conn)]
    if not twins:
        raise TwinError("There are no twins yet.", "import some writing first: twin import PATH")
    slug = twin_slug(name)
    if slug not in twins:
        raise TwinError(f"Unknown twin {name!r}; known twins: {', '.join(twins)}.",
                        "import their writing first (twin import PATH) or pick a known twin.")
    return slug


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


def _print_hit(rank: int, hit: RetrievedChunk) -> None:
    date = hit.published_at.isoformat() if hit.published_at else "undated"
    snippet = " ".join(hit.text.split())
    snippet = snippet if len(snippet) <= 240 else snippet[:237] + "..."
    print(f"{rank}. [{hit.similarity:.3f}] {hit.title} - {hit.author} ({hit.category}, {date})")
    print(f"   {hit.url}")
    print(f"   {snippet}")


if __name__ == "__main__":
    sys.exit(main())
