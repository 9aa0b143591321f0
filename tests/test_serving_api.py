"""The serving API end to end: a real uvicorn server, the real transformers backend on SmolLM2
(CPU), the sample corpus in the embedded Postgres, the official `openai` client."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import openai
import pytest

from tests.serving_support import RunningServer
from training.registry import CHAMPION, configure_mlflow, registered_model_name
from twin.database import Database

# (a question whose answer is in one document, that document); phrased unlike its title
CITED = [
    ("How do I keep Postgres tables from bloating when autovacuum falls behind?",
     "https://medium.com/@mayalindqvist/postgres-vacuum-table-bloat-field-guide"),
    ("old player progress fails to load after a patch adds new fields, how to migrate save data",
     "https://medium.com/@priyaraman/versioning-save-files-rust-serde"),
    ("why do parrotfish poop out white sand and why should fishers stop spearing them",
     "https://tomasherrera.blog/the-parrotfish-who-made-the-beach"),
]


@pytest.fixture(scope="module")
def server(serving_server: RunningServer) -> RunningServer:
    return serving_server


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused-without-keys", max_retries=0, timeout=120)


def rag(server: RunningServer, **body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/rag", json={"max_tokens": 4, **body}, timeout=120)


def prompt_log(server: RunningServer, request_id: str) -> dict[str, object]:
    server.runtime.monitor.flush()
    with Database(server.runtime.service.database_url()).connect() as conn:
        cursor = conn.execute("SELECT * FROM prompt_logs WHERE request_id = %s", (request_id,))
        row = cursor.fetchone()
        assert row is not None, f"no prompt_logs row for {request_id}"
        return dict(zip([column.name for column in cursor.description], row, strict=True))


def test_models_lists_the_sample_twins(client: openai.OpenAI) -> None:
    ids = sorted(model.id for model in client.models.list())
    assert ids == ["maya-lindqvist", "priya-raman", "tomas-herrera"]


def test_chat_completion_with_the_openai_client(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="maya-lindqvist", max_tokens=12,
        messages=[{"role": "user", "content": "How should I batch a large backfill in Postgres?"}])
    answer = completion.choices[0].message.content
    assert answer and answer.strip()
    assert 0 < completion.usage.completion_tokens <= 12
    assert completion.choices[0].finish_reason in ("stop", "length")
    sources = completion.model_extra["sources"]
    assert sources and {source["author"] for source in sources} == {"Maya Lindqvist"}
    assert completion.model_extra["backend"] == "transformers"


def test_chat_completion_streams_with_the_openai_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="priya-raman", max_tokens=12, stream=True,
        messages=[{"role": "user", "content": "How do you generate caves for a game level?"}])
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip()
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) > 1
    assert chunks[0].model_extra["sources"][0]["author"] == "Priya Raman"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_retrieval_can_be_turned_off_per_request(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="tomas-herrera", max_tokens=4, extra_body={"retrieval": False},
        messages=[{"role": "user", "content": "Tell me about coral reefs."}])
    assert completion.model_extra["sources"] == []
    assert completion.choices[0].message.content is not None


@pytest.mark.parametrize(("question", "expected_url"), CITED)
def test_rag_cites_the_answering_document(server: RunningServer, question: str, expected_url: str) -> None:
    response = rag(server, query=question)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sources"][0]["url"] == expected_url
    first = body["sources"][0]
    assert first["number"] == 1 and first["title"] and first["snippet"] and 0.3 <= first["similarity"] <= 1
    assert set(first) == {"number", "url", "title", "author", "category", "snippet", "similarity"}


def test_self_query_filters_by_author(server: RunningServer) -> None:
    # the question is about Priya's topic, but names Maya: every source must be Maya's
    response = rag(server, query="What does Maya Lindqvist think about cellular automata caves?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filters"]["twin"] == "maya-lindqvist" and body["twin"] == "maya-lindqvist"
    # Maya never wrote about caves: her chunks are all below the relevance threshold or hers alone
    assert {source["author"] for source in body["sources"]} <= {"Maya Lindqvist"}
    if not body["sources"]:
        assert body["answer"].startswith("I found nothing in Maya Lindqvist's writing on that")
    # and a category word becomes a category filter
    response = rag(server, query="In his posts, what did Tomas say about sea turtle hatchlings?")
    body = response.json()
    assert body["filters"] == {"twin": "tomas-herrera", "category": "post"}
    assert {(s["author"], s["category"]) for s in body["sources"]} == {("Tomás Herrera", "post")}


def test_one_request_runs_self_query_once(server: RunningServer, client: openai.OpenAI,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # the filters are parsed once in RagService.prepare and handed to search, never parsed again
    from twin.self_query import SelfQuery

    questions: list[str] = []
    parse = SelfQuery.parse

    def counted(self: SelfQuery, question: str, today: object = None) -> object:
        questions.append(question)
        return parse(self, question, today)  # type: ignore[arg-type]

    monkeypatch.setattr(SelfQuery, "parse", counted)
    assert rag(server, query="In his posts, what did Tomas say about sea turtle hatchlings?").status_code == 200
    assert len(questions) == 1
    client.chat.completions.create(model="tomas-herrera", max_tokens=4,
                                   messages=[{"role": "user", "content": "What did Tomas write about turtles?"}])
    assert len(questions) == 2


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"query": ""}, 422, "The question is empty"),
    ({"query": "   "}, 422, "The question is empty"),
    ({"query": "x" * 5000}, 422, "the limit is 4000"),
    ({"query": "hello", "max_tokens": 100_000}, 422, "max_tokens must be between 1 and 256"),
    ({"query": "hello", "max_tokens": 0}, 422, "max_tokens must be between 1 and 256"),
    ({"query": "hello", "twin": "nobody-here"}, 404, "Unknown twin 'nobody-here'"),
    ({"query": "hello", "category": "novel"}, 422, "category"),
    ({"query": "hello", "k": 500}, 422, "k: Input should be less than or equal to 20"),
    ({"question": "hello"}, 422, "query: Field required"),
])
def test_bad_requests_get_clear_4xx(server: RunningServer, body: dict, status: int, message: str) -> None:
    response = httpx.post(f"{server.url}/v1/rag", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]


def test_invalid_json_and_bad_chat_requests(server: RunningServer, client: openai.OpenAI) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", content=b'{"model": "maya-lindqvist", ',
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The request body is not valid JSON."
    with pytest.raises(openai.NotFoundError, match="Unknown twin 'ghost'"):
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError, match="last message must be the user's"):
        client.chat.completions.create(model="maya-lindqvist", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError, match="messages"):
        client.chat.completions.create(model="maya-lindqvist", messages=[])


def test_prompt_logs_rows_and_mlflow_traces_are_written(server: RunningServer) -> None:
    response = rag(server, query="What is a watermark in incremental loads?", twin="maya-lindqvist")
    assert response.status_code == 200
    body = response.json()
    row = prompt_log(server, body["request_id"])
    assert row["status"] == "ok" and row["endpoint"] == "/v1/rag" and row["twin"] == "maya-lindqvist"
    assert row["answer"] == body["answer"]
    assert row["model_name"] == "SmolLM2-135M-Instruct" and row["backend"] == "transformers"
    assert row["prompt"].startswith("<|im_start|>system")  # SmolLM2's chat template was applied
    assert "What is a watermark" in row["prompt"] and row["prompt_variables"]["question"].startswith("What is")
    assert row["prompt_template"].startswith("twin-rag-v2")
    assert len(row["retrieved_chunk_ids"]) == len(row["retrieval_scores"]) >= len(body["sources"]) > 0
    assert row["prompt_tokens"] > 50 and row["completion_tokens"] >= 1
    assert row["retrieval_ms"] > 0 and row["generation_ms"] > 0 and row["total_ms"] >= row["generation_ms"]
    mlflow.set_tracking_uri(server.runtime.settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name("twin-serving")
    traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list",
                                  filter_string=f"tags.request_id = '{body['request_id']}'")
    assert len(traces) == 1
    spans = {span.name: span for span in traces[0].data.spans}
    assert set(spans) == {"/v1/rag", "retrieval", "generation"}
    assert spans["generation"].outputs == {"answer": body["answer"]}
    assert len(spans["retrieval"].outputs) == len(row["retrieved_chunk_ids"])


def test_rag_answers_end_at_a_sentence_with_per_sentence_citations(server: RunningServer) -> None:
    response = rag(server, query=CITED[0][0], twin="maya-lindqvist", max_tokens=40)
    assert response.status_code == 200, response.text
    body = response.json()
    answer, citations = body["answer"], body["citations"]
    assert answer == "" or answer.endswith(("…", ".", "!", "?", '"', "'", ")", "]", "`"))  # never mid-word
    numbers = {source["number"] for source in body["sources"]}
    sentences = citations["sentences"]
    for sentence in sentences:
        assert set(sentence["citations"]) <= numbers  # never a source that does not exist
        assert all(f"[{n}]" in sentence["text"] for n in sentence["citations"])
        if sentence["attached"]:
            assert sentence["similarity"] >= citations["threshold"]
    supported = sum(1 for sentence in sentences if sentence["supported"])
    assert citations["grounding"] == pytest.approx(supported / len(sentences) if sentences else 0.0, abs=1e-4)
    assert " ".join(sentence["text"] for sentence in sentences) == answer
    assert prompt_log(server, body["request_id"])["grounding"] == pytest.approx(citations["grounding"], abs=1e-4)

    with httpx.stream("POST", f"{server.url}/v1/rag", timeout=120, json={
            "query": CITED[0][0], "twin": "maya-lindqvist", "max_tokens": 40, "stream": True}) as stream:
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    done = events[-1]
    assert done["type"] == "done" and done["citations"]["grounding"] == pytest.approx(citations["grounding"], abs=1e-4)
    metrics = httpx.get(f"{server.url}/metrics", timeout=60).text
    count = [line for line in metrics.splitlines() if line.startswith("twin_answer_grounding_count")]
    assert count and float(count[0].split()[-1]) >= 2


def test_client_disconnect_mid_stream_stops_generation(server: RunningServer) -> None:
    body = {"query": "Write a long essay about everything you know about Postgres.", "twin": "maya-lindqvist",
            "stream": True, "max_tokens": 200}
    with httpx.stream("POST", f"{server.url}/v1/rag", json=body, timeout=120) as response:
        request_id = response.headers["x-request-id"]
        tokens = 0
        for line in response.iter_lines():
            if '"type": "token"' in line:
                tokens += 1
                if tokens == 2:
                    break  # leaving the block closes the connection
    deadline = time.monotonic() + 30
    row = None
    while time.monotonic() < deadline:
        try:
            row = prompt_log(server, request_id)
            break
        except AssertionError:
            time.sleep(0.2)
    assert row is not None, "the cancelled request was never logged"
    assert row["status"] == "cancelled"
    assert row["completion_tokens"] < 100  # stopped long before max_tokens
    assert server.runtime.gate.inside == 0  # its queue place was given back


def test_32_concurrent_requests_get_200_or_an_honest_429(server: RunningServer) -> None:
    def ask(index: int) -> tuple[int, str]:
        response = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "model": "priya-raman", "max_tokens": 4, "retrieval": index % 2 == 0,
            "messages": [{"role": "user", "content": f"Question number {index}: what is a roguelike?"}]})
        return response.status_code, response.text

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(ask, range(32)))
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 429}, results
    assert statuses.count(200) >= server.runtime.gate.limit
    for status, text in results:
        if status == 429:
            assert "generation queue is full" in json.loads(text)["error"]["message"]
    assert server.runtime.gate.inside == 0


def test_readyz_and_metrics(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=60).json()["status"] == "ok"
    ready = httpx.get(f"{server.url}/readyz", timeout=60)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    rag(server, query="How do I test SQL?", twin="maya-lindqvist")
    metrics = httpx.get(f"{server.url}/metrics", timeout=60).text
    for name in ("twin_request_seconds_bucket", "twin_retrieval_seconds_count",
                 "twin_generated_tokens_total", "twin_generation_tokens_per_second_bucket"):
        assert name in metrics
    generated = [line for line in metrics.splitlines() if line.startswith("twin_generated_tokens_total{")]
    assert generated and float(generated[0].split()[-1]) > 0


def test_champion_alias_move_is_served_without_restart(server: RunningServer, base_model: str, tmp_path: Path) -> None:
    # a "fine-tuned" version: the base model's files under a new folder, registered as champion
    folder = tmp_path / "champion"
    folder.mkdir()
    for file in Path(base_model).iterdir():
        if file.is_file():
            (folder / file.name).symlink_to(file)
    client = configure_mlflow(server.runtime.settings)
    name = registered_model_name("tomas-herrera")
    client.create_registered_model(name)
    version = client.create_model_version(name, source=str(folder))
    before = rag(server, query="What happens to reefs in a heat wave?", twin="tomas-herrera").json()
    client.set_registered_model_alias(name, CHAMPION, version.version)
    try:
        time.sleep(server.runtime.config.model_check_ttl_s + 0.1)
        after = rag(server, query="What happens to reefs in a heat wave?", twin="tomas-herrera").json()
        assert before["model"] == "SmolLM2-135M-Instruct" and before["model_version"] is None
        assert before["answered_by"] == ("Tomás Herrera (tomas-herrera), with the base model SmolLM2-135M-Instruct: "
                                         "this twin has no fine-tuned champion yet")
        assert after["model"] == name and after["model_version"] == str(version.version)
        assert after["answered_by"] == f"Tomás Herrera (tomas-herrera), with {name} v{version.version} (champion)"
        assert prompt_log(server, after["request_id"])["model_alias"] == CHAMPION
    finally:
        client.delete_registered_model(name)
    time.sleep(server.runtime.config.model_check_ttl_s + 0.1)
    shutil.rmtree(folder)


def test_an_answer_without_a_twin_says_the_base_model_answers(server: RunningServer, client: openai.OpenAI) -> None:
    body = rag(server, query="What is a good way to learn a new programming language?").json()
    assert body["twin"] is None and body["model_version"] is None
    assert body["answered_by"].startswith("no twin: none was chosen and the question names no author, "
                                          "so the base model SmolLM2-135M-Instruct answers")
    completion = client.chat.completions.create(model="maya-lindqvist", max_tokens=4,
                                                messages=[{"role": "user", "content": "Hello"}])
    extra = completion.model_extra
    assert extra["twin"] == "maya-lindqvist" and extra["answered_by"].startswith("Maya Lindqvist (maya-lindqvist)")


def test_query_expansion_searches_the_llm_variants_too(server: RunningServer) -> None:
    response = rag(server, query="How do I make procedural caves feel connected?", twin="priya-raman", expand=2)
    assert response.status_code == 200, response.text
    row = prompt_log(server, response.json()["request_id"])
    queries = row["prompt_variables"]["queries"]
    assert queries[0] == "How do I make procedural caves feel connected?"
    assert 1 <= len(queries) <= 3 and all(isinstance(query, str) and query for query in queries)
    assert {source["author"] for source in response.json()["sources"]} == {"Priya Raman"}


def test_an_off_topic_question_says_nothing_was_found_instead_of_answering(server: RunningServer) -> None:
    response = rag(server, query="Give me a recipe for banana bread", twin="maya-lindqvist")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sources"] == [] and body["answer"].startswith("I found nothing in Maya Lindqvist's writing on that")
    row = prompt_log(server, body["request_id"])
    assert row["status"] == "ok" and row["retrieved_chunk_ids"] == [] and row["retrieval_scores"] == []
    assert row["completion_tokens"] >= 1 and row["answer"] == body["answer"]  # logged, so the mart counts it
    chat = rag(server, query="Give me a recipe for banana bread", twin="maya-lindqvist", stream=True)
    assert "I found nothing in Maya Lindqvist" in chat.text
