"""Request bodies of the API, and the checks on them that pydantic cannot express."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.api.errors import ApiError
from serving.config import ServingConfig

Category = Literal["article", "post", "repository"]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart] = Field(description="text, or OpenAI's array of text parts")

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


# OpenAI fields this server does not implement: a request using them is refused (400, naming the
# field) rather than answered as if they had been honoured.
UNSUPPORTED = {"tools": None, "tool_choice": None, "functions": None, "function_call": None,
               "logprobs": False, "top_logprobs": None, "n": 1, "response_format": {"type": "text"},
               "logit_bias": None, "audio": None, "modalities": None, "prediction": None}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="the twin (slug or name); GET /v1/models lists them")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, description="up to 4 sequences that end the answer")
    seed: int | None = None
    retrieval: bool = Field(True, description="ground the answer in the twin's writing")
    k: int | None = Field(None, ge=1, le=20)
    category: Category | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"  # the openai client asks for base64


class RagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    twin: str | None = None
    category: Category | None = None
    k: int | None = Field(None, ge=1, le=20)
    max_tokens: int | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False
    expand: int | None = Field(None, ge=0, le=5, description="query variants written by the LLM")


def refuse_unsupported(raw: dict[str, object]) -> None:
    """ChatRequest ignores unknown fields, so the raw body is checked for the ones we must not ignore."""
    for name, harmless in UNSUPPORTED.items():
        value = raw.get(name)
        if value is not None and value != harmless and not (name == "tools" and value == []):
            raise ApiError(400, f"`{name}` is not supported by this server (got {json.dumps(value)[:80]}); "
                                "remove it from the request.", param=name)


def stop_sequences(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > 4 or any(not item for item in stops):
        raise ApiError(400, "stop takes at most 4 non-empty sequences.", param="stop")
    return stops


def max_tokens(config: ServingConfig, requested: int | None) -> int:
    value = config.default_max_tokens if requested is None else requested
    if not 1 <= value <= config.max_tokens_limit:
        raise ApiError(422, f"max_tokens must be between 1 and {config.max_tokens_limit} (got {value}).",
                       param="max_tokens")
    return min(value, config.max_tokens_limit)


def check_question(config: ServingConfig, text: str, param: str) -> str:
    question = text.strip()
    if not question:
        raise ApiError(422, "The question is empty.", param=param)
    if len(question) > config.max_question_chars:
        raise ApiError(422, f"The question is {len(question)} characters long; the limit is "
                            f"{config.max_question_chars} (TWIN_MAX_QUESTION_CHARS).", param=param)
    return question
