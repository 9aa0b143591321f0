"""Does each twin write like its author? For every sample twin: the whole training chain
(dataset -> Axolotl LoRA -> evaluation -> gate) on a fresh platform, then base vs challenger vs
champion on the held-out documents (perplexity, attribution share, Burrows' Delta, answer
length), the grounding of one served answer, and the training minutes; into docs/benchmarks.md.

Run: .venv/bin/python bench/twin_quality.py [--profile gpu] [--twins maya-lindqvist]
     --home .twin: use a platform home that exists (what `make demo` left): a twin whose newest
       dataset is already trained is not trained again, and its latest evaluation is reported.
       Results accumulate in <home>/twin-quality.json and the table shows every evaluation there,
       so a second run on the same home with more steps (`--max-steps 48`) trains a new challenger
       against the champion the first run promoted: base vs challenger vs champion.
     --quick: one twin, 1 step, 4 short answers per model (a check that the script works; what `make test` runs)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import replace_section  # noqa: E402
from bench.training import machine  # noqa: E402

TWINS = ["maya-lindqvist", "priya-raman", "tomas-herrera", "ines-varga"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--twins", nargs="*", default=TWINS)
    parser.add_argument("--profile", default="cpu-demo", choices=["cpu-demo", "gpu"])
    parser.add_argument("--max-steps", type=int, default=None, help="default: the profile's")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--home", type=Path, default=None, help="an existing TWIN_HOME (default: a new one)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    twins, evaluation = args.twins, None
    if args.quick:
        twins, args.max_steps, evaluation = twins[:1], 1, {"generation_examples": 4, "max_new_tokens": 16}

    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="twin-bench-quality-"))
    os.environ["TWIN_HOME"] = str(home)
    for variable in ("DAGSTER_HOME", "DATABASE_URL", "MLFLOW_TRACKING_URI"):
        os.environ.pop(variable, None)
    from orchestration.cli import SAMPLE_CORPUS
    from orchestration.cli import main as twin
    from orchestration.runs import train_twin
    from twin.database import embedded_postgres_dir, stop_embedded_postgres
    from twin.settings import Settings

    settings = Settings.from_env()
    try:
        if twin(["import", str(SAMPLE_CORPUS)]) or twin(["materialize"]):
            raise SystemExit("importing or materializing the sample corpus failed")
        store = home / "twin-quality.json"
        saved: dict[str, dict] = json.loads(store.read_text()) if store.exists() else {}
        for name in twins:
            outcome = train_twin(settings, name, args.profile, args.max_steps, evaluation)
            if not outcome.success:
                raise SystemExit(f"training {name} failed: {outcome.error}")
            if outcome.skipped:
                print(f"{name}: not trained: {outcome.skipped}")
                saved[f"{name} skipped"] = {"twin": name, "skipped": outcome.skipped}
                store.write_text(json.dumps(saved, indent=1, default=str))
                continue
            result = twin_result(settings, name)
            saved[f"{name} v{result['version']}"] = result
            store.write_text(json.dumps(saved, indent=1, default=str))
            print(json.dumps({k: v for k, v in result.items() if k != "report"}, indent=2))
    finally:
        stop_embedded_postgres(embedded_postgres_dir(home))
    write_report(args.output, args, [saved[key] for key in sorted(saved)])


def twin_result(settings, twin: str) -> dict[str, object]:
    """The twin's latest evaluation and the training figures of the model it evaluated."""
    from training.registry import configure_mlflow
    from twin.database import Database

    database = Database.from_settings(settings)
    database.ensure_schema()
    with database.connect() as conn:
        row = conn.execute(
            """SELECT e.report, m.train_steps, m.train_seconds, m.mlflow_run_id, m.profile, m.version FROM evaluations e
               JOIN model_versions m USING (registered_model, version)
               WHERE e.twin = %s ORDER BY e.id DESC LIMIT 1""", (twin,)).fetchone()
    if row is None:
        raise SystemExit(f"{twin} has no evaluation (too little text for a dataset?)")
    report, steps, seconds, run_id, profile, version = row
    metrics = configure_mlflow(settings).get_run(run_id).data.metrics
    return {"twin": twin, "version": version, "report": report, "promoted": report["promoted"], "profile": profile, "steps": steps,
            "train_minutes": round(seconds / 60, 1), "first_loss": metrics.get("first_loss"),
            "last_loss": metrics.get("last_loss"), "grounding": served_grounding(settings, twin, report)}


def served_grounding(settings, twin: str, report: dict) -> float | None:
    """Grounding of the twin's served answer (champion, RAG) to its first held-out prompt."""
    from serving.rag import answer_question

    if not report.get("prompts"):
        return None
    result = answer_question(settings, report["prompts"][0], twin, k=3, max_tokens=120)
    return result.grounded.grounding if result.grounded is not None else None


def _cell(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    return f"{value:.0%}" if kind == "share" else f"{value:.3f}" if kind == "num" else f"{value:.0f}"


def write_report(path: Path, args: argparse.Namespace, results: list[dict]) -> None:
    lines = ["| twin | model | perplexity ↓ | attributed to author ↑ | Delta to author ↓ | answer words | gate |",
             "|---|---|---:|---:|---:|---:|---|"]
    skipped = [result for result in results if "skipped" in result]
    results = [result for result in results if "skipped" not in result]
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
    training = ["| twin | profile | steps | loss first -> last step | Axolotl minutes | held-out answers per model | grounding of one served answer |",
                "|---|---|---:|---|---:|---:|---:|"]
    for result in results:
        report = result["report"]
        training.append(f"| {result['twin']} | {result['profile']} | {result['steps']} | {float(result['first_loss'] or 0):.3f} -> "
                        f"{float(result['last_loss'] or 0):.3f} | {result['train_minutes']} | "
                        f"{report['generation_examples']} from {report['held_out_documents']} documents | "
                        f"{_cell(result['grounding'], 'share')} |")
    notes = [f"- {result['twin']} v{result['version']}: "
             + "; ".join(part for part in (result['report'].get('style_note'), result['report'].get('reason')) if part)
             for result in results]
    notes += [f"- {result['twin']}: not trained: {result['skipped']}" for result in skipped]
    mode = " (quick mode: 1 step, 4 short answers; not a measurement)" if args.quick else ""
    section = f"""## Twin quality (`bench/twin_quality.py`, profile `{args.profile}`, {date.today().isoformat()}){mode}

Machine: {machine()}; a shared 2-core machine (other work ran at the same time), so minutes are upper bounds.

Each model answers the same held-out prompts of the twin's own test documents once (greedy); every
figure comes from those answers. "Attributed to author" is the share of answers that the
authorship classifier (character n-grams + function words, trained on every twin's training
split and on the base model's answers to training prompts as the generic voice) gives to the
author; Delta is Burrows' Delta over the 150 most frequent words to the author's held-out text.

{chr(10).join(lines)}

{chr(10).join(training)}

{chr(10).join(notes)}
"""
    replace_section(path, f"Twin quality (`bench/twin_quality.py`, profile `{args.profile}`", section)


if __name__ == "__main__":
    main()
