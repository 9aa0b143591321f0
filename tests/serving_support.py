"""A real uvicorn server in a thread for the serving tests (one per test module or session)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from serving.api.runtime import Runtime
from serving.app import create_app
from serving.config import ServingConfig
from twin.settings import Settings


@dataclass
class RunningServer:
    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serving_settings(twin_home: Path, database_url: str) -> Settings:
    """The test TWIN_HOME's base model, the given database, MLflow in a store of its own."""
    store = twin_home / "serving-mlflow"
    store.mkdir(exist_ok=True)
    return replace(Settings.from_env(), database_url=database_url,
                   mlflow_tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


def serving_config(**overrides: object) -> ServingConfig:
    defaults: dict[str, object] = dict(
        backend="transformers", max_tokens_limit=256, default_max_tokens=16, generation_timeout_s=60.0,
        max_concurrent_generations=1, max_queued_requests=4, model_check_ttl_s=1.0, context_token_budget=600)
    return ServingConfig(**{**defaults, **overrides})  # type: ignore[arg-type]


def start_server(settings: Settings, config: ServingConfig, role: str = "all") -> RunningServer:
    app = create_app(settings, config, role)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="twin-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return RunningServer(url, app, server, thread)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the test server did not start")
