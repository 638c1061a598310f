"""GGUF export of Llama-architecture models (SmolLM2, Llama, Mistral-style), with the ``gguf``
library: metadata, the byte-level BPE tokenizer, and the weights in F32, F16, Q8_0 or Q4_0.

``gguf`` writes files and quantizes blocks but has no model conversion (llama.cpp's
``convert_hf_to_gguf.py`` is a script, not a library), so the mapping is written here: tensor
names through ``gguf.TensorNameMap``, the rotary layout of the query and key projections (llama.cpp
rotates interleaved pairs, Hugging Face the two halves of each head), the tokenizer's tokens, types
and merges. K-quants need rows that are multiples of 256 (SmolLM2's 576 is not): the block formats
above are the ones every width here takes. The embedding (and an untied LM head) keep 8 bits in a
Q4_0 file, as llama.cpp's own quantizer keeps them above 4.

:func:`verify_gguf` loads the file back (transformers, and llama.cpp when installed) and compares
tokenization and log-likelihoods with the source: a file with a mismatched tokenizer fails it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptlearning.errors import PromptLearningError

GGUF_QUANTS = ("f32", "f16", "q8_0", "q4_0")
SUPPORTED_TYPES = ("llama",)  # config.model_type values written as llama.cpp's "llama" architecture
PRE_TOKENIZERS = ("smollm", "gpt-2", "llama-bpe", "qwen2", "default")  # tried in order by the tokenizer probe
PROBE_TEXTS = (
    "The film was a triumph: 10/10, would watch again!",
    "Customer message: my card payment of £42.50 was declined twice.\nThe message is about:",
    "def add(a, b):\n    return a + b  # 3 spaces   here",
    "Ünïcödé, emoji 🙂 and numbers 1234567 in one line.",
)
# |log(perplexity of the file loaded back / the source's)| allowed on the probe texts (~70 tokens:
# a check that the file is the model, not a quality measurement; the deployment table measures that)
TOLERANCE = {"f32": 0.002, "f16": 0.01, "q8_0": 0.05, "q4_0": 0.4}


def _qtype(name: str) -> Any:
    import gguf

    return {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
            "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[name]  # fmt: skip


def check_exportable(model_dir: Path, quant: str) -> Any:
    """The model's config, or an error saying why this directory cannot become a GGUF file."""
    from transformers import AutoConfig

    from promptlearning.models.compressed import compression_record

    if quant not in GGUF_QUANTS:
        raise PromptLearningError(f"unknown GGUF type {quant!r}; supported: {', '.join(GGUF_QUANTS)}")
    if not (model_dir / "config.json").is_file():
        if (model_dir / "adapter_config.json").is_file() or (model_dir / "program.json").is_file():
            raise PromptLearningError(
                f"{model_dir} is a trained program, not a model: GGUF holds one model's weights. Export a LoRA "
                "program merged into its model (`promptlearning export PROGRAM_DIR`); prompt tuning and prefix "
                "tuning prepend learned vectors no GGUF runtime reads, so they cannot be exported"
            )
        raise PromptLearningError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
    record = compression_record(model_dir)
    mode = ((record or {}).get("quantize") or {}).get("mode")
    if mode not in (None, "bf16"):
        raise PromptLearningError(
            f"{model_dir} holds {mode} weights: export the float model (GGUF quantizes it itself; compress "
            "without quantize, or with bf16, then export)"
        )
    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    if config.model_type not in SUPPORTED_TYPES:
        raise PromptLearningError(
            f"GGUF export supports Llama-architecture models ({', '.join(SUPPORTED_TYPES)}); {model_dir} is "
            f"{config.model_type}"
        )
    return config


def _rope_theta(config: Any) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _rotary_to_interleaved(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a query/key projection from HF's half-split rotary layout to llama.cpp's pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    tensors: dict[str, np.ndarray] = {}
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise PromptLearningError(f"{model_dir} has no .safetensors weights to export")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensors[key] = f.get_tensor(key).float().numpy()
    return tensors


def _tokenizer_fields(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token string (ids beyond the tokenizer's filled with unused placeholders) and its type."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if data.get("model", {}).get("type") != "BPE" or "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise PromptLearningError("GGUF export supports byte-level BPE tokenizers (GPT-2 style), as SmolLM2's is")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
    added = {t["id"] for t in data.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        types.append(gguf.TokenType.CONTROL if i in special else
                     gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL)  # fmt: skip
    return tokens, [int(t) for t in types]


def _write(path: Path, config: Any, model_dir: Path, quant: str, pre: str, *, vocab_only: bool = False) -> int:
    """Write the GGUF file at ``path`` (the caller makes it atomic); the number of tensors."""
    import gguf

    arch = gguf.MODEL_ARCH.LLAMA
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_name(model_dir.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)  # explicit: a head-pruned model's heads no longer split hidden_size
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}  # fmt: skip
    writer.add_file_type(file_types[quant])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, types = _tokenizer_fields(model_dir, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(str(model_dir), load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)
    count = 0
    if not vocab_only:
        names = gguf.TensorNameMap(arch, config.num_hidden_layers)
        for key, data in _weights(model_dir).items():
            if key.endswith("rotary_emb.inv_freq"):
                continue
            name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise PromptLearningError(f"no GGUF name for the weight {key}: not a Llama-architecture weight")
            if key.endswith("q_proj.weight"):
                data = _rotary_to_interleaved(data, heads)
            elif key.endswith("k_proj.weight"):
                data = _rotary_to_interleaved(data, kv_heads)
            encoded, qtype = _encoded(name, data, quant)
            writer.add_tensor(name, encoded, raw_dtype=qtype)
            count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    return count


def _encoded(name: str, data: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    """(data, GGML type) of one tensor: vectors in F32; matrices in the file's type (the embedding
    and LM head in Q8_0 in a Q4_0 file); a matrix whose rows do not fill whole blocks in F16."""
    import gguf

    if data.ndim == 1 or quant == "f32":
        return data.astype(np.float32), _qtype("f32")
    if quant == "f16":
        return data.astype(np.float16), _qtype("f16")
    kind = "q8_0" if quant == "q4_0" and name.startswith(("token_embd", "output.")) else quant
    block = gguf.GGML_QUANT_SIZES[_qtype(kind)][0]
    if data.shape[-1] % block:
        return data.astype(np.float16), _qtype("f16")
    return gguf.quants.quantize(data.astype(np.float32), _qtype(kind)), _qtype(kind)


def _llama_cpp() -> Any | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp


def choose_pre_tokenizer(model_dir: Path, config: Any, directory: Path) -> str:
    """The llama.cpp pre-tokenizer whose tokenization matches the model's own on the probe texts,
    tried on vocabulary-only files; ``gpt-2`` when llama.cpp is not installed to try them."""
    llama_cpp = _llama_cpp()
    if llama_cpp is None:
        return "gpt-2"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    expected = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in PROBE_TEXTS]
    for pre in PRE_TOKENIZERS:
        probe = directory / f".vocab-{pre}-{os.getpid()}.gguf"
        try:
            _write(probe, config, model_dir, "f32", pre, vocab_only=True)
            llm = llama_cpp.Llama(model_path=str(probe), vocab_only=True, verbose=False)
            got = [llm.tokenize(t.encode(), add_bos=False, special=False) for t in PROBE_TEXTS]
            del llm
        except Exception:  # a pre-tokenizer this llama.cpp build does not know
            continue
        finally:
            probe.unlink(missing_ok=True)
        if got == expected:
            return pre
    raise PromptLearningError(
        f"none of llama.cpp's pre-tokenizers ({', '.join(PRE_TOKENIZERS)}) splits text as {model_dir}'s tokenizer "
        "does: a GGUF file would tokenize differently from the model"
    )


def export_gguf(model_dir: str | Path, output: str | Path, quant: str = "q8_0", *, pre: str | None = None) -> dict:
    """Write ``model_dir`` as a GGUF file at ``output`` (atomically: a crash leaves no partial file)."""
    model_dir, output = Path(model_dir), Path(output)
    config = check_exportable(model_dir, quant)
    output.parent.mkdir(parents=True, exist_ok=True)
    pre = pre or choose_pre_tokenizer(model_dir, config, output.parent)
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        tensors = _write(partial, config, model_dir, quant, pre)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return {"file": str(output), "quant": quant, "pre_tokenizer": pre, "tensors": tensors,
            "bytes": output.stat().st_size}  # fmt: skip


def _source_logprobs(model_dir: Path, texts: Sequence[str]) -> tuple[list[list[int]], list[np.ndarray]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptlearning.models.compressed import compression_record, load_compressed

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    record = compression_record(model_dir)
    if record is not None:
        model = load_compressed("AutoModelForCausalLM", model_dir, record, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return ids, [_token_logprobs(model, row) for row in ids]


def _token_logprobs(model: Any, ids: list[int]) -> np.ndarray:
    """Log-probability of every token after the first, as a Hugging Face model gives it."""
    import torch

    with torch.inference_mode():
        tensor = torch.tensor([ids])
        logprobs = torch.log_softmax(model(input_ids=tensor).logits[0, :-1].float(), -1)
        return logprobs.gather(-1, tensor[0, 1:, None])[:, 0].double().numpy()


def _llama_cpp_logprobs(llm: Any, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    scores = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
    logprobs = scores - np.logaddexp.reduce(scores, axis=-1, keepdims=True)
    return logprobs[np.arange(len(ids) - 1), ids[1:]]


def _log_perplexity_ratio(loaded: Sequence[np.ndarray], source: Sequence[np.ndarray]) -> float:
    """log(perplexity loaded / perplexity source) over every probe token."""
    return float(np.concatenate(source).mean() - np.concatenate(loaded).mean())


def verify_gguf(model_dir: str | Path, gguf_file: str | Path, quant: str, texts: Sequence[str] = PROBE_TEXTS) -> dict:
    """Load the file back with transformers (and llama.cpp when installed): the tokenization must be
    the source's, and the log of the perplexity ratio on the probe texts within ``TOLERANCE[quant]``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, gguf_file = Path(model_dir), Path(gguf_file)
    expected_ids, expected = _source_logprobs(model_dir, texts)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    if [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts] != expected_ids:
        raise PromptLearningError(f"{gguf_file}: its tokenizer splits the probe texts differently from {model_dir}'s")
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32)
    loaded = [_token_logprobs(model, row) for row in expected_ids]
    report = {"tolerance": TOLERANCE[quant], "transformers": _log_perplexity_ratio(loaded, expected)}
    llama_cpp = _llama_cpp()
    if llama_cpp is not None:
        llm = llama_cpp.Llama(model_path=str(gguf_file), n_ctx=512, logits_all=True, verbose=False)
        for text, row in zip(texts, expected_ids, strict=True):
            if llm.tokenize(text.encode(), add_bos=False, special=False) != row:
                raise PromptLearningError(
                    f"{gguf_file}: llama.cpp tokenizes {text[:30]!r}… differently from the source"
                )
        report["llama_cpp"] = _log_perplexity_ratio([_llama_cpp_logprobs(llm, row) for row in expected_ids], expected)
    worst = max(abs(v) for k, v in report.items() if k != "tolerance")
    if not math.isfinite(worst) or worst > TOLERANCE[quant]:
        raise PromptLearningError(f"{gguf_file} loaded back: log perplexity ratio {worst:.4f} against the source "
                                  f"on the probe texts (tolerance for {quant}: {TOLERANCE[quant]})")  # fmt: skip
    return report
