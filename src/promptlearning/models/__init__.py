"""Models: the :class:`LanguageModel` interface, its backends and the offline model hub.

``load_model`` resolves a name in this order: an embedded model name (pulled from the cache),
a local ``.gguf`` file (converted once and cached), a local Hugging Face directory, and finally a
hub id (needs internet).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from promptlearning.errors import ModelNotFoundError, UnsupportedOperationError
from promptlearning.models import hub
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    backend_names,
    backend_resolves_names,
    get_backend,
    register_backend,
)

__all__ = [
    "Generation",
    "GenerationConfig",
    "LanguageModel",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "backend_names",
    "check_text_model",
    "load_embedder",
    "load_model",
    "register_backend",
    "resolve_model_dir",
]


@register_backend("hf")
def _hf_backend(path: str | Path, **options: Any) -> LanguageModel:
    from promptlearning.models.hf import load_hf

    return load_hf(path, **options)


@register_backend("llamacpp", resolves_names=True)
def _llamacpp_backend(name_or_path: str | Path, *, pull: bool = False, **options: Any) -> LanguageModel:
    from promptlearning.models.llamacpp import LlamaCppModel

    options.pop("dtype", None)  # the GGUF file's own quantisation is used
    options.pop("batch_size", None)  # one sequence at a time
    options.pop("local_files_only", None)  # always a local file
    name = options.pop("name", Path(str(name_or_path)).name)
    return LlamaCppModel(_gguf_file(str(name_or_path), pull), name=name, **options)


@register_backend("openai", resolves_names=True)
def _openai_backend(model: str | Path, *, pull: bool = False, **options: Any) -> LanguageModel:
    """A model on a server: its name is the server's, nothing loads here."""
    from promptlearning.models.openai import OpenAICompatibleModel

    for local_only in ("device", "dtype", "batch_size", "local_files_only"):
        options.pop(local_only, None)  # the server decides these
    return OpenAICompatibleModel(str(model), **options)


@register_backend("sentence-transformers")
def _sentence_transformers_backend(path: str | Path, **options: Any) -> LanguageModel:
    from promptlearning.models.embeddings import SentenceTransformerModel

    return SentenceTransformerModel(path, **options)


@register_backend("onnx")
def _onnx_backend(path: str | Path, **options: Any) -> LanguageModel:
    from promptlearning.models.onnx_encoder import ONNXEncoder

    for unused in ("device", "dtype", "local_files_only"):
        options.pop(unused, None)  # onnxruntime on the CPU, the exported graph's own types
    return ONNXEncoder(path, **options)


def load_model(
    name_or_path: str | Path = hub.DEFAULT_MODEL,
    *,
    backend: str | None = None,
    pull: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    **options: Any,
) -> LanguageModel:
    """Load a model by embedded name, local path or hub id, with the named backend.

    ``pull=True`` fetches an embedded model into the cache first if it is missing. ``device``
    (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) and ``dtype`` (``auto``, ``float32``,
    ``bfloat16``, ``float16``) are checked here, before anything loads; ``auto`` takes a GPU when
    there is one (:mod:`promptlearning.devices`). Other backend options (``batch_size``,
    ``max_length`` …) pass through ``options``; ``backend="openai"`` takes ``base_url``,
    ``api_key_env``, ``tokenizer``, ``concurrency``, ``timeout`` and ``max_retries``
    (:class:`~promptlearning.models.openai.OpenAICompatibleModel`).
    """
    from promptlearning.devices import check_device_name, check_dtype_name

    options.update(device=check_device_name(device), dtype=check_dtype_name(dtype))
    key = str(name_or_path)
    if not key.strip():
        raise ModelNotFoundError(
            f"no model given (an empty name); use an embedded model ({', '.join(hub.EMBEDDED_MODELS)}), "
            "a local Hugging Face directory or a .gguf file"
        )
    if backend is not None and backend_resolves_names(backend):
        return get_backend(backend)(key, pull=pull, **options)
    path = resolve_model_dir(key, pull=pull)
    if key in hub.EMBEDDED_MODELS:
        return get_backend(backend or hub.EMBEDDED_MODELS[key].default_backend)(path, name=key, **options)
    if isinstance(path, str):  # a hub id
        return _load_hub_id(key, backend or "hf", options)
    return get_backend(backend or _format_backend(path))(path, name=options.pop("name", Path(key).name), **options)


def _format_backend(directory: Path) -> str:
    """The backend that reads a local directory's format: an ONNX or sentence-transformers encoder,
    else transformers."""
    if (directory / "onnx_encoder.json").is_file():
        return "onnx"
    return "sentence-transformers" if (directory / "modules.json").is_file() else "hf"


def check_text_model(name_or_path: str | Path) -> None:
    """Fail before loading when a model cannot score or generate text (a sentence encoder).

    Cheap: it looks at the embedded model's kind or a local directory's files, not the weights.
    """
    key = str(name_or_path)
    spec = hub.EMBEDDED_MODELS.get(key)
    local = Path(key).expanduser()
    is_encoder = (spec is not None and spec.kind != "causal-lm") or (
        local.is_dir() and any((local / f).is_file() for f in ("modules.json", "onnx_encoder.json"))
    )
    if is_encoder:
        text_models = [n for n, s in hub.EMBEDDED_MODELS.items() if s.kind == "causal-lm"]
        raise UnsupportedOperationError(
            f"{key} is a sentence-embedding model: it cannot score or generate text. Use a language model "
            f"({', '.join(text_models)}, or a causal LM directory)"
        )


def resolve_model_dir(name_or_path: str | Path, *, pull: bool = False) -> Path | str:
    """The local Hugging Face directory behind a model name, for code that loads it with ``transformers``.

    Embedded models resolve to their cached (for GGUF models: converted safetensors) directory; a
    ``.gguf`` file to its converted copy, since GGUF-loaded models cannot be trained; anything else
    that is not a local path and looks like ``owner/name`` is returned as is (a hub id).
    """
    key = str(name_or_path)
    if not key.strip():
        raise ModelNotFoundError("no model given (an empty name or path)")
    if key in hub.EMBEDDED_MODELS:
        return hub.pull(key) if pull and not hub.is_pulled(key) else hub.loadable_path(key)
    local = Path(key).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return hub.converted_gguf_dir(local)
    if local.is_dir():
        if not any((local / f).is_file() for f in ("config.json", "modules.json", "onnx_encoder.json")):
            raise ModelNotFoundError(f"{local} is a directory but holds no config.json: not a model directory")
        return local
    if local.exists() or key.startswith((".", "/", "~")) or key.endswith(".gguf"):
        raise ModelNotFoundError(f"{key} is neither a .gguf file nor a model directory")
    if "/" not in key:
        raise ModelNotFoundError(
            f"unknown model {key!r}. Embedded models: {', '.join(hub.EMBEDDED_MODELS)}. "
            "A local Hugging Face directory, a .gguf file or a hub id (owner/name, online only) also works."
        )
    return key


def _gguf_file(key: str, pull: bool) -> Path:
    """The GGUF file behind an embedded model name or a path (for the llama.cpp backend)."""
    if key in hub.EMBEDDED_MODELS:
        spec = hub.EMBEDDED_MODELS[key]
        if not spec.gguf_file:
            raise ModelNotFoundError(f"{key} has no GGUF file; the llama.cpp backend runs GGUF models only")
        if pull and not hub.is_pulled(key):
            hub.pull(key)
        hub.loadable_path(key)  # checks the cache is complete
        return hub.model_dir(key) / "files" / spec.gguf_file
    path = Path(key).expanduser()
    if not (path.is_file() and path.suffix == ".gguf"):
        raise ModelNotFoundError(f"the llama.cpp backend needs an embedded model name or a .gguf file, got {key!r}")
    return path


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers at all (fails in well under a second offline)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_hub_id(key: str, backend: str, options: dict[str, Any]) -> LanguageModel:
    # Without a quick reachability check, transformers retries for ~50 s before failing offline.
    online = _hub_reachable()
    try:
        return get_backend(backend)(key, name=key, local_files_only=not online, **options)
    except OSError as exc:
        raise ModelNotFoundError(
            f"could not load {key!r} from the Hugging Face hub"
            f"{'' if online else ' (offline, and it is not in the local Hugging Face cache)'}: "
            f"{str(exc).splitlines()[0]}. Offline, use an embedded model (`promptlearning models pull NAME`; "
            f"embedded: {', '.join(hub.EMBEDDED_MODELS)}) or a local Hugging Face directory or .gguf file."
        ) from exc


DEFAULT_EMBEDDER = "minilm-l6"


def load_embedder(embedder: LanguageModel | str | Path | None = None, *, device: str = "auto") -> LanguageModel:
    """The sentence encoder for kNN demonstration selection: a loaded model, an embedded name or a
    sentence-transformers directory (e.g. an ``embed-train`` run's ``model``); default ``minilm-l6``."""
    if isinstance(embedder, LanguageModel):
        return embedder
    return load_model(embedder or DEFAULT_EMBEDDER, pull=True, device=device)
