"""The interface every generation backend implements, and how the backend is chosen."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from typing import Any, Protocol, TypedDict

from twin.errors import TwinError


class Message(TypedDict):
    role: str
    content: str


class PromptTooLong(TwinError):
    """The prompt plus max_tokens does not fit the model's window (a 400, not a server error)."""


class ModelServiceUnavailable(TwinError):
    """The remote model service cannot be reached (a 503 that names it, not a hang)."""


class HuggingFaceTokenizer:
    """Prompt rendering and token counting with the model's own Hugging Face tokenizer and chat
    template; shared by the local backends (transformers, ExLlamaV2), which set `self.tokenizer`."""

    tokenizer: Any

    def render_prompt(self, messages: list[Message]) -> str:
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


class GenerationBackend(Protocol):
    """Streams text for chat messages; `cancel` stops it between tokens."""

    name: str  # "transformers", "exllamav2", "remote"

    def render_prompt(self, messages: list[Message]) -> str:
        """The final prompt the model sees (its chat template applied)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float, cancel: threading.Event,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Text pieces as they are generated; returns early once `cancel` is set. With `seed`,
        sampling (temperature > 0) is repeatable."""
        ...

    def close(self) -> None: ...


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def exllamav2_installed() -> bool:
    return importlib.util.find_spec("exllamav2") is not None


def generates_remotely(configured: str, model_endpoint: str | None) -> bool:
    """The one rule for the remote backend: asked for by name, or `auto` with a model endpoint set."""
    return configured == "remote" or (configured == "auto" and bool(model_endpoint))


def choose_backend_name(configured: str, *, has_exl2_weights: bool, model_endpoint: str | None) -> str:
    """`auto`: the remote backend when a model endpoint is set, else ExLlamaV2 on CUDA hosts with
    exllamav2 and an EXL2 build, otherwise transformers; an explicit choice is checked and refused
    with what to configure."""
    if generates_remotely(configured, model_endpoint):
        if not model_endpoint:
            raise TwinError(
                "TWIN_GENERATION_BACKEND=remote needs a model endpoint.",
                "set TWIN_MODEL_ENDPOINT to the URL of a `twin serve --role model` service "
                "(or any OpenAI-compatible server), e.g. http://gpu-host:8001.",
            )
        return "remote"
    if configured == "exllamav2":
        require_exllamav2()
        return "exllamav2"
    if configured == "transformers":
        return "transformers"
    if has_exl2_weights and cuda_available() and exllamav2_installed():
        return "exllamav2"
    return "transformers"


def require_exllamav2() -> None:
    """Fail fast, before exllamav2 is imported (its import compiles CUDA code)."""
    if not cuda_available():
        raise TwinError(
            "The ExLlamaV2 backend needs a CUDA GPU and this host has none.",
            "set TWIN_GENERATION_BACKEND=transformers (or auto) here, or run `twin serve --role model` "
            "on a CUDA host and point this service at it with TWIN_MODEL_ENDPOINT.",
        )
    if not exllamav2_installed():
        raise TwinError(
            "The ExLlamaV2 backend needs the exllamav2 package, which is not installed.",
            "run `make gpu` on this CUDA host (pip install exllamav2==0.3.2).",
        )
