"""Does each twin write like its author? For every sample twin: the whole training chain
(dataset -> Axolotl LoRA -> evaluation -> gate) on a fresh platform, then base vs challenger vs
champion on the held-out documents (perplexity, attribution share, Burrows' Delta, answer
length), the grounding of one served answer, and the training minutes; into docs/benchmarks.md.

Run: .venv/bin/python bench/twin_quality.py [--profile gpu] [--twins maya-lindqvist]
     --quick: one twin, 2 steps, 8 answers per model (a check that the script works, ~6 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import replace_section  # noqa: E402
from bench.training import machine  # noqa: E402

TWINS = ["maya-lindqvist", "priya-raman", "tomas-herrera"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--twins", nargs="*", default=TWINS)
    parser.add_argument("--profile", default="cpu-demo", choices=["cpu-demo", "gpu"])
    parser.add_argument("--max-steps", type=int, default=None, help="default: the profile's")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    twins, evaluation = args.twins, None
    if args.quick:
        twins, args.max_steps, evaluation = twins[:1], 2, {"generation_examples": 8, "max_new_tokens": 32}

    home = Path(tempfile.mkdtemp(prefix="twin-bench-quality-"))
    os.environ["TWIN_HOME"] = str(home)
    for variable in ("DAGSTER_HOME", "DATABASE_URL", "MLFLOW_TRACKING_URI"):
        os.environ.pop(variable, None)
    from orchestration.cli import SAMPLE_CORPUS, main as twin
    from orchestration.runs import train_twin
    from twin.database import connect, database_url, embedded_postgres_dir, stop_embedded_postgres
    from twin.settings import Settings

    settings = Settings.from_env()
    try:
        if twin(["import", str(SAMPLE_CORPUS)]) or twin(["materialize"]):
            raise SystemExit("importing or materializing the sample corpus failed")
        results = []
        for name in twins:
            started = time.perf_counter()
            outcome = train_twin(settings, name, args.profile, args.max_steps, evaluation)
            minutes = (time.perf_counter() - started) / 60
            if not outcome.success:
                raise SystemExit(f"training {name} failed: {outcome.error}")
            with connect(database_url(settings)) as conn:
                report = conn.execute("SELECT report FROM evaluations WHERE twin = %s ORDER BY id DESC LIMIT 1",
                                      (name,)).fetchone()[0]
            adapter = outcome.metadata.get("models/twin_adapter", {})
            results.append({"twin": name, "report": report, "promoted": report["promoted"],
                            "train_minutes": round(float(adapter.get("train_seconds", 0)) / 60, 1),
                            "chain_minutes": round(minutes, 1), "steps": adapter.get("train_steps"),
                            "first_loss": adapter.get("first_loss"), "last_loss": adapter.get("last_loss"),
                            "grounding": served_grounding(settings, name, report)})
            print(json.dumps({k: v for k, v in results[-1].items() if k != "report"}, indent=2))
    finally:
        stop_embedded_postgres(embedded_postgres_dir(home))
    write_report(args.output, args, results)


def served_grounding(settings, twin: str, report: dict) -> float | None:
    """Grounding of the twin's served answer (champion, RAG) to its first held-out prompt."""
    from serving.rag import answer_question

    if not report.get("prompts"):
        return None
    result = answer_question(settings, report["prompts"][0], twin, k=3, max_tokens=120)
    return getattr(result, "grounding", None)


def _cell(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    return f"{value:.0%}" if kind == "share" else f"{value:.3f}" if kind == "num" else f"{value:.0f}"


def write_report(path: Path, args: argparse.Namespace, results: list[dict]) -> None:
    lines = ["| twin | model | perplexity ↓ | attributed to author ↑ | Delta to author ↓ | answer words | gate |",
             "|---|---|---:|---:|---:|---:|---|"]
    for result in results:
        report = result["report"]
        models = [report["base"], report["challenger"]] + (
            [report["reference"]] if report["reference"]["label"] != report["base"]["label"] else [])
        for figures in models:
            gate = ("promoted" if result["promoted"] else "refused") if figures is report["challenger"] else ""
            lines.append(f"| {result['twin']} | {figures['label']} | {figures['perplexity']:.3f} | "
                         f"{_cell(figures['attribution_share'], 'share')} | {_cell(figures['delta'], 'num')} | "
                         f"{_cell(figures['mean_answer_words'], 'words')} | {gate} |")
        lines.append(f"| {result['twin']} | author's held-out text | – | – | {_cell(report['author_delta'], 'num')} | "
                     f"{report['reference_words']:.0f} | |")
    training = ["| twin | steps | loss first -> last | Axolotl minutes | whole chain minutes | held-out answers per model | grounding of one served answer |",
                "|---|---:|---|---:|---:|---:|---:|"]
    for result in results:
        report = result["report"]
        training.append(f"| {result['twin']} | {result['steps']} | {float(result['first_loss'] or 0):.3f} -> "
                        f"{float(result['last_loss'] or 0):.3f} | {result['train_minutes']} | {result['chain_minutes']} | "
                        f"{report['generation_examples']} from {report['held_out_documents']} documents | "
                        f"{_cell(result['grounding'], 'share')} |")
    mode = " (quick mode: 2 steps, 8 short answers; not a measurement)" if args.quick else ""
    section = f"""## Twin quality (`bench/twin_quality.py`, profile `{args.profile}`, {date.today().isoformat()}){mode}

Machine: {machine()}; a shared 2-core machine (other work ran at the same time), so minutes are upper bounds.

Each model answers the same held-out prompts of the twin's own test documents once (greedy); every
figure comes from those answers. "Attributed to author" is the share of answers that the
authorship classifier (character n-grams + function words, trained on every twin's training
split and on the base model's answers to training prompts as the generic voice) gives to the
author; Delta is Burrows' Delta over the 150 most frequent words to the author's held-out text.

{chr(10).join(lines)}

{chr(10).join(training)}
"""
    replace_section(path, f"Twin quality (`bench/twin_quality.py`, profile `{args.profile}`", section)


if __name__ == "__main__":
    main()
