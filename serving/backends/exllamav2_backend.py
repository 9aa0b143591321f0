"""ExLlamaV2 on CUDA: EXL2 weights, the dynamic generator (continuous batching across requests),
Q4 KV cache, paged attention when flash-attn is present, optional n-gram or draft-model
speculative decoding.

`exllamav2` compiles CUDA code when imported, so it is imported only inside `__init__`, after
`require_exllamav2()` has checked that this host has CUDA and the package. This module itself is
safe to import anywhere.
"""

from __future__ import annotations

import importlib.util
import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from serving.backends.base import HuggingFaceTokenizer, Message, require_exllamav2

_DONE = object()


@dataclass(frozen=True)
class ExLlamaV2Options:
    max_seq_len: int = 4096
    max_batch_size: int = 16
    draft_model: str | None = None  # an EXL2 folder of a small model with the same tokenizer
    ngram_draft: bool = False
    num_draft_tokens: int = 4


class ExLlamaV2Backend(HuggingFaceTokenizer):
    name = "exllamav2"

    def __init__(self, exl2_path: str, options: ExLlamaV2Options | None = None) -> None:
        require_exllamav2()
        from exllamav2 import ExLlamaV2, ExLlamaV2Cache_Q4, ExLlamaV2Config
        from exllamav2.generator import ExLlamaV2DynamicGenerator
        from transformers import AutoTokenizer

        options = options or ExLlamaV2Options()
        self.options = options
        self.context_window = options.max_seq_len
        # the HF tokenizer in the EXL2 folder (-cf copies it) renders the same chat template as training
        self.tokenizer = AutoTokenizer.from_pretrained(exl2_path)
        config = ExLlamaV2Config(exl2_path)
        config.max_seq_len = min(config.max_seq_len, options.max_seq_len)
        self.model = ExLlamaV2(config)
        self.cache = ExLlamaV2Cache_Q4(self.model, max_seq_len=config.max_seq_len * options.max_batch_size, lazy=True)
        self.model.load_autosplit(self.cache, progress=False)
        from exllamav2 import ExLlamaV2Tokenizer

        self.exl2_tokenizer = ExLlamaV2Tokenizer(config)
        draft_model = draft_cache = None
        if options.draft_model:
            draft_config = ExLlamaV2Config(options.draft_model)
            draft_config.max_seq_len = config.max_seq_len
            draft_model = ExLlamaV2(draft_config)
            draft_cache = ExLlamaV2Cache_Q4(draft_model, max_seq_len=self.cache.max_seq_len, lazy=True)
            draft_model.load_autosplit(draft_cache, progress=False)
        self.generator = ExLlamaV2DynamicGenerator(
            model=self.model, cache=self.cache, tokenizer=self.exl2_tokenizer,
            max_batch_size=options.max_batch_size,
            paged=importlib.util.find_spec("flash_attn") is not None,
            draft_model=draft_model, draft_cache=draft_cache,
            num_draft_tokens=options.num_draft_tokens if (draft_model or options.ngram_draft) else 0,
            use_ngram_draft=options.ngram_draft and draft_model is None,
        )
        self._lock = threading.Lock()
        self._outputs: dict[int, queue.Queue[object]] = {}
        self._jobs: dict[int, object] = {}
        self._ids = itertools.count()
        self._wake = threading.Event()
        self._closed = False
        self._driver = threading.Thread(target=self._drive, name="exllamav2-generator", daemon=True)
        self._driver.start()

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float, cancel: threading.Event,
        seed: int | None = None,
    ) -> Iterator[str]:
        from exllamav2.generator import ExLlamaV2DynamicJob, ExLlamaV2Sampler

        settings = ExLlamaV2Sampler.Settings()
        settings.temperature = temperature
        if temperature <= 0:
            settings.greedy()
        input_ids = self.exl2_tokenizer.encode(self.render_prompt(messages), add_bos=False,
                                               encode_special_tokens=True)
        identifier = next(self._ids)
        output: queue.Queue[object] = queue.Queue()
        job = ExLlamaV2DynamicJob(input_ids=input_ids, max_new_tokens=max_tokens, gen_settings=settings,
                                  stop_conditions=[self.exl2_tokenizer.eos_token_id], identifier=identifier,
                                  **({"seed": seed} if seed is not None else {}))
        with self._lock:
            self._outputs[identifier] = output
            self._jobs[identifier] = job
            self.generator.enqueue(job)
        self._wake.set()
        try:
            while not cancel.is_set():
                try:
                    item = output.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield str(item)
        finally:
            with self._lock:
                if identifier in self._jobs:
                    self.generator.cancel(self._jobs.pop(identifier))
                self._outputs.pop(identifier, None)

    def _drive(self) -> None:
        """One loop iterates every active job together (continuous batching)."""
        while not self._closed:
            with self._lock:
                pending = self.generator.num_remaining_jobs()
            if not pending:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                with self._lock:
                    results = self.generator.iterate()
            except BaseException as error:  # deliver to every waiting request
                with self._lock:
                    for output in self._outputs.values():
                        output.put(error)
                    self._jobs.clear()
                continue
            for result in results:
                identifier = result.get("identifier")
                with self._lock:
                    output = self._outputs.get(identifier)
                    if result.get("eos"):
                        self._jobs.pop(identifier, None)
                if output is None:
                    continue
                if result.get("text"):
                    output.put(result["text"])
                if result.get("eos"):
                    output.put(_DONE)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._driver.join(timeout=5)
        self.model.unload()
