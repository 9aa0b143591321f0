"""`twin demo`: the whole chain on the sample corpus, through the same functions as the commands."""

from __future__ import annotations

from pathlib import Path

from orchestration.cli import ingest, models, search
from orchestration.cli.common import REPO_ROOT, platform_database
from twin.errors import TwinError
from twin.raw_store import list_twins
from twin.settings import Settings

SAMPLE_CORPUS = REPO_ROOT / "sample_corpus"
DEMO_QUESTION = "How do I keep Postgres tables from bloating when autovacuum falls behind?"
DEMO_TWIN = "maya-lindqvist"  # the author who wrote about it
DEMO_EXPORT_AUTHOR = "Ines Varga"  # the sample author whose writing arrives as real pages and exports
DEMO_MAX_TOKENS = 160


def demo(settings: Settings) -> int:
    """The whole chain on the sample corpus: import -> features -> dataset -> CPU fine-tune ->
    evaluation -> a cited answer, printed and then served over HTTP."""
    print(f"== 1/6 importing the sample corpus ({SAMPLE_CORPUS}): JSONL, a Handbook warehouse dump, a LinkedIn export")
    ingest.import_path(settings, SAMPLE_CORPUS)
    ingest.import_export(settings, demo_linkedin_export(settings), DEMO_EXPORT_AUTHOR)
    print("== 2/6 materializing raw -> cleaned -> chunks -> embeddings for every twin")
    status = ingest.materialize(settings)
    if status:
        return status
    print_chrome(settings)
    print(f"== 3/6 twin search {DEMO_QUESTION!r} -k 3")
    search.search(settings, DEMO_QUESTION, k=3)
    print(f"== 4/6 twin train --twin {DEMO_TWIN}: dataset -> Axolotl LoRA on CPU (cpu-demo) -> evaluation -> promotion")
    status = models.train(settings, DEMO_TWIN, "cpu-demo")
    if status:
        return status
    print(f"== 5/6 twin ask {DEMO_QUESTION!r} --twin {DEMO_TWIN}")
    status = search.ask(settings, DEMO_QUESTION, twin=DEMO_TWIN, k=3, max_tokens=DEMO_MAX_TOKENS)
    if status:
        return status
    print("== 6/6 the same question through the API (twin serve, POST /v1/rag)")
    return serve_once(settings, DEMO_QUESTION, DEMO_TWIN)


def demo_linkedin_export(settings: Settings) -> Path:
    """The sample's LinkedIn Shares.csv zipped the way LinkedIn delivers it (the repo keeps it as text)."""
    import zipfile

    archive = settings.home / "demo" / "ines-varga-linkedin.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zip_file:
        zip_file.write(SAMPLE_CORPUS / "ines-varga" / "linkedin" / "Shares.csv", "Shares.csv")
    return archive


def print_chrome(settings: Settings) -> None:
    """How much page chrome cleaning removed, per twin that had any."""
    from twin.features import chrome_by_family, chrome_summary

    with platform_database(settings).connect() as conn:
        for slug, _ in list_twins(conn):
            summary = chrome_summary(conn, slug)
            if not summary["chrome_lines_removed"]:
                print(f"chrome removed: {slug}: none (from {summary['documents']} documents)")
                continue
            families = ", ".join(f"{family} {lines}" for family, lines in chrome_by_family(conn, slug).items())
            print(f"chrome removed: {slug}: {summary['chrome_lines_removed']} lines from "
                  f"{summary['documents_with_chrome']} of {summary['documents']} documents ({families})")


def serve_once(settings: Settings, question: str, twin: str) -> int:
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
