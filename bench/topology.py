"""Topology benchmark: start-up of `twin topology up`, then the sample corpus's twins run by
source_change_sensor through the daemon (QueuedRunCoordinator), with their run times, the most
runs at once, and the lag and source-to-vector latency they leave. Writes docs/benchmarks.md.

Run: .venv/bin/python bench/topology.py [--max-concurrent-runs 2] [--quick]
(--quick: one twin, no report)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402

from bench.report import replace_section  # noqa: E402
from orchestration import topology  # noqa: E402

SAMPLE = {"Maya Lindqvist": "maya-lindqvist.jsonl", "Priya Raman": "priya-raman.jsonl", "Tomás Herrera": "tomas-herrera.jsonl"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-concurrent-runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one twin, no report")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    twins = dict(list(SAMPLE.items())[:1]) if args.quick else SAMPLE
    root = Path(tempfile.mkdtemp(prefix="twin-topology-bench-"))
    lines = ["twins:"] + [f"  - name: {name}\n    sources:\n      - jsonl: {REPO / 'sample_corpus' / file}"
                          for name, file in twins.items()]
    (root / "twins.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.environ["TWIN_PROFILES"] = str(root / "twins.yaml")
    started_at = time.perf_counter()
    running = topology.up(root / "services", max_concurrent_runs=args.max_concurrent_runs)
    startup = time.perf_counter() - started_at
    try:
        env = running.environment()
        subprocess.run([str(Path(sys.executable).with_name("dagster")), "sensor", "start", "source_change_sensor",
                        "-w", str(running.root / "workspace.yaml")], env=env, check=True, capture_output=True)
        sensor_on = time.time()
        os.environ["TWIN_DAGSTER_PG_URL"] = env["TWIN_DAGSTER_PG_URL"]
        instance = dg.DagsterInstance.from_config(str(running.dagster_home))
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="build_features_job"))
            if len([run for run in runs if run.is_finished]) >= len(twins):
                break
            time.sleep(5)
        records = [instance.get_run_record_by_id(run.run_id) for run in runs]
        spans = [(r.start_time, r.end_time) for r in records if r.start_time and r.end_time]
        statuses = sorted({r.dagster_run.status.value for r in records})
        lag = json.loads(subprocess.run([str(Path(sys.executable).with_name("twin")), "lag", "--json"], env=env,
                                        capture_output=True, text=True, check=False).stdout or "[]")
    finally:
        topology.down(root / "services")
    most = max((sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans), default=0)
    first_start = min(s for s, _ in spans) if spans else sensor_on
    last_end = max(e for _, e in spans) if spans else sensor_on
    figures = {
        "startup_s": round(startup, 1), "per_service_s": running.started_seconds, "runs": len(spans),
        "statuses": statuses, "most_at_once": most, "sensor_to_first_run_s": round(first_start - sensor_on, 1),
        "run_s": [round(e - s, 1) for s, e in spans], "makespan_s": round(last_end - first_start, 1),
        "lag": lag,
    }
    print(json.dumps(figures, indent=2))
    if not args.quick:
        write_report(figures, args.max_concurrent_runs)
    return 0 if statuses == ["SUCCESS"] else 1


def write_report(figures: dict, max_runs: int) -> None:  # type: ignore[type-arg]
    services = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in figures["per_service_s"].items())
    latency = "; ".join(f"{row['twin']}: p50 {row['latency_p50_seconds']:.1f} s, p95 {row['latency_p95_seconds']:.1f} s "
                        f"over {row['latency_documents']} documents, waiting after the runs {row['waiting_clean']}"
                        f"/{row['waiting_chunk']}/{row['waiting_embed']}" for row in figures["lag"])
    section = f"""## Topology (`bench/topology.py`, {date.today().isoformat()})

Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, shared with other agents'
test runs while measured; every service a separate process (`twin topology up`).

| figure | value |
|---|---|
| start-up of the whole topology | {figures['startup_s']} s ({services}) |
| sensor on -> first run started | {figures['sensor_to_first_run_s']} s |
| feature runs (sample corpus twins, 34 documents each) | {figures['runs']}, {', '.join(figures['statuses'])} |
| most runs at once (limit {max_runs}) | {figures['most_at_once']} |
| run wall times | {', '.join(f'{s} s' for s in figures['run_s'])} |
| first run start -> last run end | {figures['makespan_s']} s |
| source-to-vector latency (import by the run -> vectors) | {latency} |

The latency counts from the moment the run's raw/documents step stored the document, so it is the
run's own clean + chunk + embed time per document; a document that waits for a run (the sensor's
60 s interval, the queue) adds that wait, which `twin_pipeline_oldest_waiting_seconds` shows.
"""
    replace_section(REPO / "docs" / "benchmarks.md", "Topology", section)


if __name__ == "__main__":
    raise SystemExit(main())
