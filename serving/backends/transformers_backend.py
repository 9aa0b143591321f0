"""transformers on CPU (or a GPU without an EXL2 build): streaming through TextIteratorStreamer,
stopped between tokens when the client leaves or the deadline passes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from serving.backends.base import HuggingFaceTokenizer, Message, PromptTooLong
from twin.errors import TwinError


class TransformersBackend(HuggingFaceTokenizer):
    name = "transformers"

    def __init__(self, model_path: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        if not (Path(model_path) / "config.json").is_file():
            raise TwinError(
                f"The model folder {model_path} holds no transformers model (no config.json).",
                "train a champion (`twin train`) or unset TWIN_BASE_MODEL to serve the bundled SmolLM2.",
            )
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if not self.tokenizer.chat_template:
            raise TwinError(
                f"The model in {model_path} has no chat template, so prompts cannot match training.",
                "serve an instruct/chat model, or save a chat_template with its tokenizer.",
            )
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float, cancel: threading.Event,
        seed: int | None = None,
    ) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        prompt = self.render_prompt(messages)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if prompt_tokens + max_tokens > self.context_window:
            raise PromptTooLong(
                f"The prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the model "
                f"window of {self.context_window} tokens.",
                "ask a shorter question, lower max_tokens, or lower TWIN_CONTEXT_TOKENS.",
            )
        stop = threading.Event()  # set when this consumer stops reading, for any reason

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:  # type: ignore[no-untyped-def]
                return stop.is_set() or cancel.is_set()

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {
            "do_sample": False, "temperature": None, "top_p": None, "top_k": None}

        def generate() -> None:
            try:
                if seed is not None and temperature > 0:
                    import torch

                    torch.manual_seed(seed)  # torch's sampling RNG, set in the generating thread
                self.model.generate(
                    **inputs, max_new_tokens=max_tokens, streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Stop()]),
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    **sampling,
                )
            except BaseException as error:  # re-raised in the consumer's thread
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=generate, name="twin-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
                if cancel.is_set():
                    break
        finally:
            stop.set()
            worker.join(timeout=30)
        if failure:
            raise failure[0]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
