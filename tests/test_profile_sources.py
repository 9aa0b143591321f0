"""A twin whose profile mixes source kinds, read by raw/documents and carried through the graph."""

import json
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from orchestration.automation import source_change_sensor
from resources import ProfilesResource
from tests.conftest import Pipeline, asset_metadata
from tests.fixtures.exports import build_linkedin_export
from tests.test_git_source import git, repo  # noqa: F401  (the fixture)
from twin.database import Database


def test_a_profile_mixing_jsonl_git_and_an_export_feeds_the_whole_graph(
    pipeline: Pipeline, tmp_path: Path, repo: Path  # noqa: F811
) -> None:
    build_linkedin_export(tmp_path / "exports")
    (tmp_path / "extra.jsonl").write_text(json.dumps({
        "author": "Priya Raman", "category": "article", "platform": "blog", "url": "https://example.com/caves",
        "title": "Caves", "content": "Cellular automata grow caves from noise. " * 20, "published_at": ""}) + "\n")
    profiles = tmp_path / "twins.yaml"
    profiles.write_text("twins:\n  - name: Priya Raman\n    sources:\n"
                        "      - jsonl: extra.jsonl\n"
                        f"      - git: {repo}\n"
                        "      - export: exports/linkedin.zip\n")
    pipeline.profiles_path = profiles
    result = pipeline.run("priya-raman")
    raw = asset_metadata(result, "raw/documents")
    assert raw["articles"] == 1 and raw["posts"] > 0 and raw["repository_files"] > 3
    assert raw["import_rejected"] > 0  # the repository's binary and oversize files, with reasons
    assert "linkedin.zip" in raw["sources"] and str(repo) in raw["sources"]
    with Database(pipeline.database_url).connect() as conn:
        by_category = dict(conn.execute(
            "SELECT category, count(*) FROM chunks WHERE embedding IS NOT NULL GROUP BY category").fetchall())
        reasons = [row[0] for row in conn.execute("SELECT reason FROM import_rejections")]
        code = conn.execute("SELECT content FROM raw_documents WHERE title = 'src/caves.py'").fetchone()[0]
    assert set(by_category) == {"article", "post", "repository"}
    assert any("binary" in reason for reason in reasons)
    assert (repo / "src" / "caves.py").read_text() == code  # whitespace intact end to end

    again = pipeline.run("priya-raman")
    assert asset_metadata(again, "features/embeddings")["embedded"] == 0

    with dg.instance_for_test() as instance:
        def tick(cursor: str | None) -> dg.SensorResult:
            return source_change_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={
                "profiles": ProfilesResource(path=str(profiles)), "s3": S3Resource()}))

        first = tick(None)
        assert [r.partition_key for r in first.run_requests] == ["priya-raman"]
        assert tick(first.cursor).run_requests == []
        (repo / "src" / "new.py").write_text("def grow():\n    return 1\n")
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", "second")
        assert [r.partition_key for r in tick(first.cursor).run_requests] == ["priya-raman"]
