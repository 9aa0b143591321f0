"""The EXL2 conversion's external system: the process that runs exllamav2's converter."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import dagster as dg

from serving.quantization import DEFAULT_BITS, DEFAULT_HEAD_BITS, check_bits, current_python
from twin.errors import TwinError
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
        base = Settings.from_env()
        home = Path(self.twin_home)
        uri = self.mlflow_tracking_uri or (
            base.mlflow_tracking_uri if base.home == home else f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        return dataclasses.replace(base, home=home, mlflow_tracking_uri=uri)

    def interpreter(self) -> str:
        check_bits(self.bits)
        return self.python or current_python()


def exl2_bits_from_env() -> float:
    """TWIN_EXL2_BITS: the build the asset makes is the one serving looks for."""
    value = os.environ.get("TWIN_EXL2_BITS") or str(DEFAULT_BITS)
    try:
        bits = float(value)
    except ValueError:
        raise TwinError(f"TWIN_EXL2_BITS={value!r} is not a number.", "set it to e.g. 4.5.") from None
    check_bits(bits)
    return bits
