"""Parameter-efficient methods by name, all from the ``peft`` library (none re-implemented here).

Each entry maps a method name used in task files to its ``peft`` config class and the defaults we
pick for small decoder models. Options given by the user are checked against the config class's
fields, so a typo is reported with the list of valid options instead of failing deep inside peft.

    model = apply_peft(model, "lora", {"r": 8}, init_text="Review sentiment:", tokenizer_dir=path)
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from promptlearning.errors import PromptLearningError


class PeftMethodError(PromptLearningError):
    """An unknown PEFT method or option."""


@dataclass(frozen=True)
class PeftMethod:
    """A ``peft`` config class under a name, with our defaults for its options."""

    config_class: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    prompt_learning: bool = False  # virtual tokens or prefixes instead of weight adapters


# The options peft leaves to the caller, set for llama/gemma-style blocks; all overridable.
_ATTENTION = ["q_proj", "v_proj"]
METHODS: dict[str, PeftMethod] = {
    "lora": PeftMethod("LoraConfig", {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": _ATTENTION}),
    "adalora": PeftMethod("AdaLoraConfig", {"init_r": 12, "target_r": 8, "target_modules": _ATTENTION}),
    "ia3": PeftMethod(
        "IA3Config",
        {"target_modules": ["k_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
    ),
    "prompt-tuning": PeftMethod("PromptTuningConfig", {"num_virtual_tokens": 20}, prompt_learning=True),
    "p-tuning": PeftMethod(
        "PromptEncoderConfig", {"num_virtual_tokens": 20, "encoder_hidden_size": 128}, prompt_learning=True
    ),
    "prefix-tuning": PeftMethod("PrefixTuningConfig", {"num_virtual_tokens": 20}, prompt_learning=True),
}
# Fields peft fills in itself or that we set from the model and task: not user options.
_INTERNAL = {"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision"}


# peft's prefix tuning hands its prefixes to the model as ``past_key_values``, which transformers 5
# announces as deprecated on every forward (a warning) and once per process (a log line): nothing a
# user can act on, so neither is shown to them.
warnings.filterwarnings("ignore", r"`past_key_values` is deprecated .*Use `cache` instead", FutureWarning)


class _CacheRenameNotice(logging.Filter):
    """Drops transformers' log line about ``past_key_values`` being renamed ``cache``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`past_key_values`/`cache_params` are deprecated" not in record.getMessage()


logging.getLogger("transformers.utils.generic").addFilter(_CacheRenameNotice())


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the deprecation notice peft 0.21 triggers in transformers 5 on every model it wraps."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def method_names() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> PeftMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise PeftMethodError(f"unknown PEFT method {name!r}; known: {', '.join(method_names())}") from None


def valid_options(name: str) -> list[str]:
    """The options a user may set for method ``name`` (its peft config's fields)."""
    import peft

    config_class = getattr(peft, get_method(name).config_class)
    return sorted(f.name for f in dataclasses.fields(config_class) if f.name not in _INTERNAL)


def peft_config(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    task_type: str = "CAUSAL_LM",
    init_text: str | None = None,
    tokenizer_dir: str | None = None,
    total_steps: int | None = None,
) -> Any:
    """The ``peft`` config for method ``name``: our defaults, then ``options``.

    Prompt tuning starts from ``init_text`` (the template's words) when given, as in Lester et al.;
    AdaLoRA needs the run's ``total_steps`` for its rank schedule.
    """
    import peft

    method = get_method(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(valid_options(name)))
    if unknown:
        raise PeftMethodError(
            f"unknown option(s) {unknown} for PEFT method {name!r}; valid options: {', '.join(valid_options(name))}"
        )
    values: dict[str, Any] = {**method.defaults, **options, "task_type": task_type}
    if name == "prompt-tuning" and init_text and "prompt_tuning_init" not in options:
        values.update(
            prompt_tuning_init="TEXT", prompt_tuning_init_text=init_text, tokenizer_name_or_path=tokenizer_dir
        )
    if name == "adalora":
        if total_steps is None and "total_step" not in options:
            raise PeftMethodError("AdaLoRA needs the number of training steps (total_step)")
        values.setdefault("total_step", total_steps)
        # AdaLoRA's default schedule (tinit=0, tfinal=0) prunes ranks over the whole run; keep the
        # last 20% of steps at the final budget, as its paper does
        values.setdefault("tfinal", max(1, int(0.2 * values["total_step"])))
    try:
        return getattr(peft, method.config_class)(**values)
    except (TypeError, ValueError) as exc:
        raise PeftMethodError(f"invalid options for PEFT method {name!r}: {exc}") from exc


def apply_peft(model: Any, name: str, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """Wrap ``model`` with PEFT method ``name``; only the method's parameters stay trainable.

    Prefix tuning (without ``prefix_projection`` or ``init_weights``) starts from the keys and values
    the model itself computes for ``init_text`` (Li & Liang 2021 initialise from real words'
    activations): the untrained prefix then acts as that text written before the input, where peft's
    random prefixes start as noise in every layer, which a few examples cannot repair.
    """
    import peft

    config = peft_config(name, options, **kwargs)
    try:
        with quiet_peft():
            wrapped = peft.get_peft_model(model, config)
    except (ValueError, KeyError) as exc:
        raise PeftMethodError(f"PEFT method {name!r} does not apply to this model: {exc}") from exc
    init_text, tokenizer_dir = kwargs.get("init_text"), kwargs.get("tokenizer_dir")
    plain_prefix = name == "prefix-tuning" and not config.prefix_projection and config.init_weights is None
    if plain_prefix and init_text and tokenizer_dir and config.task_type == "CAUSAL_LM":
        initialise_prefix_from_text(wrapped, init_text, tokenizer_dir)
    return wrapped


def initialise_prefix_from_text(model: Any, text: str, tokenizer_dir: str) -> bool:
    """Set a prefix-tuning model's prefix to the base model's keys and values for ``text`` (repeated
    or cut to the prefix's length); False, prefix untouched, where the cache's shape is not peft's."""
    import torch
    from transformers import AutoTokenizer

    config = model.active_peft_config
    length = config.num_virtual_tokens
    words = AutoTokenizer.from_pretrained(tokenizer_dir).encode(" " + text.strip(), add_special_tokens=False)
    if not words:
        return False
    ids = torch.tensor([(words * (length // len(words) + 1))[:length]])
    base = model.get_base_model()
    with torch.no_grad(), model.disable_adapter():
        cache = base(input_ids=ids.to(base.device), use_cache=True).past_key_values
    layers = getattr(cache, "layers", None)
    if not layers or len(layers) != config.num_layers:
        return False
    # peft's layout: per virtual token, (layer 0 keys, layer 0 values, layer 1 keys, ...) of heads x dims
    pairs = [tensor[0].transpose(0, 1) for layer in layers for tensor in (layer.keys, layer.values)]
    flat = torch.stack(pairs, dim=1).reshape(length, -1)
    encoder = model.prompt_encoder[model.active_adapter]
    if flat.shape != encoder.embedding.weight.shape:
        return False
    encoder.embedding.weight.data.copy_(flat.to(encoder.embedding.weight.dtype))
    return True


def adalora_orthogonality_penalty(model: Any) -> Any:
    """AdaLoRA's orthogonality regulariser on its P (``lora_A``) and Q (``lora_B``) factors, weighted.

    ``peft`` adds it only to a loss that its wrapped model computed (``outputs.loss``); objectives that
    compute their loss outside the model (PET's label-word loss) add this instead. Written here
    because peft has no public function for it: mean over factors of ||P Pᵀ - I||_F (||QᵀQ - I||_F).
    """
    import torch

    adapter = model.active_adapter
    weight = model.peft_config[adapter].orth_reg_weight
    terms = []
    for name, param in model.named_parameters():
        if param.requires_grad and name.endswith(f"lora_A.{adapter}"):
            cov = param @ param.T
        elif param.requires_grad and name.endswith(f"lora_B.{adapter}"):
            cov = param.T @ param
        else:
            continue
        terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)))
    return weight * torch.stack(terms).mean() if terms else None
