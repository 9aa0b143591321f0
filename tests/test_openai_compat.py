"""What OpenAI-compatible clients expect of the API (as vLLM, Ollama and TabbyAPI behave): text
parts, stop and seed, a 400 naming an unsupported field, GET /v1/models/{id}, /v1/embeddings
with the search encoder, and usage in its own final chunk when asked. The official client, a
real server and model."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.serving_support import RunningServer
from twin.embedding import load_embedder
from twin.retrieval import encode_queries

PLAIN = {"retrieval": False}  # generation only: these tests are about the API, not retrieval


@pytest.fixture(scope="module")
def client(serving_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{serving_server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_message_content_may_be_an_array_of_text_parts(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="maya-lindqvist", max_tokens=4, extra_body=PLAIN,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello"},
                                                {"type": "text", "text": " in one word."}]}])
    assert completion.choices[0].message.content


@pytest.mark.parametrize("field, value", [("n", 2), ("tools", [{"type": "function", "function": {"name": "f"}}]),
                                          ("response_format", {"type": "json_object"}), ("logprobs", True)])
def test_unsupported_fields_are_refused_by_name(client: openai.OpenAI, field: str, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="maya-lindqvist", max_tokens=4,
                                       messages=[{"role": "user", "content": "hi"}], **{field: value})
    assert raised.value.body["param"] == field


def test_stop_sequences_end_the_answer_and_are_cut(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Count from one to twenty, separated by commas."}]
    free = client.chat.completions.create(model="maya-lindqvist", max_tokens=40, messages=messages, extra_body=PLAIN)
    assert "," in free.choices[0].message.content
    cut = client.chat.completions.create(model="maya-lindqvist", max_tokens=40, messages=messages, stop=[","],
                                         extra_body=PLAIN)
    text = cut.choices[0].message.content
    assert "," not in text and cut.choices[0].finish_reason == "stop"
    assert free.choices[0].message.content.startswith(text)


def test_a_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return client.chat.completions.create(
            model="maya-lindqvist", max_tokens=16, temperature=1.3, seed=seed, extra_body=PLAIN,
            messages=[{"role": "user", "content": "Invent a name for a cat."}]).choices[0].message.content

    assert sample(11) == sample(11)
    assert len({sample(seed) for seed in (1, 2, 3)}) > 1


def test_one_model_can_be_retrieved(client: openai.OpenAI) -> None:
    assert client.models.retrieve("maya-lindqvist").id == "maya-lindqvist"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nobody")


def test_embeddings_are_the_search_query_vectors(client: openai.OpenAI, serving_server: RunningServer) -> None:
    model = serving_server.runtime.settings.embedding_model
    result = client.embeddings.create(model=model, input=["postgres table bloat", "parrotfish sand"])
    assert [item.index for item in result.data] == [0, 1] and len(result.data[0].embedding) == 384
    expected = encode_queries(load_embedder(model), ["postgres table bloat"])[0].tolist()
    assert np.allclose(result.data[0].embedding, expected, atol=1e-6)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-large", input="x")


def test_usage_comes_in_its_own_final_chunk_only_when_asked(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    chunks = list(client.chat.completions.create(model="maya-lindqvist", max_tokens=4, messages=messages,
                                                 stream=True, stream_options={"include_usage": True},
                                                 extra_body=PLAIN))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert all(chunk.usage is None for chunk in chunks[:-1])
    plain = list(client.chat.completions.create(model="maya-lindqvist", max_tokens=4, messages=messages,
                                                stream=True, extra_body=PLAIN))
    assert all(chunk.usage is None for chunk in plain) and plain[-1].choices[0].finish_reason
