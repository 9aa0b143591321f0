"""EXL2 quantization of a twin's serving model (the champion, or the base model before one
exists): where builds live, the commands that make them, and logging them to MLflow.

The conversion itself runs in `serving/exl2_pipes.py`, outside the Dagster process (Pipes), and
needs CUDA.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.registry import ServingModel, configure_mlflow, ensure_experiment, registered_model_name
from twin.errors import TwinError
from twin.settings import DEFAULT_EXL2_BITS, Settings

DEFAULT_BITS = DEFAULT_EXL2_BITS  # TWIN_EXL2_BITS: the build serving loads
DEFAULT_HEAD_BITS = 6
CONVERTER_MODULE = "exllamav2.conversion.convert_exl2"


def exl2_root(settings: Settings, twin: str | None, version: str | None) -> Path:
    """One folder per source model version; its measurement.json is shared by every bit rate."""
    return settings.models_dir / "exl2" / (twin or "base") / (f"v{version}" if version else "base")


def exl2_folder(settings: Settings, twin: str | None, version: str | None, bits: float) -> Path:
    return exl2_root(settings, twin, version) / f"{bits:g}bpw"


def measurement_path(settings: Settings, twin: str | None, version: str | None) -> Path:
    return exl2_root(settings, twin, version) / "measurement.json"


def check_bits(bits: float) -> None:
    if not 2.0 <= bits <= 8.0:
        raise TwinError(f"EXL2 bits per weight must be between 2 and 8 (got {bits}).",
                        "use 4.5 (the default), or e.g. 3.5 for less memory, 6.0 for quality.")


def pipes_command(
    python: str, source: str, output: Path, measurement: Path, bits: float, head_bits: int = DEFAULT_HEAD_BITS
) -> list[str]:
    """The Pipes process: `serving.exl2_pipes` runs the converter and reports back."""
    check_bits(bits)
    return [python, "-m", "serving.exl2_pipes", "--source", source, "--output", str(output),
            "--measurement", str(measurement), "--bits", f"{bits:g}", "--head-bits", str(head_bits)]


def converter_command(
    python: str, source: str, output: Path, measurement: Path, bits: float, head_bits: int = DEFAULT_HEAD_BITS
) -> list[str]:
    """exllamav2's converter; a kept measurement.json skips the measurement pass."""
    command = [python, "-m", CONVERTER_MODULE, "-i", source, "-o", str(output.with_name(output.name + ".work")),
               "-cf", str(output / "model"), "-b", f"{bits:g}", "-hb", str(head_bits)]
    if measurement.is_file():
        command += ["-m", str(measurement)]
    return command


def require_local_cuda() -> None:
    """Fail fast when the conversion would run on this host and it has no CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise TwinError(
            "EXL2 conversion needs a CUDA GPU and this host has none (torch.cuda.is_available() is False).",
            "run models/exl2 from a Dagster code location on a CUDA host with `make gpu` "
            "(exllamav2 installed), or give the asset a GPU Pipes client instead of the local "
            "subprocess one (e.g. dagster_aws.pipes.PipesECSClient on a GPU task). "
            "Serving does not need it: the transformers backend serves the unquantized model.",
        )


def log_exl2_model(settings: Settings, twin: str, model: ServingModel, folder: Path, bits: float) -> str:
    """Log the EXL2 build as an MLflow run next to its source version; returns the run id."""
    client = configure_mlflow(settings)
    experiment_id = ensure_experiment(client, settings, twin)
    run = client.create_run(experiment_id, run_name=f"exl2-{bits:g}bpw-v{model.version or 'base'}", tags={
        "twin": twin, "kind": "exl2", "source_model": model.name, "source_version": str(model.version or ""),
        "source_path": model.path})
    client.log_param(run.info.run_id, "bits_per_weight", bits)
    client.log_artifacts(run.info.run_id, str(folder / "model"), artifact_path="exl2")
    measurement = folder.parent / "measurement.json"
    if measurement.is_file():
        client.log_artifact(run.info.run_id, str(measurement))
    client.set_terminated(run.info.run_id)
    if model.version is not None:
        client.set_model_version_tag(registered_model_name(twin), model.version,
                                     f"exl2_{bits:g}bpw_run_id", run.info.run_id)
    return str(run.info.run_id)


def current_python() -> str:
    return sys.executable
