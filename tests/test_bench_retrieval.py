"""bench/retrieval.py in its quick mode (2,000 chunks, a scratch output file), so the benchmark
keeps running; its figures are not asserted on, only that it measured and wrote them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_retrieval_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TWIN_BENCH_CACHE": str(tmp_path / "cache")}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, str(REPO / "bench" / "retrieval.py"), "--quick", "--output", str(output),
                             "--shared-buffers", "256MB"], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    assert "## Retrieval (`bench/retrieval.py`" in report
    assert "(shared_buffers 256MB)" in report  # the server was restarted with the setting asked for
    rows = [line for line in report.splitlines() if line.startswith("| 2,000 |")]
    assert len(rows) == 3 + 1  # three filters, one build row
    assert "**(b) HNSW settings at 2,000 chunks**" in report


def test_the_keyword_leg_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TWIN_BENCH_CACHE": str(tmp_path / "cache")}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, str(REPO / "bench" / "retrieval.py"), "--keyword-only", "--quick",
                             "--output", str(output)], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    assert "## Retrieval: keyword leg (`bench/retrieval.py --keyword-only`" in report
    rows = [line.split("|") for line in report.splitlines() if line.startswith("| 2,000 |")]
    assert len(rows) == 3  # three filters
    assert all(0.0 <= float(row[4]) <= 1.0 for row in rows), rows  # a measured recall in every row
