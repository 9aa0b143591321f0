"""Fine-tuning for real: Axolotl in its own environment through Dagster Pipes on CPU, MLflow runs
and registry, the evaluation gate, a training process killed midway, bad configuration."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psutil
import pytest
import torch
from dagster_aws.s3 import S3Resource

from assets.datasets import instruct_dataset
from assets.training import champion, twin_adapter, twin_eval
from resources import EmbeddingModelResource, PostgresResource, TrainingResource
from tests.conftest import SAMPLE_CORPUS, Pipeline, create_database
from training.axolotl_config import PROFILES, axolotl_config, training_profile
from training.ecs import EcsTrainingTarget
from training.pipes_axolotl import parse_metrics
from training.registry import CHALLENGER, CHAMPION, alias_version, configure_mlflow, local_model_folder, registered_model_name
from twin.base_model import base_model_location, check_model_folder
from twin.database import Database
from twin.errors import TwinError
from twin.settings import Settings
from twin.sources.jsonl import import_jsonl

TWIN = "tomas-herrera"
TRAINING_ASSETS = [instruct_dataset, twin_adapter, twin_eval, champion]


@dataclass
class TrainingEnv:
    database_url: str
    home: Path
    instance: dg.DagsterInstance
    resource: TrainingResource

    def materialize(self, assets=None, max_steps: int = 2) -> dg.ExecuteInProcessResult:
        assets = assets or TRAINING_ASSETS
        ops = {"models__twin_adapter": {"config": {"max_steps": max_steps}},
               "evaluation__twin_eval": {"config": {"max_examples": 12, "generation_examples": 2, "max_new_tokens": 16}}}
        selected = {asset.key.to_python_identifier() for asset in assets}
        return dg.materialize(
            assets, partition_key=TWIN, instance=self.instance, raise_on_error=False,
            run_config={"ops": {name: config for name, config in ops.items() if name in selected}},
            resources={
                "postgres": PostgresResource(twin_home=str(self.home), database_url=self.database_url),
                "training": self.resource,
                "embedding_model": EmbeddingModelResource(model="sentence-transformers/all-MiniLM-L6-v2"),
                "s3": S3Resource(),
            },
        )

    def settings(self) -> Settings:
        return self.resource.settings()


@pytest.fixture(scope="module")
def env(server_url: str, twin_home: Path, base_model: str, tmp_path_factory) -> Iterator[TrainingEnv]:
    """One twin imported and featurized in its own database, with its own MLflow store."""
    home = tmp_path_factory.mktemp("training_home")
    url = create_database(server_url)
    Database(url).migrate()
    with Database(url).connect() as conn:
        import_jsonl(conn, SAMPLE_CORPUS / f"{TWIN}.jsonl", max_document_bytes=1_000_000)
    with dg.instance_for_test() as instance:
        assert Pipeline(database_url=url, twin_home=twin_home, instance=instance).run(TWIN).success
        resource = TrainingResource(twin_home=str(home), base_model=base_model,
                                    mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
        yield TrainingEnv(url, home, instance, resource)


def _kill_axolotl_when_training(stop: threading.Event, killed: list[int]) -> None:
    """Kill this test's own Axolotl process (a descendant of this process, never another one on
    the machine, such as a `make demo` running next to the tests)."""
    me = psutil.Process()
    while not stop.is_set():
        for process in me.children(recursive=True):
            try:
                cmdline = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if "axolotl.cli.train" in cmdline:
                time.sleep(3)  # let it get going
                process.kill()
                killed.append(process.pid)
                return
        time.sleep(0.5)


def _terminate_when_training(stop: threading.Event, seen: list[tuple[int, int]]) -> None:
    """Once this test's Axolotl process trains, SIGINT this process: what a Dagster run worker's
    step receives on Terminate in the UI or when run monitoring enforces `dagster/max_runtime`."""
    me = psutil.Process()
    while not stop.is_set():
        for process in me.children(recursive=True):
            try:
                cmdline = " ".join(process.cmdline())
                group = os.getpgid(process.pid)
            except (psutil.Error, ProcessLookupError):
                continue
            if "axolotl.cli.train" in cmdline:
                seen.append((process.pid, group))
                time.sleep(3)
                if not stop.is_set():
                    os.kill(os.getpid(), signal.SIGINT)
                return
        time.sleep(0.5)


def _group_members(group: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


@pytest.fixture(scope="module")
def terminated_run(env: TrainingEnv) -> tuple[dg.ExecuteInProcessResult, list[tuple[int, int]]]:
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_terminate_when_training, args=(stop, seen), daemon=True)
    watcher.start()
    try:
        result = env.materialize([instruct_dataset, twin_adapter], max_steps=500)
    finally:
        stop.set()
        watcher.join(5)
    return result, seen


@pytest.fixture(scope="module")
def killed_run(env: TrainingEnv, terminated_run) -> tuple[dg.ExecuteInProcessResult, list[int]]:
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_axolotl_when_training, args=(stop, killed), daemon=True)
    watcher.start()
    try:
        result = env.materialize()
    finally:
        stop.set()
        watcher.join(5)
    return result, killed


@pytest.fixture(scope="module")
def trained(env: TrainingEnv, killed_run) -> dg.ExecuteInProcessResult:
    """The real path after the killed run: a clean start, 2 Axolotl steps on CPU."""
    return env.materialize()


def _runs(env: TrainingEnv, status: str) -> list:
    client = configure_mlflow(env.settings())
    experiment = client.get_experiment_by_name(f"twin-{TWIN}").experiment_id
    return client.search_runs([experiment], filter_string=f"attributes.status = '{status}'")


def test_terminating_a_training_run_kills_its_process_tree_and_ends_the_mlflow_run_killed(
        env: TrainingEnv, terminated_run) -> None:
    result, seen = terminated_run
    assert seen, "the Axolotl process was never seen"
    axolotl, group = seen[0]
    assert group != os.getpgid(0)  # the training tree runs in a process group of its own
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "models__twin_adapter"
    assert failure.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
    assert not psutil.pid_exists(axolotl) and _group_members(group) == []  # nothing left, nothing re-parented
    killed = _runs(env, "KILLED")
    assert len(killed) == 1 and "was terminated" in killed[0].data.tags["failure_reason"]
    assert _runs(env, "FINISHED") == [] and _runs(env, "RUNNING") == []
    assert configure_mlflow(env.settings()).search_model_versions(f"name = '{registered_model_name(TWIN)}'") == []
    time.sleep(2)  # had Axolotl survived, its MLflow callback would end the run FINISHED by now
    assert _runs(env, "KILLED")[0].info.run_id == killed[0].info.run_id


def test_a_training_process_killed_midway_fails_the_asset_and_registers_nothing(env: TrainingEnv, killed_run) -> None:
    result, killed = killed_run
    assert killed, "the Axolotl process was never seen"
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "models__twin_adapter"
    assert "Axolotl exited with code -9" in str(failure.step_failure_data.error)
    failed = _runs(env, "FAILED")
    assert len(failed) == 1 and "Axolotl exited with code -9" in failed[0].data.tags["failure_reason"]
    client = configure_mlflow(env.settings())
    assert client.search_model_versions(f"name = '{registered_model_name(TWIN)}'") == []
    with Database(env.database_url).connect() as conn:
        assert conn.execute("SELECT count(*) FROM model_versions").fetchone()[0] == 0


def test_pipes_runs_axolotl_on_cpu_and_registers_a_challenger_in_mlflow(env: TrainingEnv, trained) -> None:
    assert trained.success, trained.get_step_failure_events()
    adapter = {k: v.value for k, v in trained.asset_materializations_for_node("models__twin_adapter")[0].metadata.items()}
    assert adapter["train_steps"] == 2 and adapter["tokens"] > 0 and adapter["version"] == 1
    assert "| 2 |" in adapter["loss_curve"]  # one row per step, streamed back through Pipes
    client = configure_mlflow(env.settings())
    run = client.get_run(adapter["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert {"train_loss", "eval_perplexity", "eval_topical_similarity", "eval_grounding"} <= set(run.data.metrics)
    assert run.data.params["profile.lora_r"] == "16" and run.inputs.dataset_inputs  # dataset logged as input
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"adapter", "model", "config", "evaluation"} <= artifacts
    assert run.data.tags.get("failure_reason") is None
    assert str(adapter["mlflow_run"]).endswith(f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    assert str(adapter["mlflow_model_version"]).endswith("/#/models/twin-tomas-herrera/versions/1")
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs
    version = alias_version(client, TWIN, CHALLENGER)
    assert version is not None and int(version.version) == 1 and version.run_id == run.info.run_id
    with Database(env.database_url).connect() as conn:
        row = conn.execute("SELECT version, profile, train_steps FROM model_versions").fetchone()
    assert row == (1, "cpu-demo", 2)


def test_the_first_challenger_beats_the_base_model_and_becomes_champion(env: TrainingEnv, trained) -> None:
    evaluation = {k: v.value for k, v in trained.asset_materializations_for_node("evaluation__twin_eval")[0].metadata.items()}
    assert evaluation["reference"] == "base model"
    assert evaluation["eval_perplexity"] < evaluation["eval_base_perplexity"]
    assert "perplexity" in evaluation["report"] and "promoted" in evaluation["report"]
    # 2 held-out answers per model here: style is not measurable, and the gate says it fell back
    assert evaluation["style_measurable"] is False and "eval_attribution_share" not in evaluation
    assert "style not measurable" in evaluation["reason"] and "gated on perplexity alone" in evaluation["reason"]
    assert evaluation["held_out_prompt"] and "challenger_answer" in evaluation and "base_answer" in evaluation
    champion_version = alias_version(configure_mlflow(env.settings()), TWIN, CHAMPION)
    assert int(champion_version.version) == 1
    tags = champion_version.tags  # the promotion decision and its figures, on the version itself
    assert tags["eval_promoted"] == "true" and tags["eval_gate"] == evaluation["reason"]
    assert tags["eval_reference"] == "base model" and tags["promoted_from"] == "base model"
    assert float(tags["eval_perplexity"]) == pytest.approx(evaluation["eval_perplexity"], abs=1e-3)
    assert float(tags["eval_base_perplexity"]) == pytest.approx(evaluation["eval_base_perplexity"], abs=1e-3)
    with Database(env.database_url).connect() as conn:
        assert conn.execute("SELECT version, previous_version FROM promotions").fetchall() == [(1, None)]


def test_the_champion_loads_and_predicts_with_mlflow_pyfunc(env: TrainingEnv, trained) -> None:
    import mlflow
    import pandas as pd

    configure_mlflow(env.settings())
    model = mlflow.pyfunc.load_model(f"models:/{registered_model_name(TWIN)}@champion")
    assert [column.name for column in model.metadata.get_input_schema().inputs] == ["question"]
    assert model.metadata.get_params_schema().params[0].name == "max_new_tokens"
    assert model.metadata.saved_input_example_info["type"] == "dataframe"
    answers = model.predict(pd.DataFrame({"question": ["How do you keep a Postgres table from bloating?"]}),
                            params={"max_new_tokens": 12})
    assert len(answers) == 1 and answers[0].strip()
    # the weights it loaded are the champion's (the folder serving loads)
    loaded = model.unwrap_python_model().model.state_dict()
    champion_version = alias_version(configure_mlflow(env.settings()), TWIN, CHAMPION)
    from transformers import AutoModelForCausalLM

    folder = local_model_folder(env.settings(), champion_version.source, registered_model_name(TWIN), "1")
    name = next(key for key in loaded if key.endswith("q_proj.weight"))
    assert torch.equal(loaded[name], AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).state_dict()[name])


def test_an_unchanged_dataset_trains_nothing(env: TrainingEnv, trained) -> None:
    result = env.materialize()
    assert result.success
    assert [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()] == ["datasets/instruct"]
    assert len(configure_mlflow(env.settings()).search_model_versions(f"name = '{registered_model_name(TWIN)}'")) == 1


def test_a_worse_challenger_is_not_promoted(env: TrainingEnv, trained, tmp_path: Path) -> None:
    """A challenger made of the champion's weights plus noise must fail the gate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = env.settings()
    client = configure_mlflow(settings)
    champion_version = alias_version(client, TWIN, CHAMPION)
    champion_folder = local_model_folder(settings, champion_version.source, registered_model_name(TWIN), "1")
    model = AutoModelForCausalLM.from_pretrained(champion_folder, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    noisy = tmp_path / "noisy"
    model.save_pretrained(noisy)
    AutoTokenizer.from_pretrained(champion_folder).save_pretrained(noisy)
    name = registered_model_name(TWIN)
    worse = client.create_model_version(name, source=str(noisy), run_id=champion_version.run_id,
                                        tags={"dataset_fingerprint": champion_version.tags["dataset_fingerprint"]})
    with Database(env.database_url).connect() as conn:
        conn.execute("""INSERT INTO model_versions (registered_model, version, twin, mlflow_run_id, dataset_fingerprint,
                            base_model, profile, training_signature, train_steps, train_seconds, model_uri)
                        SELECT registered_model, %s, twin, mlflow_run_id, dataset_fingerprint, base_model, profile,
                               'noisy', 0, 0, 'noisy' FROM model_versions WHERE version = 1""", (int(worse.version),))
    client.set_registered_model_alias(name, CHALLENGER, worse.version)

    result = env.materialize([twin_eval, champion])
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["beats_champion"].passed
    assert "champion v1" in checks["beats_champion"].metadata["reason"].value
    assert int(alias_version(client, TWIN, CHAMPION).version) == 1  # unchanged
    assert "models__champion" not in {e.step_key for e in result.get_step_success_events()}
    with Database(env.database_url).connect() as conn:
        assert conn.execute("SELECT count(*) FROM promotions").fetchone()[0] == 1
        assert conn.execute("SELECT promoted FROM evaluations ORDER BY id DESC LIMIT 1").fetchone()[0] is False


def test_twin_models_lists_versions_aliases_and_figures(env: TrainingEnv, trained, monkeypatch, capsys) -> None:
    from orchestration.cli import main

    monkeypatch.setenv("DATABASE_URL", env.database_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env.settings().mlflow_tracking_uri)
    assert main(["models", "--twin", TWIN]) == 0
    out = capsys.readouterr().out
    assert "twin-tomas-herrera" in out and "champion" in out and "base model" in out


def test_an_unavailable_mlflow_store_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    resource = TrainingResource(twin_home=str(tmp_path), mlflow_tracking_uri="http://127.0.0.1:9")
    with pytest.raises(TwinError, match="MLflow tracking store at http://127.0.0.1:9 is not available"):
        configure_mlflow(resource.settings())


def test_a_missing_or_corrupt_base_model_is_refused(tmp_path: Path) -> None:
    settings = TrainingResource(twin_home=str(tmp_path), base_model=str(tmp_path / "nope")).settings()
    with pytest.raises(TwinError, match="does not exist"):
        base_model_location(settings)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(TwinError, match="no weights"):
        check_model_folder(tmp_path / "broken")


def test_profiles_generate_the_axolotl_settings_each_host_needs(tmp_path: Path) -> None:
    cpu = axolotl_config(PROFILES["cpu-demo"], "m", tmp_path / "t.parquet", tmp_path / "o", tmp_path / "p", "sqlite:///x", "e", "r")
    assert (cpu["bf16"], cpu["fp16"], cpu["tf32"], cpu["lora_mlp_kernel"], cpu["lora_qkv_kernel"], cpu["lora_o_kernel"]) == (False,) * 6
    gpu = axolotl_config(training_profile("gpu", qlora=True), "m", tmp_path / "t.parquet", tmp_path / "o", tmp_path / "p", "sqlite:///x", "e", "r")
    assert (gpu["lora_r"], gpu["lora_alpha"], gpu["learning_rate"], gpu["num_epochs"], gpu["sequence_len"]) == (32, 32, 3e-4, 3, 2048)
    assert gpu["bf16"] and gpu["sample_packing"] and gpu["adapter"] == "qlora" and gpu["load_in_4bit"]
    assert "max_steps" not in gpu and "lora_mlp_kernel" not in gpu
    with pytest.raises(TwinError, match="QLoRA needs a CUDA GPU"):
        training_profile("cpu-demo", qlora=True)
    with pytest.raises(TwinError, match="no training profile"):
        training_profile("tpu")


def test_trainer_log_lines_become_metrics() -> None:
    line = " 50%|█████     | 1/2 [00:09<00:09,  9.96s/it]   {'loss': '1.304', 'grad_norm': '1.558', 'epoch': '0.1', 'memory/max_active (GiB)': '0'}"
    assert parse_metrics(line) == {"loss": 1.304, "grad_norm": 1.558, "epoch": 0.1, "memory/max_active (GiB)": 0.0}
    assert parse_metrics("{'eval': 'x'}") is None and parse_metrics("loading weights") is None


def test_ecs_pipes_target_runs_the_script_on_one_gpu(monkeypatch) -> None:
    monkeypatch.delenv("TWIN_ECS_CLUSTER", raising=False)
    with pytest.raises(TwinError, match="TWIN_ECS_CLUSTER"):
        EcsTrainingTarget.from_settings(Settings.from_env())
    monkeypatch.setenv("TWIN_ECS_CLUSTER", "gpu-cluster")
    monkeypatch.setenv("TWIN_ECS_TASK_DEFINITION", "twin-train:3")
    monkeypatch.setenv("TWIN_ECS_SUBNETS", "subnet-a, subnet-b")
    params = EcsTrainingTarget.from_settings(Settings.from_env()).run_task_params({"MLFLOW_RUN_ID": "abc", "HF_HUB_OFFLINE": "1"})
    override = params["overrides"]["containerOverrides"][0]
    assert params["cluster"] == "gpu-cluster" and params["taskDefinition"] == "twin-train:3"
    assert override["command"] == ["python", "/app/pipes_axolotl.py"]
    assert {"type": "GPU", "value": "1"} in override["resourceRequirements"]
    assert {"name": "MLFLOW_RUN_ID", "value": "abc"} in override["environment"]
    assert params["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-a", "subnet-b"]


def test_a_stopped_run_names_its_max_runtime_or_a_terminate() -> None:
    """The reason recorded on the MLflow run of a stopped training (run monitoring enforces
    `dagster/max_runtime` by terminating the run, the same interrupt as Terminate)."""
    from assets.training import _stop_reason

    reasons: list[str] = []

    @dg.asset
    def probe(context: dg.AssetExecutionContext) -> None:
        reasons.append(_stop_reason(context))

    with dg.instance_for_test() as instance:
        dg.materialize([probe], instance=instance, tags={"dagster/max_runtime": "0"})
        dg.materialize([probe], instance=instance, tags={"dagster/max_runtime": "3600"})
        dg.materialize([probe], instance=instance)
    assert reasons[0].startswith("stopped: the run passed its dagster/max_runtime of 0 s")
    assert all("was terminated (Terminate in the UI" in reason for reason in reasons[1:])
