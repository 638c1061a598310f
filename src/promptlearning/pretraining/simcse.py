"""Contrastive sentence embeddings (SimCSE, Gao et al. 2021) through sentence-transformers.

Unsupervised SimCSE feeds every sentence twice as an (anchor, positive) pair: the two forward passes
see different dropout masks, and the other sentences of the batch are the negatives. Supervised SimCSE
trains on (anchor, entailment, contradiction) triples, the contradiction being a hard negative. Both
are sentence-transformers' ``MultipleNegativesRankingLoss`` with ``scale = 1 / temperature``; nothing
of the loss, the pooling or the STS evaluation is written here, only the wiring.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.progress import quiet_third_party

POOLINGS = ("mean", "cls", "lasttoken", "max")
# Config fields that hold a dropout probability, across the model families we load (BERT, Llama, GPT-2).
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout", "dropout",
                  "resid_pdrop", "embd_pdrop", "attn_pdrop")  # fmt: skip


def dropout_overrides(model_dir: str | Path, dropout: float | None) -> dict[str, float]:
    """The config fields of ``model_dir`` to set so that the encoder applies ``dropout`` (SimCSE's noise).

    A decoder such as SmolLM2 (Llama) ships with its one dropout (on attention) at 0: unsupervised
    SimCSE would then see two identical views, so the dropout must be switched on here.
    """
    if dropout is None:
        return {}
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    fields = {name: dropout for name in DROPOUT_FIELDS if isinstance(getattr(config, name, None), (int, float))}
    if not fields and dropout > 0:
        raise PromptLearningError(
            f"{model_dir}: its config has no dropout setting ({', '.join(DROPOUT_FIELDS)}); unsupervised SimCSE "
            "needs dropout as its augmentation"
        )
    return fields


def freeze_lower_layers(model: Any, train_layers: int) -> int:
    """Freeze the embeddings and every transformer layer but the top ``train_layers`` (the norm after
    them stays trainable); returns how many layers the model has. Backward passes then stop at the
    lowest trained layer, which is what makes contrastive tuning of a 135M decoder affordable on CPU."""
    import torch

    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not stacks:
        raise PromptLearningError(f"{type(model).__name__} has no stack of layers to freeze")
    layers = max(stacks, key=len)
    if train_layers < 1:
        raise PromptLearningError(f"train_layers must be at least 1, got {train_layers}")
    if train_layers >= len(layers):
        warnings.warn(f"train_layers {train_layers}: the model has {len(layers)} layers, all of them train",
                      UserWarning, stacklevel=2)  # fmt: skip
    trained = {id(p) for layer in list(layers)[-train_layers:] for p in layer.parameters()}
    in_layers = {id(p) for p in layers.parameters()}
    for parameter in model.parameters():
        # trainable: the top layers, and what follows them (a final norm); frozen: embeddings, lower layers
        below = id(parameter) in in_layers and id(parameter) not in trained
        embedding = any(parameter is m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding))
        parameter.requires_grad_(not below and not embedding)
    return len(layers)


def build_sentence_encoder(
    model_dir: str | Path,
    *,
    pooling: str = "mean",
    max_seq_length: int = 64,
    dropout: float | None = None,
    train_layers: int | None = None,
    device: Any = "auto",
    dtype: str = "float32",
) -> Any:
    """A ``SentenceTransformer``: the Hugging Face model in ``model_dir`` plus a pooling layer.

    Works for encoders (BERT, MiniLM) and decoders (SmolLM2 with mean or last-token pooling); a
    tokenizer without a padding token pads with its end-of-sequence token. ``train_layers``: only the
    top layers will train (see :func:`freeze_lower_layers`); default: every weight.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from promptlearning.devices import resolve_device, resolve_dtype

    if pooling not in POOLINGS:
        raise PromptLearningError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    from transformers.utils import logging as hf_logging

    target = resolve_device(device)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a causal LM's lm_head, unused by the encoder, is reported otherwise
    with quiet_third_party():
        module = Transformer(
            str(model_dir), max_seq_length=max_seq_length, config_kwargs=dropout_overrides(model_dir, dropout),
            model_kwargs={"dtype": resolve_dtype(dtype, target, cpu_bf16=False)},
            processor_kwargs={"local_files_only": True},
        )  # fmt: skip
    hf_logging.set_verbosity(verbosity)
    tokenizer = module.tokenizer
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise PromptLearningError(f"{model_dir}: the tokenizer has neither a padding nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    if train_layers is not None:
        freeze_lower_layers(module.model, train_layers)
    pool = Pooling(module.get_embedding_dimension(), pooling_mode=pooling)
    return SentenceTransformer(modules=[module, pool], device=str(target))


def unsupervised_pairs(sentences: Iterable[str], *, limit: int | None = None, seed: int = 0) -> Any:
    """A ``datasets.Dataset`` of (anchor, positive) = (s, s): unique, non-empty sentences, shuffled."""
    import datasets

    unique = list(dict.fromkeys(s.strip() for s in sentences if s and s.strip()))
    if not unique:
        raise PromptLearningError("no training sentences: the files and fields given hold no text")
    if len(unique) < 2:
        raise PromptLearningError(
            "one distinct training sentence: contrastive training needs other sentences in the batch as negatives "
            "(with one, the loss is 0 at every step and nothing is learned); give at least two, many more in practice"
        )
    random.Random(seed).shuffle(unique)
    unique = unique[:limit] if limit else unique
    return datasets.Dataset.from_dict({"anchor": unique, "positive": list(unique)})


def supervised_triples(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> Any:
    """A ``datasets.Dataset`` of (anchor, positive[, negative]) from rows and a column mapping."""
    import datasets

    wanted = [role for role in ("anchor", "positive", "negative") if role in columns]
    if wanted[:2] != ["anchor", "positive"]:
        raise PromptLearningError("supervised SimCSE needs columns for anchor and positive (negative is optional)")
    out: dict[str, list[str]] = {role: [] for role in wanted}
    for number, row in enumerate(rows, 1):
        values = [row.get(columns[role]) for role in wanted]
        missing = [columns[r] for r, v in zip(wanted, values, strict=True) if not (isinstance(v, str) and v.strip())]
        if missing:
            raise PromptLearningError(f"training row {number}: no text in {', '.join(missing)}")
        for role, value in zip(wanted, values, strict=True):
            out[role].append(value.strip())
    if not rows:
        raise PromptLearningError("no training rows for supervised SimCSE")
    if len(rows) < 2 and "negative" not in out:
        raise PromptLearningError(
            "one training pair and no hard negative: the loss has nothing to contrast it with (it is 0 at every "
            "step); give at least two pairs"
        )
    return datasets.Dataset.from_dict(out)


def sts_evaluator(rows: Sequence[Mapping[str, Any]], *, name: str, fields: Sequence[str], batch_size: int = 64) -> Any:
    """sentence-transformers' ``EmbeddingSimilarityEvaluator`` (Spearman of cosine vs gold scores)."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    first, second, score = fields
    if not rows:
        raise PromptLearningError(f"the {name} STS set is empty")
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get(first), str) or not isinstance(row.get(second), str):
            raise PromptLearningError(f"{name} row {number}: needs text in {first} and {second}")
        if not isinstance(row.get(score), (int, float)) or isinstance(row.get(score), bool):
            raise PromptLearningError(f"{name} row {number}: needs a number in {score}")
    if len(rows) < 3:
        raise PromptLearningError(
            f"the {name} STS set has {len(rows)} pair(s): a Spearman correlation needs at least 3 "
            "(hundreds to mean much)"
        )
    if len({float(r[score]) for r in rows}) < 2:
        raise PromptLearningError(
            f"every {name} pair has the same gold score ({rows[0][score]}): a correlation with constant scores is "
            "undefined; use a set with varied similarity scores"
        )
    return EmbeddingSimilarityEvaluator(
        [r[first] for r in rows], [r[second] for r in rows], [float(r[score]) for r in rows],
        batch_size=batch_size, main_similarity="cosine", similarity_fn_names=["cosine"], name=name, write_csv=False,
    )  # fmt: skip


def spearman(evaluator: Any, encoder: Any) -> float:
    """Spearman correlation × 100 of the cosine similarities (the SimCSE paper's STS figure)."""
    scores = evaluator(encoder)
    value = 100.0 * float(next(v for k, v in scores.items() if k.endswith("spearman_cosine")))
    if math.isnan(value):  # e.g. every embedding the same: cosines constant
        raise PromptLearningError(
            "the STS Spearman correlation is undefined (nan): the encoder gives every pair the same similarity"
        )
    return value
