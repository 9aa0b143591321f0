"""The cluster configuration in deploy/ (Dockerfiles, Helm values, the k8s executor and serving
manifests, the ECS instance and task definitions, the Grafana dashboard). Containers cannot be
built or run on the project's machines, so each file is loaded and the names it shares with the
code are checked: entry points, CLI arguments, env vars, asset and step keys, tags, pools, metrics."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.cli import _parser
from training.ecs import EcsTrainingTarget

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CODE_DIRS = ("twin", "assets", "resources", "orchestration", "training", "serving")


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in (DEPLOY / "docker" / name).read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            pending = ""
    assert not pending, f"{name}: a continuation line runs off the end"
    return instructions


def exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    (arguments,) = [rest for kind, rest in instructions if kind == keyword]
    return json.loads(arguments)  # exec form: a JSON array, so signals reach the process


def code_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for folder in CODE_DIRS for path in (REPO / folder).rglob("*.py"))


def twin_cli_accepts(argv: list[str]) -> None:
    assert argv[0] == "twin"
    _parser().parse_args(argv[1:])  # SystemExit (a failure) on an unknown command or option


@pytest.mark.parametrize("name", ["platform.Dockerfile", "training.Dockerfile", "serving.Dockerfile"])
def test_each_dockerfile_parses_copies_what_exists_and_pins_torch(name: str) -> None:
    instructions = dockerfile(name)
    assert instructions[0][0] == "FROM"
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "EXPOSE", "CMD", "ENTRYPOINT"}
    assert {kind for kind, _ in instructions} <= known
    for kind, rest in instructions:
        if kind == "COPY":
            for source in shlex.split(rest)[:-1]:
                assert (REPO / source).exists(), f"{name}: COPY {source}: no such path in the repository"
        if kind == "RUN" and "pip install" in rest and "torch" in rest:
            assert re.findall(r"torch==[\d.]+", rest) == ["torch==2.13.0"], f"{name}: pin torch==2.13.0"


def test_the_platform_image_serves_the_module_the_workspace_and_helm_name() -> None:
    command = exec_form(dockerfile("platform.Dockerfile"), "CMD")
    assert command[:3] == ["dagster", "code-server", "start"]
    module = command[command.index("-m") + 1]
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    assert module == workspace["load_from"][0]["python_module"]["module_name"] == "orchestration.definitions"
    deployment = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert not [kind for kind, _ in dockerfile("platform.Dockerfile") if kind == "ENTRYPOINT"]  # run pods pass args


def test_the_training_image_runs_the_pipes_script_where_ecs_and_the_task_definition_expect_it() -> None:
    instructions = dockerfile("training.Dockerfile")
    target = EcsTrainingTarget(cluster="c", task_definition="t")
    assert exec_form(instructions, "CMD") == ["python", target.script]
    assert any(kind == "RUN" and f"cp /app/src/training/pipes_axolotl.py {target.script}" in rest
               for kind, rest in instructions)
    assert any(kind == "COPY" and rest.startswith("training/requirements.txt") for kind, rest in instructions)
    env = " ".join(rest for kind, rest in instructions if kind == "ENV")
    assert "TWIN_TRAINING_PYTHON=/opt/train/bin/python" in env and "PATH=/opt/train/bin:/opt/platform/bin" in env
    task = json.loads((DEPLOY / "ecs" / "training-task.json").read_text())
    (container,) = task["containerDefinitions"]
    assert container["name"] == target.container and container["command"] == ["python", target.script]
    assert {"type": "GPU", "value": "1"} in container["resourceRequirements"]
    assert task["requiresCompatibilities"] == [target.launch_type]


def test_the_serving_image_and_manifests_start_valid_twin_serve_commands() -> None:
    instructions = dockerfile("serving.Dockerfile")
    entry = exec_form(instructions, "ENTRYPOINT")
    twin_cli_accepts(entry)
    assert entry[entry.index("--role") + 1] == "model"
    port = int(entry[entry.index("--port") + 1])
    assert ("EXPOSE", str(port)) in instructions
    assert any(kind == "RUN" and "exllamav2==0.3.2" in rest for kind, rest in instructions)  # as `make gpu`
    documents = [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "serving.yaml").read_text()) if doc]
    deployments = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Deployment"}
    services = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Service"}
    (rag,) = deployments["twin-rag"]["spec"]["template"]["spec"]["containers"]
    twin_cli_accepts(rag["command"])
    assert rag["command"][rag["command"].index("--role") + 1] == "rag"
    env = {item["name"]: item["value"] for item in rag["env"]}
    assert env["TWIN_MODEL_ENDPOINT"] == f"http://twin-model:{services['twin-model']['spec']['ports'][0]['port']}"
    assert services["twin-model"]["spec"]["ports"][0]["targetPort"] == port
    (model,) = deployments["twin-model"]["spec"]["template"]["spec"]["containers"]
    assert model["image"].rsplit("/", 1)[1].startswith("twin-serving:")


def test_every_env_var_the_deploy_files_set_is_one_the_code_reads() -> None:
    code = code_text()
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    names = {item["name"] for item in values["dagster-user-deployments"]["deployments"][0]["env"]}
    for task in ("code-location-task.json", "training-task.json"):
        for container in json.loads((DEPLOY / "ecs" / task).read_text())["containerDefinitions"]:
            names |= {item["name"] for item in container.get("environment", []) + container.get("secrets", [])}
    ecs_instance = (DEPLOY / "ecs" / "dagster.yaml").read_text()
    instance_vars = set(re.findall(r"env: (\w+)", ecs_instance))
    platform = {name for name in names if name.startswith(("TWIN_", "MLFLOW_", "DATABASE_"))}
    assert {"TWIN_EXECUTOR", "TWIN_K8S_EXECUTOR_CONFIG", "TWIN_ECS_TASK_DEFINITION", "TWIN_LAG_LIMIT_SECONDS"} <= platform
    unread = sorted(name for name in platform if f'"{name}"' not in code)
    assert unread == [], f"set in deploy/ but read nowhere in the code: {unread}"
    assert instance_vars <= names, "the ECS instance reads env vars its task does not set"


def test_the_helm_values_use_dagsters_engines_and_the_codes_tags() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    limits = coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    automation = (REPO / "orchestration" / "automation.py").read_text()
    for limit in limits:
        if limit["key"] == "twin/trigger":  # the tags the sensor and the schedule put on their runs
            assert f'"twin/trigger": "{limit["value"]}"' in automation, limit
        else:
            assert limit["key"] == "dagster/partition"  # Dagster's own tag on partitioned runs
    assert values["postgresql"]["enabled"] is False  # an external server, with pgvector
    assert values["dagster-user-deployments"]["deployments"][0]["envSecrets"] == [{"name": "twin-secrets"}]


def test_the_k8s_executor_config_is_valid_and_targets_real_steps(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor

    from assets.metadata import TRAINING_POOL
    from orchestration.definitions import build_definitions, build_executor
    from twin.settings import Settings

    config = yaml.safe_load((DEPLOY / "k8s" / "executor.yaml").read_text())
    result = process_config(k8s_job_executor.config_schema.config_type, config)
    assert result.success, result.errors
    assert config["max_concurrent"] >= 1 and config["env_secrets"] == ["twin-secrets"]
    monkeypatch.setenv("TWIN_EXECUTOR", "k8s")
    monkeypatch.setenv("TWIN_K8S_EXECUTOR_CONFIG", str(DEPLOY / "k8s" / "executor.yaml"))
    executor = build_executor(Settings.from_env())
    assert executor is not None and executor.name == "k8s_job_executor"
    definitions = build_definitions(Settings.from_env())
    job = definitions.resolve_job_def("train_twin_job")
    assert job.executor_def.name == "k8s_job_executor"
    steps = {node.name for node in job.graph.nodes}
    assert set(config["per_step_k8s_config"]) <= steps and "models__twin_adapter" in config["per_step_k8s_config"]
    assert definitions.resolve_assets_def(dg.AssetKey(["models", "twin_adapter"])).op.pool == TRAINING_POOL
    gpu_pool = {tuple(step["pod_spec_config"]["node_selector"].items()) for step in config["per_step_k8s_config"].values()}
    serving = [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "serving.yaml").read_text()) if doc]
    model = next(doc for doc in serving if doc["metadata"]["name"] == "twin-model" and doc["kind"] == "Deployment")
    assert gpu_pool == {tuple(model["spec"]["template"]["spec"]["nodeSelector"].items())}
    for step in config["per_step_k8s_config"].values():
        assert step["container_config"]["image"].rsplit("/", 1)[1].startswith("twin-training:")
    monkeypatch.setenv("TWIN_EXECUTOR", "slurm")
    with pytest.raises(Exception, match="TWIN_EXECUTOR='slurm'"):
        build_executor(Settings.from_env())


def test_the_ecs_instance_config_is_valid_dagster_instance_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema, validate_concurrency_config
    from dagster_aws.ecs import EcsRunLauncher  # noqa: F401  (the class the file names exists)

    config = yaml.safe_load((DEPLOY / "ecs" / "dagster.yaml").read_text())
    for name in re.findall(r"env: (\w+)", (DEPLOY / "ecs" / "dagster.yaml").read_text()):
        monkeypatch.setenv(name, "from-the-task")  # ECS sets them; Dagster checks they are set
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    validate_concurrency_config(config)  # run limits under `concurrency`, not the coordinator, in 1.13
    assert config["run_launcher"] == {**config["run_launcher"], "module": "dagster_aws.ecs", "class": "EcsRunLauncher"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    automation = (REPO / "orchestration" / "automation.py").read_text()
    for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]:
        assert limit["key"] == "dagster/partition" or f'"{limit["key"]}": "{limit["value"]}"' in automation
    assert "postgres" in config["storage"]
    import dagster_postgres  # noqa: F401  (the storage the file names is installed)


def test_the_grafana_dashboard_reads_only_metrics_the_serving_api_exports() -> None:
    from serving.metrics import Metrics, PipelineLagCollector
    from twin.lag import STAGES, Latency, StageLag, TwinLag

    lag = TwinLag("t", {stage: StageLag(1, 2.0, 3) for stage in STAGES}, Latency(1, 1.0, 2.0, 3.0))
    exported = {sample.name for family in PipelineLagCollector(lambda: [lag], 3600).collect() for sample in family.samples}
    exported |= {family.name for family in Metrics().registry.collect()}
    dashboard = json.loads((DEPLOY / "grafana" / "pipeline-lag.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\btwin_[a-z0-9_]+", expr)}
    assert used and used <= exported, used - exported
    assert {"twin_pipeline_oldest_waiting_seconds", "twin_pipeline_source_to_vector_seconds",
            "twin_pipeline_waiting_documents", "twin_pipeline_lag_limit_seconds"} <= used
