import json

import pytest

from orchestration.cli import main

# (question a reader might ask, the document that answers it); none copies a title
QUERIES = [
    ("How do I keep Postgres tables from bloating when autovacuum falls behind?",
     "https://medium.com/@mayalindqvist/postgres-vacuum-table-bloat-field-guide"),
    ("how do I reliably publish Kafka events when a database commit and the message send can fail independently",
     "https://mayalindqvist.substack.com/p/outbox-pattern-logical-replication"),
    ("daylight saving switch in March causes a doubled hour in hourly dashboards",
     "https://medium.com/@mayalindqvist/timezone-bugs-in-data-pipelines"),
    ("how do I stop procedurally generated cave levels from leaving sealed-off pockets the player can't reach",
     "https://medium.com/@priyaraman/cellular-automata-caves-from-noise"),
    ("old player progress fails to load after a patch adds new fields, how to migrate save data",
     "https://medium.com/@priyaraman/versioning-save-files-rust-serde"),
    ("my ships path straight through islands near the map edge, offset vs axial coordinate conversion bug",
     "https://medium.com/@priyaraman/astar-pathfinding-hex-grids"),
    ("why do parrotfish poop out white sand and why should fishers stop spearing them",
     "https://tomasherrera.blog/the-parrotfish-who-made-the-beach"),
    ("sex of baby sea turtles depends on how hot the nest sand gets",
     "https://mareaviva.substack.com/p/waiting-for-turtles-todos-santos"),
    ("dinoflagellates glowing blue when you wave your hand underwater in the dark",
     "https://tomasherrera.blog/turning-off-the-torch-night-dive"),
]


@pytest.fixture
def sample_env(sample_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", sample_database)
    return sample_database


@pytest.mark.parametrize(("question", "expected_url"), QUERIES)
def test_twin_search_ranks_the_answering_document_first(
    sample_env: str, capsys: pytest.CaptureFixture[str], question: str, expected_url: str
) -> None:
    assert main(["search", question, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3
    assert set(hits[0]) >= {"url", "title", "author", "category", "score", "text"}
    assert hits[0]["url"] == expected_url
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_twin_filter_keeps_results_inside_one_twin(sample_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    # a data-engineering question, restricted to the marine biologist, still returns k of his chunks
    assert main(["search", "postgres vacuum bloat", "--twin", "Tomás Herrera", "-k", "7", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 7 and {hit["author"] for hit in hits} == {"Tomás Herrera"}


def test_human_output_names_title_author_url_and_snippet(sample_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "sea turtle nest temperature", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. [0.")
    assert "Tomás Herrera (article, " in out and "https://mareaviva.substack.com/p/waiting-for-turtles-todos-santos" in out
