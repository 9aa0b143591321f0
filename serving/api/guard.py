"""Who may call what: the ASGI guard in front of every route (key, body size, timing) and the
per-twin key checks the routes make."""

from __future__ import annotations

import time

from fastapi import Request

from serving.api.errors import ApiError, BodyTooLarge, error_response
from serving.api.runtime import Runtime

MISSING_KEY = "Missing or unknown API key: send `Authorization: Bearer KEY` (or X-API-Key)."


class RequestGuard:
    """ASGI middleware, outermost: request timing for /metrics, then, before any body is read,
    the API key (401 for a missing or unknown one) and the body size (413 past
    TWIN_MAX_REQUEST_BYTES, by Content-Length or while reading). A plain ASGI middleware, unlike
    @app.middleware("http"), lets handlers see the client's disconnect."""

    def __init__(self, app, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
        self.app, self.runtime = app, runtime

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_observed(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await self._refuse(scope, send_observed, *refusal)
                return
            await self.app(scope, self._capped(receive), send_observed)
        except BodyTooLarge:
            await self._refuse(scope, send_observed, *self._too_large())
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            if endpoint != "/metrics":
                self.runtime.metrics.request_seconds.labels(endpoint, str(status["code"])).observe(
                    time.perf_counter() - started)

    def _refusal(self, scope) -> tuple[int, str, str] | None:  # type: ignore[no-untyped-def]
        config = self.runtime.config
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if config.api_keys and scope["path"].startswith("/v1/"):
            if config.find_key(key_from_headers(headers)) is None:
                return (401, MISSING_KEY, "authentication_error")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > config.max_request_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> tuple[int, str, str]:
        limit = self.runtime.config.max_request_bytes
        return (413, f"The request body is over {limit:,} bytes (TWIN_MAX_REQUEST_BYTES).",
                "invalid_request_error")

    def _capped(self, receive):  # type: ignore[no-untyped-def]
        limit = self.runtime.config.max_request_bytes
        seen = {"bytes": 0}

        async def capped_receive():  # type: ignore[no-untyped-def]
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise BodyTooLarge
            return message

        return capped_receive

    async def _refuse(self, scope, send, status: int, message: str, kind: str) -> None:  # type: ignore[no-untyped-def]
        self.runtime.metrics.rejected.labels(str(status)).inc()
        response = error_response(status, message, kind)
        if status == 413:
            response.headers["Connection"] = "close"
        await response(scope, _no_body, send)


async def _no_body() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}


def key_from_headers(headers: dict[str, str]) -> str | None:
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return headers.get("x-api-key") or None


def check_key(runtime: Runtime, request: Request, twin: str | None, key: str | None = None) -> str | None:
    """The request's API key, if it may use `twin` (None: any twin); 401 or 403 otherwise."""
    if key is None:
        key = key_from_headers({name.lower(): value for name, value in request.headers.items()})
    verdict = runtime.config.key_allows(key, twin)
    if verdict == 401:
        raise ApiError(401, MISSING_KEY, "authentication_error")
    if verdict == 403:
        raise ApiError(403, f"This API key is not allowed to use twin {twin!r}.", "permission_error")
    return key


def caller(runtime: Runtime, key: str | None) -> dict[str, object]:
    """What RagService.prepare needs to know of the caller: the twins its key may read, its id."""
    entry = runtime.config.find_key(key)
    return {"scope": runtime.config.scope_of(key), "api_key_id": entry.id if entry else None}
