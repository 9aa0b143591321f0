"""Running the training process on AWS ECS (a GPU task definition) instead of a local subprocess.

Set `TWIN_TRAINING_TARGET=ecs` and the `TWIN_ECS_*` variables; the `models/twin_adapter` asset then
launches `training/pipes_axolotl.py` with `dagster_aws.pipes.PipesECSClient`. The task's image
holds the training environment (axolotl 0.19, dagster-pipes, this file at /app/pipes_axolotl.py)
and mounts shared storage (EFS) at the same TWIN_HOME path, so the dataset, Axolotl YAML and
output folders the asset prepares are the ones the task sees; MLflow must be a server
(MLFLOW_TRACKING_URI) reachable from the task.

The variables (`TWIN_ECS_*`) are read by twin/settings.py and listed in the README's
Configuration table.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.errors import TwinError
from twin.settings import Settings


@dataclass(frozen=True)
class EcsTrainingTarget:
    cluster: str
    task_definition: str
    container: str = "trainer"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    script: str = "/app/pipes_axolotl.py"
    launch_type: str = "EC2"  # GPU tasks run on EC2 capacity (Fargate has no GPUs)

    @classmethod
    def from_settings(cls, settings: Settings) -> EcsTrainingTarget:
        ecs = settings.ecs
        if not ecs.cluster or not ecs.task_definition:
            missing = [name for name, value in (("TWIN_ECS_CLUSTER", ecs.cluster),
                                                ("TWIN_ECS_TASK_DEFINITION", ecs.task_definition)) if not value]
            raise TwinError(
                f"TWIN_TRAINING_TARGET=ecs needs {' and '.join(missing)}.",
                "Set them to the cluster and GPU task definition that run the training image (see training/ecs.py).",
            )
        return cls(
            cluster=ecs.cluster,
            task_definition=ecs.task_definition,
            container=ecs.container or cls.container,
            subnets=ecs.subnets,
            security_groups=ecs.security_groups,
            script=ecs.script or cls.script,
        )

    def run_task_params(self, env: dict[str, str]) -> dict[str, object]:
        """`run_task_params` for PipesECSClient.run: one GPU, the script as the command, the env."""
        params: dict[str, object] = {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "launchType": self.launch_type,
            "count": 1,
            "overrides": {"containerOverrides": [{
                "name": self.container,
                "command": ["python", self.script],
                "environment": [{"name": key, "value": value} for key, value in sorted(env.items())],
                "resourceRequirements": [{"type": "GPU", "value": "1"}],
            }]},
        }
        if self.subnets:
            params["networkConfiguration"] = {"awsvpcConfiguration": {
                "subnets": list(self.subnets), "securityGroups": list(self.security_groups), "assignPublicIp": "DISABLED"}}
        return params

