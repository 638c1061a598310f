"""What one server answers with: a text model, an embedding model and saved prompt programs,
loaded once and used through one :class:`~promptlearning.serving.batching.Batcher`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlearning.models.interface import LanguageModel, TokenLevelModel
from promptlearning.serving.batching import Batcher, BatchingModel, RequestLimits
from promptlearning.serving.errors import APIError


@dataclass
class ServedModels:
    """Models by the name clients use, each behind the shared batcher."""

    text: dict[str, LanguageModel] = field(default_factory=dict)
    embedders: dict[str, LanguageModel] = field(default_factory=dict)
    programs: dict[str, Any] = field(default_factory=dict)  # name -> PromptProgram
    error: str | None = None  # why loading failed
    loaded: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def load(
        cls,
        *,
        model: str | None,
        served_name: str | None = None,
        backend: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        embedding_model: str | None = None,
        programs: dict[str, str] | None = None,
    ) -> ServedModels:
        """Load everything (slow: call it off the event loop). An embedding model that is not pulled
        is left out with a warning rather than failing the server."""
        import warnings

        from promptlearning.models import hub, load_model
        from promptlearning.training.program import load_program

        served = cls()
        if model is not None:
            served.text[served_name or model] = load_model(model, backend=backend, device=device, dtype=dtype)
        if embedding_model is not None:
            if embedding_model in hub.EMBEDDED_MODELS and not hub.is_pulled(embedding_model):
                warnings.warn(
                    f"{embedding_model} is not pulled: /v1/embeddings is off "
                    f"(`promptlearning models pull {embedding_model}`)",
                    UserWarning,
                    stacklevel=2,
                )
            else:
                served.embedders[embedding_model] = load_model(embedding_model, device=device)
        for name, directory in (programs or {}).items():
            served.programs[name] = load_program(Path(directory), device=device)
        served.loaded.set()
        return served

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and self.error is None

    def text_model(self, name: str | None) -> tuple[str, LanguageModel]:
        """The text model a request names (the only one when it names none)."""
        return self._pick(self.text, name, "model")

    def token_model(self, name: str | None) -> tuple[str, Any]:
        """A text model with token-level access (``/v1/completions`` and chat need one)."""
        served_name, model = self.text_model(name)
        if not isinstance(model, TokenLevelModel):
            raise APIError(
                400,
                f"{served_name} ({type(model).__name__}) has no token-level access; OpenAI-style "
                "completions need a causal LM on the hf backend",
                code="unsupported",
            )
        return served_name, model

    def embedder(self, name: str | None) -> tuple[str, LanguageModel]:
        return self._pick(self.embedders, name, "embedding model")

    def program(self, name: str) -> Any:
        if name not in self.programs:
            known = ", ".join(sorted(self.programs)) or "none"
            raise APIError(404, f"unknown program {name!r}; served programs: {known}", code="program_not_found")
        return self.programs[name]

    @staticmethod
    def _pick(models: dict[str, Any], name: str | None, what: str) -> tuple[str, Any]:
        if name is None or name == "":
            if len(models) == 1:
                return next(iter(models.items()))
            if not models:
                raise APIError(404, f"this server has no {what}", code="model_not_found")
            raise APIError(400, f"name the {what}: this server has {', '.join(sorted(models))}", param="model")
        if name not in models:
            known = ", ".join(sorted(models)) or "none"
            raise APIError(404, f"unknown {what} {name!r}; served: {known}", param="model", code="model_not_found")
        return name, models[name]

    def batching(
        self,
        model: LanguageModel,
        batcher: Batcher,
        *,
        limits: RequestLimits | None = None,
        cancel: threading.Event | None = None,
    ) -> BatchingModel:
        """``model`` as one request's methods see it in the server: every call batched with concurrent
        requests, checked against the request's ``limits``, abandoned when ``cancel`` is set."""
        return BatchingModel(model, batcher, limits=limits, cancel=cancel)
