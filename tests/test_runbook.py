"""docs/runbook.md, procedure by procedure: each test runs the commands the runbook gives, through
`twin` (orchestration/cli/), on the real embedded Postgres, MLflow and embedding model."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestration.cli import main
from serving.app import create_app
from tests.serving_support import serving_config, serving_settings
from tests.test_feature_pipeline import article, write_jsonl
from twin.api_keys import parse_api_keys
from twin.database import Database
from twin.embedding import resolve_model_location
from twin.settings import DEFAULT_EMBEDDING_MODEL

TWIN = "ada-byte"
RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "runbook.md"


@pytest.fixture
def platform(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """One twin whose twins.yaml source is a JSONL file of two articles; a Dagster instance and
    an MLflow store of this test's own."""
    source = write_jsonl(tmp_path / "ada.jsonl", [article(f"https://example.com/{i}", f"Topic {i}") for i in range(2)])
    (tmp_path / "twins.yaml").write_text(f"twins:\n  - name: Ada Byte\n    sources:\n      - jsonl: {source}\n")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TWIN_PROFILES", str(tmp_path / "twins.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("TWIN_EMBEDDING_MODEL", raising=False)
    assert main(["add-twin", "Ada Byte"]) == 0
    yield source


def twin_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    capsys.readouterr()
    status = main(list(argv))
    return status, json.loads(capsys.readouterr().out)


def test_the_runbook_names_a_command_and_a_signal_for_every_procedure() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    sections = [part for part in text.split("\n## ")[1:]]
    assert len(sections) >= 7
    for section in sections:
        assert "**Signal**" in section and "```" in section, section.splitlines()[0]
    for command in ("twin lag", "twin reindex", "twin rollback", "twin db-dump", "twin db-restore",
                    "twin replay-imports", "twin runs", "twin retry", "twin api-keys"):
        assert command in text, command


def test_re_embed_with_a_new_model_then_roll_back(
    platform: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["materialize"]) == 0
    new_model = resolve_model_location(DEFAULT_EMBEDDING_MODEL)  # the same weights under another id
    monkeypatch.setenv("TWIN_EMBEDDING_MODEL", new_model)
    status, (row,) = twin_json(capsys, "lag", "--json")  # the signal: every chunk waits for a vector
    assert row["waiting_embed"] == 2 and row["waiting_embed_chunks"] > 0
    assert main(["materialize"]) == 0
    with Database(database_url).connect() as conn:
        models = {r[0] for r in conn.execute("SELECT DISTINCT embedding_model FROM chunks")}
    assert models == {new_model}
    monkeypatch.delenv("TWIN_EMBEDDING_MODEL")  # roll back: the previous model re-embeds everything
    assert main(["materialize"]) == 0
    with Database(database_url).connect() as conn:
        models = {r[0] for r in conn.execute("SELECT DISTINCT embedding_model FROM chunks")}
    assert models == {DEFAULT_EMBEDDING_MODEL}
    status, (row,) = twin_json(capsys, "lag", "--json")
    assert status == 0 and row["waiting_embed"] == 0


def test_rebuild_the_vector_index(platform: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["materialize"]) == 0
    capsys.readouterr()
    assert main(["reindex"]) == 0
    assert "chunks_embedding_hnsw: rebuilt" in capsys.readouterr().out
    with Database(database_url).connect() as conn:
        valid, = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'chunks_embedding_hnsw'::regclass").fetchone()
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT chunk_id FROM chunks ORDER BY embedding <=> (SELECT embedding FROM chunks LIMIT 1) LIMIT 3"))
    assert valid and "chunks_embedding_hnsw" in plan


def register_versions(settings_uri: str, conn, versions: int) -> None:  # noqa: ANN001
    """Three registered versions of the twin's model promoted one after the other (v1 <- v2 <- v3),
    as models/champion records them; the model files are a folder per version."""
    from mlflow import MlflowClient

    from training.registry import CHAMPION, registered_model_name

    name = registered_model_name(TWIN)
    client = MlflowClient(tracking_uri=settings_uri, registry_uri=settings_uri)
    client.create_registered_model(name)
    for version in range(1, versions + 1):
        client.create_model_version(name, source=f"/models/{version}")
        conn.execute(
            """INSERT INTO model_versions (registered_model, version, twin, mlflow_run_id, dataset_fingerprint,
                   base_model, profile, training_signature, train_steps, train_seconds, model_uri)
               VALUES (%s, %s, %s, 'run', 'fp', 'base', 'cpu-demo', '{}', 1, 1.0, %s)""",
            (name, version, TWIN, f"models:/{name}/{version}"))
        conn.execute("INSERT INTO promotions (registered_model, version, twin, previous_version) VALUES (%s, %s, %s, %s)",
                     (name, version, TWIN, version - 1 or None))
        client.set_registered_model_alias(name, CHAMPION, str(version))


def champion(uri: str) -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("twin-ada-byte", "champion").version)
    except MlflowException:
        return None


def test_roll_the_champion_back(platform: Path, database_url: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["models", "--twin", TWIN]) == 0  # creates the MLflow store's tables
    with Database(database_url).connect() as conn:
        register_versions(uri, conn, 3)
    assert main(["rollback", "--twin", TWIN]) == 0 and champion(uri) == "2"
    assert main(["rollback", "--twin", TWIN]) == 0 and champion(uri) == "1"  # walks back, does not toggle
    assert main(["rollback", "--twin", TWIN, "--to", "3"]) == 0 and champion(uri) == "3"
    assert main(["rollback", "--twin", TWIN, "--to", "9"]) == 2 and champion(uri) == "3"
    assert "no version 9" in capsys.readouterr().err
    with Database(database_url).connect() as conn:
        kinds = [r[0] for r in conn.execute("SELECT kind FROM promotions ORDER BY id")]
    assert kinds == ["promotion"] * 3 + ["rollback"] * 3


def raw_urls(database_url: str) -> list[str]:
    with Database(database_url).connect() as conn:
        return [r[0] for r in conn.execute("SELECT url FROM raw_documents ORDER BY url")]


def test_restore_a_dump_and_converge(platform: Path, database_url: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["materialize"]) == 0
    dump = tmp_path / "backup.dump"
    assert main(["db-dump", str(dump)]) == 0 and dump.stat().st_size > 0
    with platform.open("a", encoding="utf-8") as source:  # written after the backup
        source.write(json.dumps(article("https://example.com/late", "Late topic")) + "\n")
    assert main(["materialize"]) == 0 and len(raw_urls(database_url)) == 3
    assert main(["db-restore", str(dump)]) == 2  # refuses without --yes
    assert main(["db-restore", str(dump), "--yes"]) == 0
    assert raw_urls(database_url) == ["https://example.com/0", "https://example.com/1"]
    assert main(["materialize"]) == 0  # the pipeline re-reads the twin's sources and converges
    assert "https://example.com/late" in raw_urls(database_url)
    status, (row,) = twin_json(capsys, "lag", "--json")
    assert status == 0 and row["waiting_clean"] == row["waiting_chunk"] == row["waiting_embed"] == 0
    assert row["latency_documents"] == 3


def test_replay_the_imports_of_a_period(platform: Path, database_url: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    old = write_jsonl(tmp_path / "old.jsonl", [article("https://example.com/old", "Old")])
    recent = write_jsonl(tmp_path / "recent.jsonl", [article("https://example.com/recent", "Recent")])
    assert main(["import", str(old)]) == 0
    with Database(database_url).connect() as conn:
        conn.execute("UPDATE imports SET started_at = now() - interval '3 days'")
    assert main(["import", str(recent)]) == 0
    with Database(database_url).connect() as conn:  # both imports' documents lost, say by a bad prune
        conn.execute("DELETE FROM raw_documents WHERE url LIKE '%/old' OR url LIKE '%/recent'")
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    capsys.readouterr()
    assert main(["replay-imports", "--since", since, "--dry-run"]) == 0
    assert "1 files to import again" in capsys.readouterr().out and not any("recent" in u for u in raw_urls(database_url))
    assert main(["replay-imports", "--since", since]) == 0
    urls = raw_urls(database_url)
    assert "https://example.com/recent" in urls and "https://example.com/old" not in urls
    with Database(database_url).connect() as conn:
        embedded = conn.execute("SELECT count(*) FROM chunks WHERE url = 'https://example.com/recent' "
                                "AND embedding IS NOT NULL").fetchone()[0]
    assert embedded > 0


def test_find_and_retry_failed_runs(platform: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TWIN_EMBEDDING_MODEL", str(platform.parent / "no-such-model"))
    assert main(["materialize"]) == 1
    capsys.readouterr()
    assert main(["runs"]) == 1
    listing = capsys.readouterr().out
    assert "build_features_job" in listing and "FAILED" in listing and "could not be loaded" in listing
    monkeypatch.delenv("TWIN_EMBEDDING_MODEL")  # the cause is fixed
    assert main(["retry"]) == 0
    # the failed run cleaned the documents; the retry chunks and embeds them
    assert re.search(rf"{TWIN}: documents 0 new / 0 changed / 2 unchanged.*embedded [1-9]", capsys.readouterr().out)
    assert main(["runs"]) == 0
    assert "retried" in capsys.readouterr().out
    assert main(["retry"]) == 0 and "nothing to retry" in capsys.readouterr().out


def test_rotate_api_keys(twin_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    old_key = "old-key-0123456789"
    monkeypatch.setenv("TWIN_API_KEYS", old_key)
    capsys.readouterr()
    assert main(["api-keys", "add"]) == 0
    out, err = capsys.readouterr()
    both = out.strip().removeprefix("TWIN_API_KEYS=")
    new_key = err.split(": ", 1)[1].strip()
    assert [key.key for key in parse_api_keys(both)] == [old_key, new_key]
    monkeypatch.setenv("TWIN_API_KEYS", both)
    old_id = parse_api_keys(old_key)[0].id
    assert main(["api-keys", "list"]) == 0 and old_id in capsys.readouterr().out
    assert main(["api-keys", "revoke", old_id]) == 0
    only_new = capsys.readouterr().out.strip().removeprefix("TWIN_API_KEYS=")
    assert only_new == new_key and old_key not in only_new
    nowhere = serving_settings(twin_home, "postgresql://nobody@/none?host=/nonexistent")

    def status(keys: str, key: str) -> int:
        config = serving_config(api_keys=parse_api_keys(keys))
        with TestClient(create_app(nowhere, config, role="model")) as client:
            return client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code

    assert status(both, old_key) == 200 and status(both, new_key) == 200  # during the switch
    assert status(only_new, old_key) == 401 and status(only_new, new_key) == 200  # after it
