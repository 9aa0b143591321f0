"""Serving rules that need no generation: API keys (401/403), binding without keys, the
database down, no model available, backend choice and the ExLlamaV2 fail-fast, retrieval pieces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.backends.base import choose_backend_name, require_exllamav2
from serving.config import ServingConfig
from serving.context import pack_context
from serving.server import check_bind
from tests.serving_support import serving_config, serving_settings
from twin.api_keys import parse_api_keys
from twin.errors import TwinError
from twin.retrieval import RetrievedChunk, reciprocal_rank_fusion
from twin.self_query import SelfQuery

KEYS = "maya-key-0123456=maya-lindqvist;admin-key-0123456=*"
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def keyed(twin_home: Path, sample_database: str) -> TestClient:
    config = serving_config(api_keys=parse_api_keys(KEYS))
    with TestClient(create_app(serving_settings(twin_home, sample_database), config)) as client:
        yield client


def test_requests_without_a_key_get_401(keyed: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-key-0000000"}):
        response = keyed.post("/v1/rag", json={"query": "hello", "twin": "maya-lindqvist"}, headers=headers)
        assert response.status_code == 401
        assert "API key" in response.json()["error"]["message"]
    assert keyed.get("/v1/models").status_code == 401


def test_a_key_not_allowed_the_twin_gets_403(keyed: TestClient) -> None:
    response = keyed.post("/v1/chat/completions", headers={"Authorization": "Bearer maya-key-0123456"},
                          json={"model": "priya-raman", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This API key is not allowed to use twin 'priya-raman'."
    # the twin found by self-query counts too
    response = keyed.post("/v1/rag", headers={"X-API-Key": "maya-key-0123456"},
                          json={"query": "What does Priya Raman say about caves?"})
    assert response.status_code == 403


def test_models_are_filtered_by_the_key(keyed: TestClient) -> None:
    maya = keyed.get("/v1/models", headers={"Authorization": "Bearer maya-key-0123456"})
    assert [model["id"] for model in maya.json()["data"]] == ["maya-lindqvist"]
    admin = keyed.get("/v1/models", headers={"Authorization": "Bearer admin-key-0123456"})
    assert len(admin.json()["data"]) == 3


def test_api_keys_are_parsed_and_short_keys_refused() -> None:
    config = ServingConfig(api_keys=parse_api_keys(KEYS))
    assert config.key_allows(None, None) == 401
    assert config.key_allows("maya-key-0123456", "maya-lindqvist") == 200
    assert config.key_allows("maya-key-0123456", "tomas-herrera") == 403
    assert config.key_allows("admin-key-0123456", "tomas-herrera") == 200
    assert ServingConfig().key_allows(None, "anyone") == 200
    with pytest.raises(TwinError, match="shorter than 8"):
        parse_api_keys("abc=*")


def test_without_keys_only_loopback_is_allowed() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, ServingConfig())
    with pytest.raises(TwinError, match="Refusing to listen on 0.0.0.0 without API keys"):
        check_bind("0.0.0.0", ServingConfig())
    check_bind("0.0.0.0", ServingConfig(api_keys=parse_api_keys(KEYS)))


def test_database_down_gives_503_from_readyz_and_requests(twin_home: Path, tmp_path: Path) -> None:
    settings = serving_settings(twin_home, f"postgresql://twin@/twin?host={tmp_path}/no-server-here")
    with TestClient(create_app(settings, serving_config())) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable" and "Cannot connect to PostgreSQL" in ready.json()["error"]
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        response = client.post("/v1/rag", json={"query": "hello"})
        assert response.status_code == 503
        assert response.json()["error"]["message"].startswith("The database is unavailable")


def test_no_model_available_gives_a_clear_503(twin_home: Path, sample_database: str) -> None:
    settings = replace(serving_settings(twin_home, sample_database), base_model="/nonexistent/model")
    with TestClient(create_app(settings, serving_config())) as client:
        response = client.post("/v1/rag", json={"query": "How do I test SQL?", "twin": "maya-lindqvist"})
        assert response.status_code == 503
        message = response.json()["error"]["message"]
        assert message.startswith("No model is available") and "TWIN_BASE_MODEL" in message
        assert client.app.state.runtime.gate.inside == 0
        assert client.get("/readyz").status_code == 200  # the database is fine


def test_auto_backend_is_transformers_without_cuda() -> None:
    expected = "transformers" if NO_CUDA else "exllamav2"
    assert choose_backend_name("auto", has_exl2_weights=False, model_endpoint=None) == "transformers"
    if NO_CUDA:
        assert choose_backend_name("auto", has_exl2_weights=True, model_endpoint=None) == expected
    assert choose_backend_name("auto", has_exl2_weights=True, model_endpoint="http://gpu:8001") == "remote"
    assert choose_backend_name("transformers", has_exl2_weights=True, model_endpoint=None) == "transformers"
    with pytest.raises(TwinError, match="needs a model endpoint") as error:
        choose_backend_name("remote", has_exl2_weights=False, model_endpoint=None)
    assert "TWIN_MODEL_ENDPOINT" in error.value.fix


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on hosts without CUDA")
def test_exllamav2_fails_fast_without_cuda_and_never_imports_it() -> None:
    import sys

    with pytest.raises(TwinError, match="needs a CUDA GPU and this host has none") as error:
        choose_backend_name("exllamav2", has_exl2_weights=True, model_endpoint=None)
    assert "TWIN_GENERATION_BACKEND=transformers" in error.value.fix
    with pytest.raises(TwinError):
        require_exllamav2()
    import serving.backends.exllamav2_backend  # noqa: F401 - safe to import anywhere

    assert "exllamav2" not in sys.modules


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    scores = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "d"], ["b"]])
    assert max(scores, key=scores.__getitem__) == "b"
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["d"] == pytest.approx(1 / 63)


def test_self_query_finds_authors_and_categories() -> None:
    ruler = SelfQuery([("maya-lindqvist", "Maya Lindqvist"), ("tomas-herrera", "Tomás Herrera"),
                       ("maya-smith", "Maya Smith")])
    found = ruler.filters("What did tomas herrera write in his posts about turtles?")
    assert (found.twin, found.category) == ("tomas-herrera", "post")
    assert ruler.filters("Tomás's take on kelp").twin == "tomas-herrera"
    assert ruler.filters("Lindqvist on backfills").twin == "maya-lindqvist"
    assert ruler.filters("What does Maya think?").twin is None  # two Mayas: ambiguous, no filter
    assert ruler.filters("show me the repo code for watermarks").category == "repository"
    assert ruler.filters("How do I vacuum a table?") == type(found)()
    ambiguous = ruler.parse("What does Maya think?")
    assert ambiguous.notes == ("'Maya' names more than one twin (maya-lindqvist, maya-smith): no author filter",)


@pytest.mark.parametrize(("question", "period"), [
    ("What did Maya write in 2023?", ("2023-01-01", "2023-12-31")),
    ("posts from March 2024 about caves", ("2024-03-01", "2024-03-31")),
    ("anything since 2024?", ("2024-01-01", None)),
    ("essays after 2023", ("2024-01-01", None)),
    ("what came before 2023", (None, "2022-12-31")),
    ("between 2022 and 2023", ("2022-01-01", "2023-12-31")),
    ("what did she write last year", ("2024-01-01", "2024-12-31")),
    ("this year so far", ("2025-01-01", "2025-06-15")),
])
def test_self_query_finds_a_date_range(question: str, period: tuple[str | None, str | None]) -> None:
    from datetime import date

    found = SelfQuery([("maya-lindqvist", "Maya Lindqvist")]).parse(question, today=date(2025, 6, 15))
    shown = found.filters.describe()["published"]
    assert tuple(shown) == period and found.notes == ()


@pytest.mark.parametrize("question", ["coral in the year 3023", "kelp last decade", "between 2024 and 2021",
                                      "what did she do recently"])
def test_a_date_phrase_that_cannot_be_resolved_gives_a_note_and_no_filter(question: str) -> None:
    from datetime import date

    found = SelfQuery([("maya-lindqvist", "Maya Lindqvist")]).parse(question, today=date(2025, 6, 15))
    assert "published" not in found.filters.describe()
    assert len(found.notes) == 1 and "no date filter" in found.notes[0]


def test_context_is_packed_to_the_budget_and_numbered_per_document() -> None:
    def chunk(i: int, url: str, words: int) -> RetrievedChunk:
        return RetrievedChunk(f"id-{i}", url, f"T{url}", "A", "article", None, "word " * words, 1.0 - i / 10)

    chunks = [chunk(0, "u1", 50), chunk(1, "u2", 500), chunk(2, "u1", 40), chunk(3, "u3", 30)]
    packed = pack_context(chunks, k=5, token_budget=200, count_tokens=lambda text: len(text.split()))
    assert [c.chunk_id for c in packed.chunks] == ["id-0", "id-2", "id-3"]  # id-1 does not fit
    assert [(s.number, s.url) for s in packed.sources] == [(1, "u1"), (2, "u3")]
    assert packed.tokens <= 200
    assert packed.text.startswith("[1] Tu1") and "[2] Tu3" in packed.text
    assert len(pack_context(chunks, k=1, token_budget=10_000, count_tokens=len).chunks) == 1


def test_the_serving_package_never_imports_dagster() -> None:
    import subprocess
    import sys

    code = ("import sys, serving.app, serving.server, serving.rag, serving.quantization; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'dagster', 'assets', 'orchestration', 'resources', 'exllamav2'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_rerank_orders_by_the_cross_encoder_when_one_is_configured() -> None:
    # no cross-encoder is bundled: MiniLM's encoder with a fresh one-logit head checks the plumbing
    from twin.embedding import resolve_model_location
    from twin.retrieval import load_reranker, rerank
    from twin.settings import DEFAULT_EMBEDDING_MODEL

    model = resolve_model_location(DEFAULT_EMBEDDING_MODEL)
    chunks = [RetrievedChunk(f"id-{i}", f"u{i}", "t", "A", "post", None, text, 0.5 - i / 10)
              for i, text in enumerate(["tide pools at dawn", "vacuum and dead tuples", "hex grid pathfinding"])]
    reranked = rerank(model, "postgres bloat", chunks)
    expected = load_reranker(model).predict([("postgres bloat", chunk.text) for chunk in chunks])
    assert [chunk.chunk_id for chunk in reranked] == [f"id-{i}" for i in sorted(range(3), key=lambda i: -expected[i])]
    assert {chunk.chunk_id: chunk.similarity for chunk in reranked} == {"id-0": 0.5, "id-1": 0.4, "id-2": 0.3}
