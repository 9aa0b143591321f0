"""The Axolotl 0.19 YAML, generated from a typed profile: `cpu-demo` (a few steps that finish on a
laptop) and `gpu` (the reference implementations' settings: LoRA r 32, alpha 32, lr 3e-4,
3 epochs, sequence length 2048, bf16, packing; QLoRA as an option)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from twin.errors import TwinError


@dataclass(frozen=True)
class TrainingProfile:
    name: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    learning_rate: float
    num_epochs: int
    max_steps: int | None  # None: train the whole num_epochs
    sequence_len: int
    micro_batch_size: int
    gradient_accumulation_steps: int
    sample_packing: bool
    mixed_precision: bool  # bf16 + tf32 (GPU only)
    qlora: bool = False  # 4-bit base weights (bitsandbytes, GPU only)
    cpu: bool = False  # CPU: no mixed precision, no fused LoRA kernels

    def params(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


PROFILES: dict[str, TrainingProfile] = {
    # 24 steps (96 examples, about two thirds of a sample twin's) at a high LoRA learning rate: long enough on
    # 2 CPU cores for the loss to fall and the answers to move towards the author's voice.
    "cpu-demo": TrainingProfile(
        name="cpu-demo", lora_r=16, lora_alpha=32, lora_dropout=0.05, learning_rate=1e-3, num_epochs=1,
        max_steps=24, sequence_len=256, micro_batch_size=4, gradient_accumulation_steps=1,
        sample_packing=False, mixed_precision=False, cpu=True,
    ),
    "gpu": TrainingProfile(
        name="gpu", lora_r=32, lora_alpha=32, lora_dropout=0.0, learning_rate=3e-4, num_epochs=3,
        max_steps=None, sequence_len=2048, micro_batch_size=2, gradient_accumulation_steps=8,
        sample_packing=True, mixed_precision=True,
    ),
}


def training_profile(name: str, max_steps: int | None = None, qlora: bool = False) -> TrainingProfile:
    if name not in PROFILES:
        raise TwinError(f"There is no training profile {name!r}.", f"Use one of: {', '.join(PROFILES)}.")
    profile = PROFILES[name]
    if max_steps is not None:
        profile = replace(profile, max_steps=max_steps)
    if qlora:
        if profile.cpu:
            raise TwinError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit weights).", "Use --profile gpu on a GPU host.")
        profile = replace(profile, qlora=True)
    return profile


def axolotl_config(
    profile: TrainingProfile,
    base_model: str,
    train_file: Path,
    output_dir: Path,
    prepared_dir: Path,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    run_name: str,
) -> dict[str, object]:
    config: dict[str, object] = {
        "base_model": base_model,
        "datasets": [{
            "path": str(train_file), "ds_type": "parquet", "type": "chat_template",
            "field_messages": "messages", "roles_to_train": ["assistant"],
        }],
        "chat_template": "tokenizer_default",  # the format serving uses: the model's own chat template
        "dataset_prepared_path": str(prepared_dir),
        "val_set_size": 0,  # evaluation uses the held-out documents, not a random slice
        "output_dir": str(output_dir),
        "adapter": "qlora" if profile.qlora else "lora",
        "load_in_4bit": profile.qlora,
        "lora_r": profile.lora_r,
        "lora_alpha": profile.lora_alpha,
        "lora_dropout": profile.lora_dropout,
        "lora_target_linear": True,
        "sequence_len": profile.sequence_len,
        "sample_packing": profile.sample_packing,
        "pad_to_sequence_len": profile.sample_packing,
        "micro_batch_size": profile.micro_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps,
        "num_epochs": profile.num_epochs,
        "learning_rate": profile.learning_rate,
        "optimizer": "adamw_torch" if profile.cpu else "adamw_torch_fused",
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.0 if profile.cpu else 0.05,
        "bf16": profile.mixed_precision,
        "fp16": False,
        "tf32": profile.mixed_precision,
        "gradient_checkpointing": not profile.cpu,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 42,
        "use_mlflow": True,
        "mlflow_tracking_uri": mlflow_tracking_uri,
        "mlflow_experiment_name": mlflow_experiment,
        "mlflow_run_name": run_name,
    }
    if profile.max_steps is not None:
        config["max_steps"] = profile.max_steps
    if profile.cpu:  # the fused LoRA kernels allocate on CUDA
        config.update({"lora_mlp_kernel": False, "lora_qkv_kernel": False, "lora_o_kernel": False})
    return config


def write_config(config: dict[str, object], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
