"""models/exl2 on a host without CUDA: fails fast with what to configure, is in no job or
automation; the Pipes and converter commands it would run. (No GPU here: the conversion itself
and the ExLlamaV2 backend are not run by this suite.)"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import torch

from assets.serving import exl2_model
from resources.serving import Exl2Resource
from serving.quantization import converter_command, exl2_folder, measurement_path, pipes_command
from twin.errors import TwinError
from twin.settings import Settings


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure on hosts without CUDA")
def test_exl2_asset_fails_fast_without_cuda(twin_home: Path) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("twins", ["maya-lindqvist"])
        result = dg.materialize(
            [exl2_model], partition_key="maya-lindqvist", instance=instance, raise_on_error=False,
            resources={"exl2": Exl2Resource(twin_home=str(twin_home)), "exl2_pipes": dg.PipesSubprocessClient()})
    assert not result.success
    description = str(result.failure_data_for_node("models__exl2").user_failure_data.description)
    assert "EXL2 conversion needs a CUDA GPU and this host has none" in description
    assert "GPU Pipes client" in description and "make gpu" in description


def test_exl2_is_in_no_job_and_no_automation() -> None:
    from orchestration.definitions import build_definitions

    definitions = build_definitions(Settings.from_env())
    key = dg.AssetKey(["models", "exl2"])
    graph = definitions.resolve_asset_graph()
    assert graph.get(key).automation_condition is None
    for job in definitions.resolve_all_job_defs():
        if not job.name.startswith("__ASSET_JOB"):
            assert key not in job.asset_layer.executable_asset_keys, job.name
    assert dg.AssetKey(["serving", "prompt_logs"]) in graph.get_all_asset_keys()


def test_pipes_and_converter_commands(tmp_path: Path) -> None:
    settings = Settings.from_env()
    output = exl2_folder(settings, "maya-lindqvist", "3", 4.5)
    assert output.parts[-3:] == ("maya-lindqvist", "v3", "4.5bpw")
    measurement = measurement_path(settings, "maya-lindqvist", "3")
    assert measurement.parent == output.parent  # shared by every bit rate of that version
    assert pipes_command("/venv/bin/python", "/models/m", output, measurement, 4.5) == [
        "/venv/bin/python", "-m", "serving.exl2_pipes", "--source", "/models/m", "--output", str(output),
        "--measurement", str(measurement), "--bits", "4.5", "--head-bits", "6"]
    with pytest.raises(TwinError, match="between 2 and 8"):
        pipes_command("python", "/models/m", output, measurement, 9.0)
    kept = tmp_path / "measurement.json"
    first = converter_command("python", "/models/m", tmp_path / "out", kept, 4.5)
    assert first[:3] == ["python", "-m", "exllamav2.conversion.convert_exl2"]
    assert first[first.index("-b") + 1] == "4.5" and first[first.index("-cf") + 1] == str(tmp_path / "out" / "model")
    assert "-m" not in first[3:]  # no measurement yet: the converter measures
    kept.write_text("{}")
    again = converter_command("python", "/models/m", tmp_path / "out", kept, 3.0)
    assert again[again.index("-m", 3) + 1] == str(kept)  # reused
