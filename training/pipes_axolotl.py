"""Runs in the training environment (.venv-train or a GPU image), launched through Dagster Pipes.

It trains the LoRA adapter with Axolotl, streams each logged step back to Dagster, merges the
adapter into the base model, and reports the final metrics as the asset's metadata. It only needs
the training environment's packages (axolotl, peft, transformers, dagster-pipes), never the
platform's own code, so the same file runs on ECS.

Extras from the orchestrating asset: config_path, output_dir (the adapter), merged_dir.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from dagster_pipes import PipesContext, open_dagster_pipes


class Terminated(Exception):
    """SIGTERM or SIGINT from the orchestrator (Terminate, a run timeout, Ctrl-C)."""


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    with open_dagster_pipes() as pipes:
        try:
            run(pipes)
        except Terminated:
            raise
        except Exception as error:  # the reason the orchestrator records on the MLflow run
            pipes.report_custom_message({"failure": f"{type(error).__name__}: {error}"[:4000]})
            raise


def run(pipes: PipesContext) -> None:
    """Train, merge, report the metrics as the asset's materialization."""
    config_path = Path(pipes.get_extra("config_path"))
    output_dir = Path(pipes.get_extra("output_dir"))
    merged_dir = Path(pipes.get_extra("merged_dir"))
    base_model = str(pipes.get_extra("base_model"))
    started = time.perf_counter()
    steps = train(pipes, config_path)
    train_seconds = time.perf_counter() - started
    summary = steps.pop() if steps and "train_runtime" in steps[-1] else {}
    if not (output_dir / "adapter_model.safetensors").is_file():
        raise RuntimeError(f"Axolotl finished but wrote no adapter to {output_dir}.")
    pipes.log.info("Merging the adapter into the base model...")
    with _quiet_stderr():  # torchao/bitsandbytes print CUDA-kernel notes on CPU hosts at import
        merge(base_model, output_dir, merged_dir)
    losses = [step["loss"] for step in steps if "loss" in step]
    tokens = sum(step.get("tokens/total", 0) for step in steps if "loss" in step)
    pipes.report_asset_materialization(metadata={
        "train_steps": {"raw_value": len(losses), "type": "int"},
        "train_loss": {"raw_value": float(summary.get("train_loss", losses[-1] if losses else 0.0)), "type": "float"},
        "first_loss": {"raw_value": float(losses[0]) if losses else 0.0, "type": "float"},
        "last_loss": {"raw_value": float(losses[-1]) if losses else 0.0, "type": "float"},
        "train_seconds": {"raw_value": round(train_seconds, 1), "type": "float"},
        "trainer_runtime_s": {"raw_value": float(summary.get("train_runtime", 0.0)), "type": "float"},
        "tokens": {"raw_value": int(tokens), "type": "int"},
        "tokens_per_s": {"raw_value": round(tokens / float(summary["train_runtime"]), 2) if summary.get("train_runtime") else 0.0, "type": "float"},
        "loss_curve": {"raw_value": _loss_table(steps), "type": "md"},
    })


def train(pipes: PipesContext, config_path: Path) -> list[dict[str, float]]:
    """Run `python -m axolotl.cli.train` (no `accelerate launch`: one process, CPU or one GPU)."""
    command = [sys.executable, "-m", "axolotl.cli.train", str(config_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                               env=os.environ, preexec_fn=_die_with_parent)
    try:
        return _follow(pipes, process)
    finally:  # stopped or failed here: Axolotl goes too, reaped by us (never left to PID 1)
        if process.poll() is None:
            process.kill()
            process.wait()


def _follow(pipes: PipesContext, process: subprocess.Popen) -> list[dict[str, float]]:
    tail: deque[str] = deque(maxlen=30)
    steps: list[dict[str, float]] = []
    assert process.stdout is not None
    for line in process.stdout:
        for segment in line.replace("\r", "\n").splitlines():
            segment = segment.strip()
            if not segment:
                continue
            tail.append(segment)
            metrics = parse_metrics(segment)
            if metrics is None:
                continue
            steps.append(metrics)
            if "loss" in metrics:
                pipes.log.info(f"step {sum(1 for s in steps if 'loss' in s)}: loss {metrics['loss']:.4f}, "
                               f"lr {metrics.get('learning_rate', 0):.2e}, epoch {metrics.get('epoch', 0):.2f}")
                pipes.report_custom_message({"step": sum(1 for s in steps if "loss" in s), **metrics})
    code = process.wait()
    if code != 0:
        raise RuntimeError(f"Axolotl exited with code {code}. Its last lines:\n" + "\n".join(tail))
    return steps


def parse_metrics(segment: str) -> dict[str, float] | None:
    """The dict a Hugging Face Trainer logs, e.g. {'loss': '1.304', 'epoch': '0.1'}, as floats."""
    start = segment.find("{'")
    if start < 0 or not segment.endswith("}"):
        return None
    try:
        raw = ast.literal_eval(segment[start:])
    except (ValueError, SyntaxError):
        return None
    if not isinstance(raw, dict) or not ({"loss", "train_runtime"} & raw.keys()):
        return None
    metrics: dict[str, float] = {}
    for key, value in raw.items():
        try:
            metrics[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return metrics


def merge(base_model: str, adapter_dir: Path, merged_dir: Path) -> None:
    """Base model + adapter → one model folder (bf16), written to a partial folder then renamed."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = merged_dir.with_name(merged_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.to(torch.bfloat16).save_pretrained(partial)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(partial)
    shutil.rmtree(merged_dir, ignore_errors=True)
    partial.rename(merged_dir)


_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """Linux: the kernel sends Axolotl SIGTERM if this process dies without cleaning up (kill -9)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _loss_table(steps: list[dict[str, float]]) -> str:
    rows = [s for s in steps if "loss" in s]
    lines = ["| step | loss | learning rate | epoch |", "|---:|---:|---:|---:|"]
    lines += [f"| {i} | {s['loss']:.4f} | {s.get('learning_rate', 0):.2e} | {s.get('epoch', 0):.2f} |" for i, s in enumerate(rows, 1)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
