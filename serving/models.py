"""Which model answers for a twin, loaded once and swapped when the registry's `champion` moves.

The alias is re-read at most every `TWIN_MODEL_CHECK_SECONDS`; a new version is loaded beside the
old one and replaces it for the next request, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from serving.backends.base import GenerationBackend, choose_backend_name, generates_remotely
from serving.config import ServingConfig
from serving.quantization import exl2_folder
from training.registry import ServingModel, resolve_serving_model
from twin.errors import TwinError
from twin.settings import Settings

log = logging.getLogger("twin.serving")


class ModelUnavailable(Exception):
    """No model can answer for a twin right now (503)."""

    def __init__(self, error: TwinError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class LoadedModel:
    backend: GenerationBackend
    model: ServingModel


class ModelManager:
    def __init__(self, settings: Settings, config: ServingConfig) -> None:
        self.settings = settings
        self.config = config
        self._resolved: dict[str, tuple[ServingModel, float]] = {}
        self._loaded: OrderedDict[tuple[str, str], GenerationBackend] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one model load at a time (memory)

    def get(self, twin: str | None) -> LoadedModel:
        """The model for `twin` (None: the base model); raises ModelUnavailable with the fix."""
        if generates_remotely(self.config.backend, self.config.model_endpoint):  # no registry, no weights here
            return self._remote(twin)
        model = self._resolve(twin)
        try:
            backend_name = choose_backend_name(
                self.config.backend, has_exl2_weights=self._exl2_path(twin, model) is not None,
                model_endpoint=None)
        except TwinError as error:
            raise ModelUnavailable(error) from error
        key = (backend_name, model.path)
        with self._lock:
            backend = self._loaded.get(key)
            if backend is not None:
                self._loaded.move_to_end(key)
                return LoadedModel(backend, model)
        with self._load_lock:
            with self._lock:
                backend = self._loaded.get(key)
            if backend is None:
                backend = self._load(backend_name, twin, model)
                with self._lock:
                    self._loaded[key] = backend
                    while len(self._loaded) > max(1, self.config.max_loaded_models):
                        _, evicted = self._loaded.popitem(last=False)
                        evicted.close()  # requests still holding it finish; nothing new uses it
        return LoadedModel(backend, model)

    def loaded(self) -> list[str]:
        with self._lock:
            return [f"{name}:{path}" for name, path in self._loaded]

    def _resolve(self, twin: str | None) -> ServingModel:
        cache_key = twin or ""
        now = time.monotonic()
        with self._lock:
            cached = self._resolved.get(cache_key)
        if cached is not None and now - cached[1] < self.config.model_check_ttl_s:
            return cached[0]
        try:
            model = resolve_serving_model(self.settings, twin)
        except TwinError as error:
            if cached is not None:  # the registry is down: keep serving what we have
                log.warning("model registry check failed, keeping %s: %s", cached[0].name, error.message)
                return cached[0]
            raise ModelUnavailable(error) from error
        except Exception as error:  # noqa: BLE001 - any registry failure means "no model yet"
            if cached is not None:
                return cached[0]
            raise ModelUnavailable(TwinError(
                f"No model could be resolved for twin {twin!r}: {type(error).__name__}: {error}",
                "check MLFLOW_TRACKING_URI and TWIN_BASE_MODEL.")) from error
        if cached is not None and cached[0] != model:
            log.info("twin %s: champion moved to %s version %s", twin, model.name, model.version)
        with self._lock:
            self._resolved[cache_key] = (model, now)
        return model

    def _exl2_path(self, twin: str | None, model: ServingModel) -> str | None:
        folder = exl2_folder(self.settings, twin, model.version, self.config.exl2_bits) / "model"
        return str(folder) if (folder / "config.json").is_file() else None

    def _load(self, backend_name: str, twin: str | None, model: ServingModel) -> GenerationBackend:
        started = time.perf_counter()
        try:
            if backend_name == "exllamav2":
                from serving.backends.exllamav2_backend import ExLlamaV2Backend, ExLlamaV2Options

                path = self._exl2_path(twin, model)
                if path is None:
                    raise TwinError(
                        f"{model.name} version {model.version} has no EXL2 build.",
                        "materialize the models/exl2 asset for this twin, or set "
                        "TWIN_GENERATION_BACKEND=transformers.")
                backend: GenerationBackend = ExLlamaV2Backend(path, ExLlamaV2Options(
                    draft_model=self.config.exl2_draft_model, ngram_draft=self.config.exl2_ngram_draft))
            else:
                from serving.backends.transformers_backend import TransformersBackend

                backend = TransformersBackend(model.path)
        except TwinError as error:
            raise ModelUnavailable(error) from error
        except Exception as error:  # noqa: BLE001 - a broken folder must not crash the service
            raise ModelUnavailable(TwinError(
                f"The model {model.name} ({model.path}) could not be loaded: {type(error).__name__}: {error}",
                "check the model folder, or move the champion alias back to a working version.")) from error
        log.info("loaded %s with %s in %.1f s", model.path, backend_name, time.perf_counter() - started)
        return backend

    def _remote(self, twin: str | None) -> LoadedModel:
        from serving.backends.remote import RemoteBackend

        try:
            choose_backend_name("remote", has_exl2_weights=False, model_endpoint=self.config.model_endpoint)
        except TwinError as error:
            raise ModelUnavailable(error) from error
        key = ("remote", twin or "base")
        with self._lock:
            backend = self._loaded.get(key)
            if backend is None:
                backend = RemoteBackend(str(self.config.model_endpoint), twin or "base",
                                        self.config.model_api_key, self.config.generation_timeout_s)
                self._loaded[key] = backend
        remote = ServingModel(str(self.config.model_endpoint), f"remote:{twin or 'base'}", None, None)
        return LoadedModel(backend, remote)

    def close(self) -> None:
        with self._lock:
            for backend in self._loaded.values():
                backend.close()
            self._loaded.clear()
