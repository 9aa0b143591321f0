"""The EXL2 conversion's external system: the process that runs exllamav2's converter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg

from serving.quantization import DEFAULT_BITS, DEFAULT_HEAD_BITS, check_bits, current_python
from twin.settings import Settings


class Exl2Resource(dg.ConfigurableResource):
    """`target="local"`: a PipesSubprocessClient on this host (needs CUDA and `make gpu`).
    Another Pipes client (ECS GPU task, a GPU code location) replaces it in production."""

    twin_home: str
    mlflow_tracking_uri: str | None = None
    bits: float = DEFAULT_BITS
    head_bits: int = DEFAULT_HEAD_BITS
    python: str | None = None  # the interpreter with exllamav2 installed; default: this one
    target: str = "local"

    def settings(self) -> Settings:
        settings = Settings.from_env(home=Path(self.twin_home))
        if self.mlflow_tracking_uri:
            settings = dataclasses.replace(settings, mlflow_tracking_uri=self.mlflow_tracking_uri)
        return settings

    def interpreter(self) -> str:
        check_bits(self.bits)
        return self.python or current_python()
