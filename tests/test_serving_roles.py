"""The model service and the RAG service run apart: `--role model` generates only, `--role rag`
retrieves and prompts here and generates through TWIN_MODEL_ENDPOINT. Also `twin ask`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestration.cli import main
from serving.app import create_app
from tests.serving_support import RunningServer, serving_config, serving_settings, start_server
from twin.database import Database


@pytest.fixture(scope="module")
def model_service(twin_home: Path, base_model: str) -> Iterator[RunningServer]:
    # the model host has no database: its settings point nowhere usable, and it must not care
    settings = serving_settings(twin_home, "postgresql://nobody@/none?host=/nonexistent")
    running = start_server(settings, serving_config(), role="model")
    yield running
    running.stop()


def test_model_role_serves_generation_only(model_service: RunningServer) -> None:
    assert httpx.get(f"{model_service.url}/readyz", timeout=60).json()["status"] == "ready"
    assert httpx.post(f"{model_service.url}/v1/rag", json={"query": "hi"}, timeout=60).status_code == 404
    assert "base" in [m["id"] for m in httpx.get(f"{model_service.url}/v1/models", timeout=60).json()["data"]]
    response = httpx.post(f"{model_service.url}/v1/chat/completions", timeout=120, json={
        "model": "base", "max_tokens": 4, "messages": [{"role": "user", "content": "Say hello."}]})
    assert response.status_code == 200, response.text
    assert response.json()["sources"] == [] and response.json()["backend"] == "transformers"


def test_rag_role_generates_through_the_model_endpoint(
    model_service: RunningServer, twin_home: Path, sample_database: str
) -> None:
    config = serving_config(backend="remote", model_endpoint=model_service.url)
    with TestClient(create_app(serving_settings(twin_home, sample_database), config, role="rag")) as client:
        response = client.post("/v1/rag", json={
            "query": "why do parrotfish poop out white sand?", "twin": "tomas-herrera", "max_tokens": 6})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["backend"] == "remote" and body["answer"]
        assert body["sources"][0]["url"] == "https://tomasherrera.blog/the-parrotfish-who-made-the-beach"
        runtime = client.app.state.runtime
        runtime.monitor.flush()
        with Database(sample_database).connect() as conn:
            row = conn.execute("SELECT backend, status, prompt FROM prompt_logs WHERE request_id = %s",
                               (body["request_id"],)).fetchone()
        assert row[0] == "remote" and row[1] == "ok" and "parrotfish" in row[2]


def test_rag_role_with_the_model_service_down_says_so(twin_home: Path, sample_database: str) -> None:
    config = serving_config(backend="remote", model_endpoint="http://127.0.0.1:9")
    with TestClient(create_app(serving_settings(twin_home, sample_database), config, role="rag")) as client:
        response = client.post("/v1/rag", json={"query": "What is bloat?", "twin": "maya-lindqvist"})
        assert response.status_code == 503
        message = response.json()["error"]["message"]
        assert "The model service http://127.0.0.1:9 is unreachable" in message and "twin serve --role model" in message
        assert client.app.state.runtime.gate.inside == 0


def test_twin_ask_prints_the_answer_and_numbered_sources(
    sample_database: str, base_model: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", sample_database)
    assert main(["ask", "How do I keep Postgres tables from bloating when autovacuum falls behind?",
                 "--max-tokens", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sources"][0]["author"] == "Maya Lindqvist"
    assert result["sources"][0]["url"] == "https://medium.com/@mayalindqvist/postgres-vacuum-table-bloat-field-guide"
    assert [source["number"] for source in result["sources"]] == list(range(1, len(result["sources"]) + 1))
    assert result["twin"] is None and result["answered_by"].startswith("no twin: none was chosen")
    assert main(["ask", "What is a watermark?", "--twin", "Maya Lindqvist", "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("answered by Maya Lindqvist (maya-lindqvist), with the base model SmolLM2-135M-Instruct: "
                          "this twin has no fine-tuned champion yet\n")
    assert "sources (SmolLM2-135M-Instruct, transformers):" in out and "  [1] " in out
    assert main(["ask", "hello", "--twin", "nobody"]) == 2
    assert "Unknown twin 'nobody'" in capsys.readouterr().err
