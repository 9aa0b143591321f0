"""Instruct datasets: deterministic versions, document-level split, checks, generators, skips."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from training.artifacts import ArtifactStore
from training.dataset_versions import NotEnoughData, build_instruct_dataset, check_dataset, load_snapshot
from training.instructions import LLMEndpoint, LLMInstructionGenerator, OfflineInstructionGenerator, parse_instruction
from training.passages import SourceDocument, split_passages
from twin.features import clean_documents
from twin.sources.jsonl import import_jsonl

REPO = Path(__file__).resolve().parents[1]


def import_twin(conn, slug: str) -> None:
    import_jsonl(conn, REPO / "sample_corpus" / f"{slug}.jsonl", max_document_bytes=1_000_000)
    clean_documents(conn, slug)


def test_same_snapshot_gives_the_same_version_and_an_edit_a_new_one(conn, tmp_path: Path) -> None:
    import_twin(conn, "maya-lindqvist")
    store = ArtifactStore(str(tmp_path / "artifacts"), tmp_path / "cache")
    first = build_instruct_dataset(conn, "maya-lindqvist", OfflineInstructionGenerator(), store, progress=False)
    assert first.created and first.train_rows > 100 and first.test_rows > 0
    again = build_instruct_dataset(conn, "maya-lindqvist", OfflineInstructionGenerator(), store, progress=False)
    assert (again.fingerprint, again.created) == (first.fingerprint, False)
    assert conn.execute("SELECT count(*) FROM dataset_versions").fetchone()[0] == 1

    # a second store from scratch makes byte-identical rows: the generator is deterministic
    other = ArtifactStore(str(tmp_path / "other"), tmp_path / "cache2")
    conn.execute("DELETE FROM dataset_versions")
    rebuilt = build_instruct_dataset(conn, "maya-lindqvist", OfflineInstructionGenerator(), other, progress=False)
    assert rebuilt.fingerprint == first.fingerprint
    assert pq.read_table(rebuilt.local_dir / "train.parquet").to_pylist() == pq.read_table(first.local_dir / "train.parquet").to_pylist()

    conn.execute("UPDATE cleaned_documents SET content = content || %s, content_hash = 'edited' "
                 "WHERE document_id = (SELECT min(document_id) FROM cleaned_documents)", ("\n\nOne more paragraph about vacuum.",))
    edited = build_instruct_dataset(conn, "maya-lindqvist", OfflineInstructionGenerator(), other, progress=False)
    assert edited.created and edited.fingerprint != first.fingerprint
    lineage = conn.execute("SELECT count(DISTINCT fingerprint), count(*) FROM dataset_documents").fetchone()
    assert lineage == (2, 2 * first.documents)


def test_split_is_by_document_and_every_check_passes(conn, tmp_path: Path) -> None:
    import_twin(conn, "tomas-herrera")
    version = build_instruct_dataset(conn, "tomas-herrera", OfflineInstructionGenerator(),
                                     ArtifactStore(str(tmp_path), tmp_path / "c"), progress=False)
    train = pq.read_table(version.local_dir / "train.parquet").to_pylist()
    test = pq.read_table(version.local_dir / "test.parquet").to_pylist()
    assert {r["document_id"] for r in train}.isdisjoint({r["document_id"] for r in test})
    assert len({r["document_id"] for r in test}) == version.test_documents
    assert all(r["messages"][-1]["content"] == r["output"] for r in train + test)  # the author's own words
    splits = dict(conn.execute("SELECT split, count(*) FROM dataset_documents GROUP BY split").fetchall())
    assert splits == {"train": version.documents - version.test_documents, "test": version.test_documents}
    assert all(check.passed for check in check_dataset(version.local_dir)), check_dataset(version.local_dir)


def test_checks_catch_leakage_duplicates_and_empty_answers(conn, tmp_path: Path) -> None:
    import_twin(conn, "priya-raman")
    version = build_instruct_dataset(conn, "priya-raman", OfflineInstructionGenerator(),
                                     ArtifactStore(str(tmp_path), tmp_path / "c"), progress=False)
    from datasets import Dataset

    train = pq.read_table(version.local_dir / "train.parquet").to_pylist()
    test = pq.read_table(version.local_dir / "test.parquet").to_pylist()
    broken = train + [test[0], train[0], {**train[1], "output": " ", "messages": [*train[1]["messages"][:2], {"role": "assistant", "content": ""}]}]
    Dataset.from_list(broken).to_parquet(str(version.local_dir / "train.parquet"))
    failed = {check.name for check in check_dataset(version.local_dir) if not check.passed}
    assert failed == {"no_train_test_leakage", "no_duplicate_pairs", "no_empty_fields"}


def test_a_twin_with_too_little_text_is_skipped_with_the_reason(conn, tmp_path: Path) -> None:
    row = json.dumps({"author": "Tiny Writer", "category": "post", "platform": "linkedin",
                      "url": "https://example.com/p/1", "content": "Just one short post about tides and fish."})
    (tmp_path / "tiny.jsonl").write_text(row + "\n")
    import_jsonl(conn, tmp_path / "tiny.jsonl", max_document_bytes=1_000_000)
    clean_documents(conn, "tiny-writer")
    with pytest.raises(NotEnoughData, match="1 cleaned document"):
        build_instruct_dataset(conn, "tiny-writer", OfflineInstructionGenerator(),
                               ArtifactStore(str(tmp_path / "a"), tmp_path / "c"), progress=False)
    assert conn.execute("SELECT count(*) FROM dataset_versions").fetchone()[0] == 0


def test_offline_instructions_use_heading_and_key_phrases() -> None:
    text = "Range partitioning by month keeps the orders table fast. " * 12
    generator = OfflineInstructionGenerator()
    for heading in ("Why partition at all", "Results"):
        document = SourceDocument(1, "https://x/a", "Partitioning a Two-Billion-Row Table", "article", "medium",
                                  f"## {heading}\n\n{text}", "h")
        passage = split_passages(document)[0]
        kind, instruction = generator.instruction_with_kind(passage)
        assert passage.heading == heading and kind in {"question", "continuation", "rewrite"}
        if kind == "question" and heading.startswith("Why"):
            assert instruction == "Why partition at all?"  # a heading that is a question is the question
        else:
            assert "partitioning" in instruction.lower() or "orders" in instruction.lower()


def test_offline_instructions_are_mostly_reader_questions_deterministically(conn, tmp_path: Path) -> None:
    import_twin(conn, "maya-lindqvist")
    version = build_instruct_dataset(conn, "maya-lindqvist", OfflineInstructionGenerator(),
                                     ArtifactStore(str(tmp_path), tmp_path / "c"), progress=False)
    rows = pq.read_table(version.local_dir / "train.parquet").to_pylist()
    mix = json.loads((version.local_dir / "manifest.json").read_text())["instruction_mix"]
    assert mix == version.instruction_mix and sum(mix.values()) == version.train_rows + version.test_rows
    prose = sum(count for kind, count in mix.items() if kind != "code")
    assert 0.6 <= mix["question"] / prose <= 0.9  # questions first, continuation and rewrite kept as a minority
    assert mix["continuation"] + mix["rewrite"] > 0
    questions = [row["instruction"] for row in rows if row["instruction_kind"] == "question"]
    assert all(question.endswith("?") for question in questions)
    assert any(question.startswith("How do I ") for question in questions)
    assert not any("discuss" in question for question in questions)
    # deterministic: a second generator writes the same instructions for the same passages
    passages = [p for d in load_snapshot(conn, "maya-lindqvist") for p in split_passages(d)]
    first = [(i.kind, i.instruction) for i in OfflineInstructionGenerator().generate(passages).instructions]
    assert first == [(i.kind, i.instruction) for i in OfflineInstructionGenerator().generate(passages).instructions]


def test_the_training_data_has_the_system_prompt_serving_answers_with(conn, tmp_path: Path) -> None:
    from serving.prompts import plain_messages, rag_messages
    from training.evaluation import load_examples

    import_twin(conn, "priya-raman")
    version = build_instruct_dataset(conn, "priya-raman", OfflineInstructionGenerator(),
                                     ArtifactStore(str(tmp_path), tmp_path / "c"), progress=False)
    author = conn.execute("SELECT DISTINCT author FROM cleaned_documents WHERE twin = 'priya-raman'").fetchone()[0]
    rows = pq.read_table(version.local_dir / "train.parquet").to_pylist()
    systems = {row["messages"][0]["content"] for row in rows}
    served = plain_messages(author, [{"role": "user", "content": "How do you plan a sprint?"}])[0]
    assert systems == {served["content"]} and served["role"] == "system" and author in served["content"]
    assert rag_messages(author, "[1] a source", "How do you plan a sprint?")[0]["content"].startswith(served["content"])
    assert load_examples(version.local_dir)[0].prompt[0] == {"role": "system", "content": served["content"]}  # evaluation too


class _FlakyEndpoint(BaseHTTPRequestHandler):
    """A real HTTP server speaking the OpenAI chat format: good JSON, malformed JSON, or 500."""

    calls: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        passage = body["messages"][0]["content"]
        _FlakyEndpoint.calls.append(passage)
        if "BROKEN" in passage:
            content = "Sure! Here is an instruction without any JSON"
        elif "DOWN" in passage:
            self.send_response(500)
            self.end_headers()
            return
        else:
            content = '```json\n{"instruction": "Describe the reef at dawn."}\n```'
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_llm_generator_retries_then_records_per_passage_failures() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        generator = LLMInstructionGenerator(LLMEndpoint(
            base_url=f"http://127.0.0.1:{server.server_port}/v1", model="twin", retries=2, backoff_s=0.01, timeout_s=5))
        documents = [SourceDocument(i, f"https://x/{i}", f"T{i}", "post", "linkedin", text, "h") for i, text in
                     enumerate(["A calm post about the reef at dawn and the fish that wake early " * 3,
                                "BROKEN reply expected for this long enough post about kelp forests " * 3,
                                "DOWN server expected for this long enough post about sea urchins " * 3])]
        result = generator.generate([p for d in documents for p in split_passages(d)])
    finally:
        server.shutdown()
    assert [i.instruction for i in result.instructions] == ["Describe the reef at dawn."]
    reasons = {f.passage.document.url: f.reason for f in result.failures}
    assert "malformed reply" in reasons["https://x/1"] and "HTTP 500" in reasons["https://x/2"]
    assert sum("BROKEN" in c for c in _FlakyEndpoint.calls) == 2  # retried


def test_parse_instruction_refuses_replies_without_an_instruction() -> None:
    assert parse_instruction('{"instruction": " Write it. "}') == "Write it."
    for bad in ("no json", '{"instruction": ""}', '{"other": "x"}'):
        with pytest.raises(ValueError):
            parse_instruction(bad)


def test_dataset_versions_go_to_s3_and_come_back(conn, tmp_path: Path, monkeypatch) -> None:
    """TWIN_ARTIFACTS_URI=s3://...: written locally, uploaded, and fetched again into an empty cache."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        client.create_bucket(Bucket="twin-artifacts")
        import_twin(conn, "tomas-herrera")
        store = ArtifactStore("s3://twin-artifacts/prod", tmp_path / "cache", client)
        version = build_instruct_dataset(conn, "tomas-herrera", OfflineInstructionGenerator(), store, progress=False)
        assert version.uri == f"s3://twin-artifacts/prod/datasets/tomas-herrera/instruct/{version.short}"
        keys = {item["Key"] for item in client.list_objects_v2(Bucket="twin-artifacts")["Contents"]}
        assert {f"prod/datasets/tomas-herrera/instruct/{version.short}/{name}" for name in
                ("train.parquet", "test.parquet", "manifest.json")} == keys
        fresh = ArtifactStore("s3://twin-artifacts/prod", tmp_path / "empty-cache", client)
        again = build_instruct_dataset(conn, "tomas-herrera", OfflineInstructionGenerator(), fresh, progress=False)
        assert not again.created and (again.local_dir / "train.parquet").read_bytes() == (version.local_dir / "train.parquet").read_bytes()
    finally:
        server.stop()


def test_the_asset_skips_a_small_twin_with_an_observation(conn, database_url: str, twin_home: Path, tmp_path: Path) -> None:
    import dagster as dg
    from dagster_aws.s3 import S3Resource

    from assets.datasets import instruct_dataset
    from resources import PostgresResource, TrainingResource

    for index in range(2):
        row = json.dumps({"author": "Tiny Writer", "category": "post", "platform": "linkedin",
                          "url": f"https://example.com/p/{index}", "content": f"Post {index} about tides and fish, short."})
        (tmp_path / f"tiny{index}.jsonl").write_text(row + "\n")
        import_jsonl(conn, tmp_path / f"tiny{index}.jsonl", max_document_bytes=1_000_000)
    clean_documents(conn, "tiny-writer")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("twins", ["tiny-writer"])
        result = dg.materialize([instruct_dataset], partition_key="tiny-writer", instance=instance, resources={
            "postgres": PostgresResource(twin_home=str(twin_home), database_url=database_url),
            "training": TrainingResource(twin_home=str(tmp_path / "home")), "s3": S3Resource()})
        assert result.success
        assert result.get_asset_materialization_events() == []
        observation = result.get_asset_observation_events()[0].event_specific_data.asset_observation
        assert "training and" in observation.metadata["skipped"].value and "Import more" in observation.metadata["fix"].value


def test_preference_pairs_take_the_authors_passage_as_chosen(conn, tmp_path: Path, base_model: str) -> None:
    from training.preference import build_preference_dataset

    import_twin(conn, "priya-raman")
    store = ArtifactStore(str(tmp_path), tmp_path / "c")
    instruct = build_instruct_dataset(conn, "priya-raman", OfflineInstructionGenerator(), store, progress=False)
    version = build_preference_dataset(conn, "priya-raman", store, base_model, max_pairs=3, max_new_tokens=12)
    pairs = pq.read_table(version.local_dir / "train.parquet").to_pylist()
    train = {row["instruction"]: row["output"] for row in pq.read_table(instruct.local_dir / "train.parquet").to_pylist()}
    assert len(pairs) == 3 and all(train[p["prompt"]] == p["chosen"] != p["rejected"] and p["rejected"] for p in pairs)
    again = build_preference_dataset(conn, "priya-raman", store, base_model, max_pairs=3, max_new_tokens=12)
    assert (again.fingerprint, again.created) == (version.fingerprint, False)
    kinds = conn.execute("SELECT kind, train_rows FROM dataset_versions ORDER BY kind").fetchall()
    assert kinds == [("instruct", instruct.train_rows), ("preference", 3)]


def test_question_topics_are_names_or_repeated_phrases_not_sentence_openers() -> None:
    generator = OfflineInstructionGenerator()
    # "Dropping" and "Missed" open list items and sentences; "Lanternmoss" is a name used mid-sentence
    text = ("We shipped the demo of Lanternmoss in May.\n\n- Dropping frames on the old laptops.\n"
            "- Missed deadlines, twice. The art team loved Lanternmoss anyway, and so did I.")
    assert generator.question_topic(text) == "Lanternmoss"
    assert generator.question_topic("Dropping things. Missed things. Then we rested.") is None
    # a repeated two-word phrase beats a single word
    assert generator.question_topic("Table bloat grows quietly. We measured table bloat weekly. table bloat won.") \
        == "table bloat"


def test_how_to_questions_skip_sentences_that_lean_on_context() -> None:
    from training.instructions import _how_to_sentences

    steps = _how_to_sentences("See it in the logs first. Set autovacuum_vacuum_scale_factor to 0.01 on big tables. "
                              "Ask me how I know this hurts.")
    assert steps == ["set autovacuum_vacuum_scale_factor to 0.01 on big tables"]
