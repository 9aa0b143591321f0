"""`twin serve`: run the API with uvicorn, refusing to listen beyond this machine without keys."""

from __future__ import annotations

import ipaddress

from serving.config import ROLES, ServingConfig
from twin.errors import TwinError
from twin.settings import Settings

LOOPBACK_NAMES = ("localhost",)


def check_bind(host: str, config: ServingConfig) -> None:
    """Without TWIN_API_KEYS only loopback addresses are allowed."""
    if config.api_keys:
        return
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise TwinError(
        f"Refusing to listen on {host} without API keys: anyone who can reach it could use the twins.",
        "set TWIN_API_KEYS (e.g. `TWIN_API_KEYS='<long-key>=*'`) or listen on 127.0.0.1.",
    )


def serve(settings: Settings, host: str, port: int, role: str) -> None:
    import uvicorn

    from serving.app import create_app

    config = ServingConfig.from_settings(settings)
    if role not in ROLES:
        raise TwinError(f"Unknown role {role!r}.", f"use one of {', '.join(ROLES)}.")
    check_bind(host, config)
    if role == "rag" and not config.model_endpoint:
        raise TwinError("`--role rag` generates through a separate model service, and none is configured.",
                        "set TWIN_MODEL_ENDPOINT=http://MODEL_HOST:PORT (a `twin serve --role model`).")
    if role == "rag":
        config = ServingConfig(**{**config.__dict__, "backend": "remote"})
    if role == "model" and config.backend == "remote":
        raise TwinError("`--role model` generates locally, but TWIN_GENERATION_BACKEND=remote.",
                        "set TWIN_GENERATION_BACKEND to auto, exllamav2 or transformers on the model host.")
    if role == "model" and config.model_endpoint:
        config = ServingConfig(**{**config.__dict__, "model_endpoint": None})
    app = create_app(settings, config, role)
    print(f"serving role={role} on http://{host}:{port} (chat page: /, API: /v1, metrics: /metrics)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
