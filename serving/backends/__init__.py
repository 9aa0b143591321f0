"""Generation backends behind one interface: ExLlamaV2 (CUDA), transformers (CPU/GPU), remote."""

from serving.backends.base import GenerationBackend, Message, PromptTooLong, choose_backend_name

__all__ = ["GenerationBackend", "PromptTooLong", "Message", "choose_backend_name"]
