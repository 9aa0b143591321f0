"""Generation in a worker thread, bridged to the event loop: streamed pieces, stop sequences,
the deadline, client disconnects, and the SSE framing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from serving.api.errors import ApiError
from serving.api.runtime import Runtime, Ticket
from serving.backends.base import ModelServiceUnavailable, PromptTooLong
from serving.rag import PreparedRequest
from twin.errors import TwinError

_END = object()


@dataclass
class Outcome:
    pieces: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    stopped: bool = False  # ended by a stop sequence
    served: str | None = None  # the answer as served (RagService.finish): sentence-ended, cited

    @property
    def text(self) -> str:
        return self.served if self.served is not None else "".join(self.pieces).strip()


class GenerationTimeout(Exception):
    pass


class StopScanner:
    """Cuts streamed text at the first stop sequence, holding back a tail that could begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops, self.pending, self.stopped = stops, "", False
        self.hold = max((len(stop) for stop in stops), default=1) - 1

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.pending += piece
        hits = [index for index in (self.pending.find(stop) for stop in self.stops) if index >= 0]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[: min(hits)], ""
            return out
        cut = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, default=str)}\n\n"


async def generate(runtime: Runtime, prepared: PreparedRequest, ticket: Ticket, max_tokens: int,
                   temperature: float, outcome: Outcome, cancel: threading.Event | None = None,
                   stops: tuple[str, ...] = (), seed: int | None = None) -> AsyncIterator[str]:
    """Generation in a worker thread, streamed to the event loop; stops on disconnect, deadline or
    a stop sequence (cut from the text, as OpenAI does)."""
    scanner = StopScanner(stops)
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[object] = asyncio.Queue()
    cancel = cancel or threading.Event()
    backend = prepared.loaded.backend

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(pieces.put_nowait, item)
        except RuntimeError:  # the loop is gone (shutdown)
            cancel.set()

    def produce() -> None:
        try:
            if prepared.fixed_answer is not None:  # retrieval found nothing relevant: say so, generate nothing
                put(prepared.fixed_answer)
                put(_END)
                return
            for piece in backend.stream(prepared.messages, max_tokens=max_tokens, temperature=temperature,
                                        cancel=cancel, seed=seed):
                put(piece)
            put(_END)
        except BaseException as error:  # handed to the consumer
            put(error)

    started = time.perf_counter()
    deadline = loop.time() + runtime.config.generation_timeout_s
    loop.run_in_executor(runtime.executor, produce)
    try:
        while True:
            try:
                item = await asyncio.wait_for(pieces.get(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                outcome.status = "error"
                outcome.error = f"Generation timed out after {runtime.config.generation_timeout_s:g} s " \
                                "(TWIN_GENERATION_TIMEOUT)."
                raise GenerationTimeout from None
            if item is _END:
                tail = scanner.flush()
                if tail:
                    outcome.pieces.append(tail)
                    yield tail
                break
            if isinstance(item, TwinError):
                outcome.status, outcome.error = "error", f"{item.message} {item.fix}".strip()
                raise item
            if isinstance(item, BaseException):
                outcome.status, outcome.error = "error", f"{type(item).__name__}: {item}"
                raise TwinError(f"Generation failed: {outcome.error}", "see the service log.") from item
            text = scanner.feed(str(item))
            if text:
                outcome.pieces.append(text)
                yield text
            if scanner.stopped:
                outcome.stopped = True
                break
    except (asyncio.CancelledError, GeneratorExit):
        outcome.status, outcome.error = "cancelled", "the client disconnected"
        raise
    finally:
        cancel.set()
        ticket.release()
        elapsed = time.perf_counter() - started
        outcome.served = runtime.service.finish(prepared, outcome.text, outcome.status, outcome.error, elapsed * 1000,
                                                max_tokens)
        if prepared.grounded is not None:
            runtime.metrics.answer_grounding.observe(prepared.grounded.grounding)
        tokens = prepared.log.completion_tokens or 0
        runtime.metrics.generated_tokens.labels(backend.name).inc(tokens)
        if tokens and elapsed > 0:
            runtime.metrics.tokens_per_second.labels(backend.name).observe(tokens / elapsed)


async def complete(runtime: Runtime, prepared: PreparedRequest, ticket: Ticket, max_tokens: int,
                   temperature: float, request: Request, stops: tuple[str, ...] = (),
                   seed: int | None = None) -> Outcome:
    """The whole answer for a non-streaming request; generation errors become HTTP errors."""
    outcome = Outcome()
    cancel = threading.Event()
    stream = generate(runtime, prepared, ticket, max_tokens, temperature, outcome, cancel, stops, seed)

    async def watch_disconnect() -> None:
        """A client that leaves a non-streaming request stops its generation and frees its slot."""
        while (await request.receive())["type"] != "http.disconnect":
            pass
        outcome.status, outcome.error = "cancelled", "the client disconnected"
        cancel.set()

    watcher = asyncio.create_task(watch_disconnect())
    try:
        async for _ in stream:
            if cancel.is_set():
                break
    except GenerationTimeout:
        raise ApiError(504, str(outcome.error), "timeout") from None
    except PromptTooLong as error:
        raise ApiError(400, f"{error.message} Fix: {error.fix}", param="max_tokens") from error
    except ModelServiceUnavailable as error:
        raise ApiError(503, f"{error.message} Fix: {error.fix}", "model_service_unavailable") from error
    except TwinError as error:
        raise ApiError(502, f"{error.message} Fix: {error.fix}", "generation_error") from error
    finally:
        watcher.cancel()
        await stream.aclose()
    return outcome


def completion_tokens(prepared: PreparedRequest, outcome: Outcome) -> int:
    return prepared.log.completion_tokens or prepared.loaded.backend.count_tokens(outcome.text)


def usage(prepared: PreparedRequest, outcome: Outcome) -> dict[str, int]:
    prompt = prepared.log.prompt_tokens or 0
    completion = completion_tokens(prepared, outcome)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
