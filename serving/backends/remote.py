"""A remote OpenAI-compatible model endpoint (a `twin serve --role model` service on a GPU host,
or any server speaking /v1/chat/completions with SSE)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx

from serving.backends.base import Message, ModelServiceUnavailable
from twin.errors import TwinError

CHARS_PER_TOKEN = 4  # the remote model's tokenizer is not here; budgets use this estimate


class RemoteBackend:
    name = "remote"

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.context_window = 8192
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.endpoint, headers=headers,
                                    timeout=httpx.Timeout(timeout_s, connect=5.0))

    def render_prompt(self, messages: list[Message]) -> str:
        # the remote service applies its model's chat template; this is what was sent to it
        return "\n\n".join(f"<{message['role']}>\n{message['content']}" for message in messages)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // CHARS_PER_TOKEN)

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float, cancel: threading.Event,
        seed: int | None = None,
    ) -> Iterator[str]:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": temperature, "stream": True, "retrieval": False}
        if seed is not None:
            body["seed"] = seed
        try:
            with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise TwinError(
                        f"The model endpoint {self.endpoint} answered {response.status_code}: "
                        f"{response.text[:300]}",
                        "check TWIN_MODEL_ENDPOINT, TWIN_MODEL_API_KEY and the model service's log.",
                    )
                for line in response.iter_lines():
                    if cancel.is_set():
                        return  # leaving the block closes the connection: the remote stops too
                    if not line.startswith("data:"):
                        continue
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise TwinError(f"The model endpoint failed: {chunk['error'].get('message')}",
                                        "see the model service's log.")
                    for choice in chunk.get("choices", []):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise ModelServiceUnavailable(
                f"The model service {self.endpoint} is unreachable ({type(error).__name__}: {error}).",
                "start `twin serve --role model` there, or correct TWIN_MODEL_ENDPOINT.",
            ) from error
        except httpx.HTTPError as error:
            raise TwinError(
                f"The model endpoint {self.endpoint} is unreachable ({type(error).__name__}: {error}).",
                "start `twin serve --role model` there, or correct TWIN_MODEL_ENDPOINT.",
            ) from error

    def close(self) -> None:
        self._client.close()
