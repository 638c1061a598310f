"""Which Hugging Face model family a directory holds, and loading it as a :class:`LanguageModel`.

* causal LMs (``…ForCausalLM``, ``…LMHeadModel``): :class:`~promptlearning.models.hf.causal.HFLanguageModel`;
* masked LMs (``…ForMaskedLM``: BERT, RoBERTa): :class:`~promptlearning.models.hf.masked.HFMaskedLM`,
  which scores label words at ``[MASK]`` positions (the cloze form of PET);
* encoder-decoders (T5, BART): :class:`~promptlearning.models.hf.seq2seq.HFSeq2SeqLM`;
* other encoders (a bare ``BertModel``): :class:`~promptlearning.models.hf.encoder.HFEncoderModel`, for embeddings.

A local directory is read with ``local_files_only``: it never reaches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from promptlearning.errors import CorruptModelError
from promptlearning.models.hf.base import first_line, load_pretrained
from promptlearning.models.interface import LanguageModel

Family = Literal["causal", "masked", "seq2seq", "encoder"]


def model_family(config: Any) -> Family:
    """Decide from a config which family a model belongs to."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = config.architectures or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "masked"
    if architectures:
        return "encoder"
    # No architecture recorded: models that also have a masked-LM head (BERT …) are encoders.
    causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return "causal" if causal and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "encoder"


def is_causal_lm(config: Any) -> bool:
    return model_family(config) == "causal"


def load_hf(path: str | Path, **options: Any) -> LanguageModel:
    """Load a model directory (or hub id) as the :class:`LanguageModel` of its family."""
    from transformers import AutoConfig

    local = Path(str(path)).is_dir()
    local_only = bool(options.get("local_files_only", False)) or local
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=local_only)
    except (OSError, ValueError) as exc:
        if local:
            raise CorruptModelError(f"{path}/config.json cannot be read: {first_line(exc)}") from exc
        raise
    family = model_family(config)
    if family == "causal":
        from promptlearning.models.hf.causal import HFLanguageModel

        return HFLanguageModel.from_pretrained(path, **options)
    if family == "masked":
        from promptlearning.models.hf.masked import HFMaskedLM

        return HFMaskedLM.from_pretrained(path, **options)
    if family == "seq2seq":
        from promptlearning.models.hf.seq2seq import HFSeq2SeqLM

        return HFSeq2SeqLM.from_pretrained(path, **options)
    from promptlearning.models.hf.encoder import HFEncoderModel

    model, tokenizer = load_pretrained(
        "AutoModel", path, device=options.get("device", "auto"), dtype=options.get("dtype", "auto"),
        local_files_only=local_only, what="encoder",
    )  # fmt: skip
    return HFEncoderModel(model, tokenizer, name=options.get("name") or str(path))
