"""models/exl2: the twin's serving model quantized to EXL2 for the ExLlamaV2 backend, and the
serving API's prompt log table declared as an external asset (written by the API, not Dagster).

models/exl2 is in no job and no automation: it runs only when asked for, on a CUDA host.
"""

import time

import dagster as dg

from assets.metadata import GPU_ONLY, TRAINING_POOL
from assets.partitions import twin_partitions
from resources.serving import Exl2Resource
from serving.quantization import exl2_folder, log_exl2_model, measurement_path, pipes_command, require_local_cuda
from training.registry import resolve_serving_model
from twin.errors import TwinError

prompt_logs = dg.AssetSpec(
    ["serving", "prompt_logs"],
    group_name="serving",
    kinds={"postgres"},
    description="Table prompt_logs: one row per request the serving API answered (prompt template and "
                "variables, final prompt, answer, model version, retrieved chunks, latencies, tokens).",
)


@dg.asset(
    key=["models", "exl2"],
    deps=[dg.AssetKey(["models", "champion"])],
    partitions_def=twin_partitions,
    group_name="gpu",
    kinds={"exllamav2", "mlflow"},
    tags=GPU_ONLY,
    pool=TRAINING_POOL,  # GPU work: one at a time, with fine-tuning
    description="The twin's champion (or the base model) quantized to EXL2 (default 4.5 bits per weight) "
                "with exllamav2's converter through Dagster Pipes; logged to MLflow next to its source "
                "version. CUDA only: on a host without a GPU it fails at once, before any work; in no job "
                "and no automation.",
)
def exl2_model(
    context: dg.AssetExecutionContext, exl2: Exl2Resource, exl2_pipes: dg.PipesSubprocessClient
) -> dg.MaterializeResult:
    twin = context.partition_key
    try:
        if exl2.target == "local":
            require_local_cuda()  # before any work: the converter would fail minutes later
        settings = exl2.settings()
        model = resolve_serving_model(settings, twin)
        output = exl2_folder(settings, twin, model.version, exl2.bits)
        measurement = measurement_path(settings, twin, model.version)
        command = pipes_command(exl2.interpreter(), model.path, output, measurement, exl2.bits, exl2.head_bits)
    except TwinError as error:
        raise dg.Failure(description=f"{error.message} Fix: {error.fix}", allow_retries=False) from error
    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    result = exl2_pipes.run(command=command, context=context).get_materialize_result()
    run_id = log_exl2_model(settings, twin, model, output, exl2.bits)
    return dg.MaterializeResult(metadata={
        **(result.metadata or {}), "source_model": model.name, "source_version": model.version or "base",
        "mlflow_run_id": run_id, "path": str(output / "model"),
        "seconds_total": round(time.perf_counter() - started, 1)})
