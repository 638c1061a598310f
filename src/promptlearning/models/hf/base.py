"""What the Hugging Face model families share: loading a directory onto a device, and the token
helpers and context limit every :class:`LanguageModel` of theirs exposes."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from promptlearning.errors import CorruptModelError
from promptlearning.models.interface import LanguageModel, LoglikelihoodResult
from promptlearning.progress import quiet_third_party


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_pretrained(
    auto_class: str,
    path: str | Path,
    *,
    device: str | torch.device = "auto",
    dtype: str = "auto",
    local_files_only: bool = False,
    what: str = "model",
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a directory (or hub id) loaded with ``transformers.<auto_class>`` onto
    ``device`` in ``dtype`` (see :mod:`promptlearning.devices`). A local directory never goes online;
    damaged local files are a :class:`CorruptModelError` that says what to do."""
    import transformers

    from promptlearning.devices import resolve_device, resolve_dtype
    from promptlearning.models.compressed import compression_record, load_compressed

    target = resolve_device(device)
    local = Path(str(path)).is_dir()
    try:
        with quiet_third_party():
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(path), local_files_only=local_files_only or local
            )
            record = compression_record(path) if local else None
            if record is not None:  # a compressed directory: int8 layers, torchao modes, its own dtype
                wanted = None if dtype == "auto" else resolve_dtype(dtype, target)
                model = load_compressed(auto_class, path, record, dtype=wanted)
            else:
                model = getattr(transformers, auto_class).from_pretrained(
                    str(path), dtype=resolve_dtype(dtype, target), local_files_only=local_files_only or local
                )
    except Exception as exc:  # damaged files fail in many ways: OSError, SafetensorError, ValueError …
        if local:
            raise CorruptModelError(
                f"could not load the {what} in {path} ({type(exc).__name__}: {first_line(exc)}). If it is a "
                "pulled embedded model, re-pull it with `promptlearning models pull NAME --force`."
            ) from exc
        raise
    return model.to(target), tokenizer


def cache_keyword(model: Any) -> str:
    """The forward's KV-cache argument: transformers 5.x renamed ``past_key_values`` to ``cache`` (the
    old name warns on every call until it goes in 5.40); earlier 5.x releases know only the old name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper's model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The KV cache a forward pass returned, under either name."""
    cache = output.get("cache")
    return cache if cache is not None else output.past_key_values


def score_targets(logits: torch.Tensor, target: list[int], tokenizer: Any) -> LoglikelihoodResult:
    """The result of one continuation from the logits at the positions predicting its tokens."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    wanted = torch.tensor(target, device=logprobs.device)
    return LoglikelihoodResult(
        token_logprobs=tuple(logprobs.gather(-1, wanted[:, None]).squeeze(-1).tolist()),
        is_greedy=bool((logprobs.argmax(-1) == wanted).all()),
        tokens=tuple(tokenizer.convert_ids_to_tokens(target)),
    )


def context_limit(model: Any, tokenizer: Any, default: int) -> int:
    """The longest input a model takes: its position embeddings or its tokenizer's limit."""
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    candidates = [getattr(text_config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    valid = [int(c) for c in candidates if isinstance(c, int) and 0 < c < 1_000_000]
    return min(valid) if valid else default


class HFModel(LanguageModel):
    """The part of the HF backends every family shares: ``model``, ``tokenizer`` and their
    :class:`~promptlearning.models.hf.tokens.PromptTokens` (``tokens``) on one device.

    A family sets ``auto_class`` (the ``transformers`` class it loads with) and ``what`` (its name in
    messages), and its constructor takes ``(model, tokenizer, *, name, batch_size, max_length, …)``.
    """

    auto_class = "AutoModel"
    what = "model"
    model: Any
    tokenizer: Any
    tokens: Any
    _max_length: int

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        device: str | torch.device = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        max_length: int | None = None,
        local_files_only: bool = False,
        **options: Any,
    ) -> Any:
        """Load a directory (or hub id) of this family onto ``device`` in ``dtype`` (``auto``: a GPU
        when there is one, bf16/fp16 there, fp32 on CPU); ``options`` go to the constructor."""
        model, tokenizer = load_pretrained(
            cls.auto_class, path, device=device, dtype=dtype, local_files_only=local_files_only, what=cls.what
        )
        return cls(model, tokenizer, name=name or str(path), batch_size=batch_size, max_length=max_length, **options)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def max_length(self) -> int:
        return self._max_length

    def count_tokens(self, text: str) -> int:
        return self.tokens.count(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        return self.tokens.truncate(text, max_tokens)

    @property
    def has_chat_template(self) -> bool:
        return self.tokens.has_chat_template

    def apply_chat_template(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return self.tokens.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
