"""Errors in OpenAI's JSON shape, and the one mapping from domain errors to HTTP statuses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from serving.models import ModelUnavailable
from serving.rag import DatabaseUnavailable, OutOfScope, UnknownTwin
from twin.errors import TwinError

T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


class BodyTooLarge(HTTPException):
    """Raised while the body is read (FastAPI passes HTTPExceptions through unchanged)."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


def error_response(status: int, message: str, kind: str = "invalid_request_error",
                   param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status)


async def call(function: Callable[..., T], *args: object) -> T:
    """Run blocking domain code off the event loop, mapping its errors to HTTP statuses."""
    try:
        return await asyncio.to_thread(function, *args)
    except UnknownTwin as error:
        raise ApiError(404, f"{error.message} {error.fix}", "not_found_error", "model") from error
    except OutOfScope as error:
        raise ApiError(403, error.message, "permission_error") from error
    except DatabaseUnavailable as error:
        raise ApiError(503, f"The database is unavailable: {error.message} Fix: {error.fix}",
                       "service_unavailable") from error
    except ModelUnavailable as error:
        raise ApiError(503, f"No model is available: {error.error.message} Fix: {error.error.fix}",
                       "service_unavailable") from error
    except TwinError as error:
        raise ApiError(400, f"{error.message} {error.fix}".strip()) from error


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal in the same JSON shape, counted in `twin_rejected_requests_total` by status."""

    def count(request: Request, status: int) -> None:
        request.app.state.runtime.metrics.rejected.labels(str(status)).inc()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        count(request, error.status)
        return error_response(error.status, error.message, error.kind, error.param)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        count(request, 413)
        limit = request.app.state.runtime.config.max_request_bytes
        return error_response(413, f"The request body is over {limit:,} bytes (TWIN_MAX_REQUEST_BYTES).")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            count(request, 400)
            return error_response(400, "The request body is not valid JSON.", param=None)
        count(request, 422)
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "body"
        message = "; ".join(
            f"{'.'.join(str(p) for p in problem.get('loc', ())[1:]) or 'body'}: {problem.get('msg')}"
            for problem in problems[:5])
        return error_response(422, message, param=where)
