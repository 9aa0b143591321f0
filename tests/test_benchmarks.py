"""Every bench/ script runs, in its quick mode, on every `make test`: a benchmark that no longer
starts (a renamed function, a resource the assets now need) fails here instead of on the day its
figures are needed. Quick runs write to a scratch file, never docs/benchmarks.md; their figures
are not measurements and nothing here looks at how fast anything was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (script, quick arguments, what its output must contain); {out} is the scratch report file
QUICK_RUNS = [
    ("cleaning.py", ["--quick"], "chrome"),
    ("crawl.py", ["--pages", "12", "--delay", "0.05", "--limited-pages", "3"], "limit_held"),
    ("imports.py", ["--posts", "60", "--files", "8"], "per_s"),
    ("feature_pipeline.py", ["--quick", "--output", "{out}"], "b_over_a"),
    ("cli.py", ["--runs", "1", "--output", "{out}"], "twin search"),
    ("serving.py", ["--requests-per-client", "1", "--output", "{out}"], "## Serving"),
    ("training.py", ["--quick", "--output", "{out}"], "## Training"),
    ("twin_quality.py", ["--quick", "--output", "{out}"], "## Twin quality"),
    ("topology.py", ["--quick"], '"most_in_progress"'),
]
# these start Axolotl (one optimizer step) or the whole topology: minutes even in quick mode
TRAINS = {"training.py", "twin_quality.py", "topology.py"}
COVERED_ELSEWHERE = {"retrieval.py": "tests/test_bench_retrieval.py"}


def run_bench(script: str, arguments: list[str], tmp_path: Path, timeout_s: int = 900) -> tuple[str, Path]:
    out = tmp_path / "benchmarks.md"
    env = {key: value for key, value in os.environ.items()
           if key not in {"TWIN_HOME", "DAGSTER_HOME", "DATABASE_URL", "MLFLOW_TRACKING_URI", "TWIN_PROFILES"}}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *[a.replace("{out}", str(out)) for a in arguments]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"bench/{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout, out


@pytest.mark.parametrize(("script", "arguments", "expected"), QUICK_RUNS, ids=[run[0] for run in QUICK_RUNS])
def test_each_benchmark_runs_in_quick_mode(script: str, arguments: list[str], expected: str, tmp_path: Path) -> None:
    stdout, out = run_bench(script, arguments, tmp_path, timeout_s=1800 if script in TRAINS else 900)
    written = out.read_text(encoding="utf-8") if out.exists() else ""
    assert expected in stdout + written


def test_every_benchmark_script_is_covered() -> None:
    scripts = {path.name for path in (REPO / "bench").glob("*.py")} - {"__init__.py", "report.py", "pages.py"}
    covered = {run[0] for run in QUICK_RUNS} | set(COVERED_ELSEWHERE)
    assert scripts == covered, f"add a quick run for: {sorted(scripts - covered)}"

