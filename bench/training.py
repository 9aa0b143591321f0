"""Training benchmark: writes its figures to docs/benchmarks.md.

  (a) instruct-dataset generation (offline generator): passages/s over the three sample twins;
  (b) the cpu-demo profile through the real path (train_twin_job: dataset -> Axolotl via Pipes ->
      evaluation -> promotion): seconds per optimizer step, tokens/s, and the wall time of each part.

Run: .venv/bin/python bench/training.py   (or `make bench`); about 5 minutes on 2 cores.
     --quick: 1 repeat, 1 optimizer step, 4 short evaluation answers (a check that the script
       works, what `make test` runs; its figures are not measurements)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.report import replace_section  # noqa: E402
from training.artifacts import ArtifactStore  # noqa: E402
from training.dataset_versions import build_instruct_dataset  # noqa: E402
from training.instructions import OfflineInstructionGenerator  # noqa: E402
from twin.database import Database, embedded_postgres_dir, start_embedded_postgres, stop_embedded_postgres  # noqa: E402
from twin.features import clean_documents  # noqa: E402
from twin.sources.jsonl import import_jsonl  # noqa: E402

TWINS = ["maya-lindqvist", "priya-raman", "tomas-herrera"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=None, help="default: the cpu-demo profile's")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    evaluation = None
    if args.quick:
        args.repeats, args.max_steps, evaluation = 1, 1, {"generation_examples": 4, "max_new_tokens": 16}

    home = Path(tempfile.mkdtemp(prefix="twin-bench-training-"))
    os.environ["TWIN_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    url = start_embedded_postgres(embedded_postgres_dir(home))
    try:
        figures = {"date": date.today().isoformat(), "machine": machine()}
        figures.update(dataset_generation(url, home, args.repeats))
        figures.update(cpu_training(args.max_steps, evaluation))
    finally:
        stop_embedded_postgres(embedded_postgres_dir(home))
    write_report(args.output, figures)
    print(json.dumps(figures, indent=2))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores visible, {memory:.0f} GiB RAM, no GPU used; "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def dataset_generation(url: str, home: Path, repeats: int) -> dict[str, object]:
    Database(url).ensure_schema()
    with Database(url).connect() as conn:
        for twin in TWINS:
            import_jsonl(conn, REPO / "sample_corpus" / f"{twin}.jsonl", max_document_bytes=1_000_000)
            clean_documents(conn, twin)
        generator = OfflineInstructionGenerator()
        timings, rows = [], 0
        for repeat in range(repeats):
            conn.execute("DELETE FROM dataset_versions")
            store = ArtifactStore(str(home / f"bench-artifacts-{repeat}"), home / "cache")
            started = time.perf_counter()
            versions = [build_instruct_dataset(conn, twin, generator, store, progress=False) for twin in TWINS]
            timings.append(time.perf_counter() - started)
            rows = sum(v.train_rows + v.test_rows for v in versions)
        conn.execute("DELETE FROM dataset_versions")
    best = min(timings)
    return {"dataset_passages": rows, "dataset_best_s": round(best, 3), "dataset_passages_per_s": round(rows / best, 1)}


def cpu_training(max_steps: int | None, evaluation: dict[str, object] | None) -> dict[str, object]:
    from orchestration.runs import train_twin
    from twin.base_model import base_model_location
    from twin.settings import Settings

    settings = Settings.from_env()
    base_model_location(settings)  # made once before timing (~40 s)
    started = time.perf_counter()
    outcome = train_twin(settings, "tomas-herrera", "cpu-demo", max_steps, evaluation)
    total = time.perf_counter() - started
    if not outcome.success:
        raise SystemExit(f"training failed: {outcome.error}")
    adapter = outcome.metadata["models/twin_adapter"]
    steps = int(adapter["train_steps"])
    runtime = float(adapter["trainer_runtime_s"])
    return {
        "train_steps": steps, "train_process_s": adapter["train_seconds"], "trainer_runtime_s": runtime,
        "s_per_step": round(runtime / steps, 2), "tokens_per_s": adapter["tokens_per_s"],
        "first_loss": round(float(adapter["first_loss"]), 3), "last_loss": round(float(adapter["last_loss"]), 3),
        "job_total_s": round(total, 1), "promoted": "models/champion" in outcome.metadata,
        "eval_report": outcome.metadata.get("evaluation/twin_eval", {}).get("report", ""),
    }


def write_report(path: Path, f: dict[str, object]) -> None:
    section = f"""## Training (`bench/training.py`, {f['date']})

Machine: {f['machine']}.

| figure | value |
|---|---|
| instruct dataset generation, offline generator (3 sample twins, best of repeats) | **{f['dataset_passages_per_s']} passages/s** ({f['dataset_passages']} passages in {f['dataset_best_s']} s) |
| cpu-demo profile: optimizer steps (micro batch 4, sequence length 256, LoRA r 8) | {f['train_steps']} |
| cpu-demo: seconds per step (trainer runtime / steps) | **{f['s_per_step']} s** |
| cpu-demo: tokens/s (tokens seen / trainer runtime) | **{f['tokens_per_s']}** |
| cpu-demo: training loss first -> last step | {f['first_loss']} -> {f['last_loss']} |
| the Axolotl process, start to merged model | {f['train_process_s']} s |
| train_twin_job end to end (dataset, Pipes + Axolotl, merge, MLflow, evaluation, promotion) | {f['job_total_s']} s |

Evaluation of that run (held-out documents of tomas-herrera):

{f['eval_report']}

The `gpu` profile was not measured: no GPU machine was lent to this work.
"""
    replace_section(path, "Training", section)


if __name__ == "__main__":
    main()
