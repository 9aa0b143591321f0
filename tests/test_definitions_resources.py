"""The wiring in orchestration/definitions.py itself: the resources it builds from Settings (not a
test's own resource dict) run the feature job end to end, and each carries the setting it was
built from. The other feature tests build their own resources (tests/conftest.py) to point at a
fresh database; this one is how a deployment gets them."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import twin_partitions
from orchestration.definitions import build_definitions
from orchestration.jobs import build_features_job
from twin.database import Database
from twin.settings import Settings


def test_the_definitions_own_resources_run_the_features_job(database_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "wren.jsonl"
    source.write_text(json.dumps({"author": "Wren Park", "category": "post", "platform": "linkedin",
                                  "url": "https://example.com/wren/1", "published_at": "2025-03-01",
                                  "content": "Every migration gets a rollback script before it ships."}) + "\n",
                      encoding="utf-8")
    profiles = tmp_path / "twins.yaml"
    profiles.write_text(f"twins:\n  - name: Wren Park\n    sources:\n      - jsonl: {source}\n", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TWIN_PROFILES", str(profiles))
    monkeypatch.setenv("TWIN_MAX_DOCUMENT_BYTES", "50000")
    settings = Settings.from_env()
    definitions = build_definitions(settings)

    resources = definitions.resources
    assert resources["profiles"].path == str(profiles)
    assert resources["profiles"].max_document_bytes == 50_000
    assert resources["embedding_model"].model == settings.embedding_model
    assert resources["training"].twin_home == str(settings.home)
    assert resources["exl2"].bits == settings.serving.exl2_bits

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(twin_partitions.name, ["wren-park"])
        job = definitions.resolve_job_def(build_features_job.name)
        result = job.execute_in_process(partition_key="wren-park", instance=instance, raise_on_error=False)
    assert result.success, [event.message for event in result.all_events if event.is_failure]
    with Database(database_url).connect() as conn:
        embedded = conn.execute(
            "SELECT count(*) FROM chunks WHERE twin = 'wren-park' AND embedding IS NOT NULL").fetchone()[0]
    assert embedded == 1
