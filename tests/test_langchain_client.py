"""LangChain's ChatOpenAI against the serving API (a real server and model): the client most
RAG applications are built with: invoke, list-of-parts message content, stop, streaming, errors."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from tests.serving_support import RunningServer

PLAIN = {"retrieval": False}


def chat(server: RunningServer, **options: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120, **options)


@pytest.fixture(scope="module")
def server(serving_server: RunningServer) -> RunningServer:
    return serving_server


def test_invoke_answers_with_sources_and_the_model_that_answered(server: RunningServer) -> None:
    reply = chat(server, model="priya-raman", max_tokens=16).invoke(
        "How do I stop generated cave levels from leaving sealed-off pockets the player can't reach?")
    assert reply.content.strip()
    assert reply.response_metadata["model_name"] == "priya-raman"
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    assert reply.usage_metadata["input_tokens"] > 0 and 0 < reply.usage_metadata["output_tokens"] <= 16


def test_list_content_and_stop(server: RunningServer) -> None:
    model = chat(server, model="maya-lindqvist", max_tokens=40, extra_body=PLAIN)
    messages = [HumanMessage(content=[{"type": "text", "text": "Count from one to twenty,"},
                                      {"type": "text", "text": " separated by commas."}])]
    free = model.invoke(messages).content
    assert "," in free
    cut = model.invoke(messages, stop=[","]).content
    assert "," not in cut and free.startswith(cut)


def test_streaming_yields_the_same_text_as_invoke(server: RunningServer) -> None:
    model = chat(server, model="maya-lindqvist", max_tokens=12, temperature=0, extra_body=PLAIN)
    question = "Name one thing autovacuum does."
    pieces = [chunk.content for chunk in model.stream(question)]
    assert len([piece for piece in pieces if piece]) > 1  # really streamed, token by token
    # the same greedy tokens; the complete answer is the streamed text, ended (with …) when cut off
    streamed, answered = " ".join("".join(pieces).split()), " ".join(model.invoke(question).content.split())
    assert answered and streamed.startswith(answered.removesuffix("…").rstrip())


def test_an_unknown_twin_is_an_error_langchain_raises(server: RunningServer) -> None:
    import openai

    with pytest.raises(openai.NotFoundError, match="Unknown twin"):
        chat(server, model="nobody-at-all", max_tokens=4).invoke("hello")
