"""Tiny randomly initialised models built inside the tests: fast, offline, and real ``transformers``.

* a byte-level BPE tokenizer trained on the fly (so leading spaces and merges behave like GPT-2 /
  SmolLM2 tokenizers), in two flavours: without BOS (like SmolLM2) and adding BOS (like Gemma);
* a Llama-style causal LM and a BERT-style encoder with a WordPiece tokenizer.

Each is saved to a temporary directory and loaded back through ``load_model(path)``, so the real
loading path is exercised too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ``dtype: auto`` is bf16 on CPUs with native bf16 matmul (promptlearning.devices); the tests compare
# scores across code paths at fp32 tolerances, so they (and the commands they start) run in fp32.
# tests/test_devices.py checks the bf16 choice itself.
os.environ["PROMPTLEARNING_CPU_DTYPE"] = "float32"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest-xdist workers on the two cores: one torch thread each (and in the
    # processes they start), rather than four threads spinning for two cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The files whose module fixtures take longest go first, so that under `--dist loadfile` they start
# at once on their own workers instead of running alone at the end.
SLOW_FIRST = ("test_readme.py", "test_bad_inputs.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first; tests marked ``cuda`` run where there is a CUDA GPU, skipped elsewhere."""
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "the capital of france is paris and the capital of england is london",
    "i loved this film , the acting was wonderful and the story moved me",
    "a dull , tedious mess that wasted two hours of my life",
    "question : what is two plus three ? answer : five",
    "review : great movie !\nsentiment : positive\n\nreview : awful .\nsentiment : negative",
    "The Quick Brown Fox Jumps Over The Lazy Dog 0123456789",
    "positive negative neutral great terrible good bad fine",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_bpe_tokenizer(add_bos: bool = False, pad: bool = True):
    """A byte-level BPE tokenizer (vocab ~400) trained on ``CORPUS``, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    if add_bos:
        bos = tokenizer.token_to_id("<s>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>" if pad else None
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(
    directory: Path,
    *,
    add_bos: bool = False,
    pad: bool = True,
    seed: int = 0,
    max_positions: int = 128,
    layers: int = 2,
    tied: bool = False,
) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_bpe_tokenizer(add_bos=add_bos, pad=pad)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        initializer_range=0.2,  # peaked logits: greedy decoding is not decided by rounding noise
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_bert(directory: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def build_tiny_masked_lm(directory: Path) -> Path:
    """A BERT with its masked-LM head (the cloze scorer), on the tiny WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    bert = build_tiny_bert(directory / "encoder")
    tokenizer = AutoTokenizer.from_pretrained(bert)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    out = directory / "mlm"
    BertForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_seq2seq(directory: Path, kind: str = "t5") -> Path:
    """A tiny T5 (``</s>`` after the text, decoding starts from pad) or BART (``<s> … </s>``,
    decoding starts from ``</s>``) on a byte-level BPE tokenizer."""
    from tokenizers import processors
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    fast = train_bpe_tokenizer()
    backend = fast.backend_tokenizer
    bos, eos, pad = fast.bos_token_id, fast.eos_token_id, fast.pad_token_id
    if kind == "t5":
        backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
        config = T5Config(vocab_size=len(fast), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2,
                          pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad)  # fmt: skip
        model_class = T5ForConditionalGeneration
    else:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
        )
        config = BartConfig(vocab_size=len(fast), d_model=32, encoder_layers=1, decoder_layers=1,
                            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                            decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=pad, bos_token_id=bos,
                            eos_token_id=eos, decoder_start_token_id=eos, forced_bos_token_id=None)  # fmt: skip
        model_class = BartForConditionalGeneration
    fast.chat_template = None
    torch.manual_seed(0)
    model = model_class(config)
    model.generation_config.eos_token_id = eos
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def build_tiny_sentence_encoder(directory: Path, bert_dir: Path) -> Path:
    """A sentence-transformers encoder (tiny BERT + mean pooling), laid out like minilm-l6's files."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    word = Transformer(str(bert_dir), max_seq_length=64)
    encoder = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension())], device="cpu")
    encoder.save(str(directory))
    return directory


def install_fake_model(home: Path, name: str, source: Path) -> Path:
    """Put ``source`` (a tiny model directory) into a ``PROMPTLEARNING_HOME`` cache as the pulled
    embedded model ``name``, with a manifest written by the hub's own code: commands that name the
    embedded model then load the tiny one, offline and fast."""
    import shutil

    from promptlearning.models import hub

    spec = hub.EMBEDDED_MODELS[name]
    root = home / "models" / name
    shutil.copytree(source, root / spec.load_dir)
    hub._write_manifest(root, spec)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["sha256"] = {}  # not the pinned wheel members: nothing to compare with the pins
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_bos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-bos"), add_bos=True, pad=False, seed=1)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_masked_lm(tmp_path_factory.mktemp("tiny-mlm"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-t5"), "t5")


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-bart"), "bart")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    return build_tiny_sentence_encoder(tmp_path_factory.mktemp("tiny-encoder"), tiny_bert_dir)


@pytest.fixture(scope="session")
def tiny_llama_builder():
    """:func:`build_tiny_llama`, for tests that need their own variant (e.g. a longer context)."""
    return build_tiny_llama


@pytest.fixture(scope="session")
def fake_model_installer():
    """``install(home, embedded_name, tiny_model_dir)``: see :func:`install_fake_model`."""
    return install_fake_model


@pytest.fixture(scope="session")
def tiny_lm(tiny_llama_dir: Path):
    from promptlearning.models import load_model

    return load_model(tiny_llama_dir, batch_size=4)


@pytest.fixture(scope="session")
def tiny_lm_bos(tiny_llama_bos_dir: Path):
    from promptlearning.models import load_model

    return load_model(tiny_llama_bos_dir, batch_size=4)


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty ``PROMPTLEARNING_HOME`` for tests that write to the model cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("PROMPTLEARNING_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def reference_greedy():
    """Unbatched greedy decoding with a plain loop over full forward passes (no KV cache)."""

    def decode(lm, prompt: str, n: int) -> list[int]:
        ids = lm._prefix + lm.encode(prompt)
        out: list[int] = []
        with torch.no_grad():
            for _ in range(n):
                next_id = int(lm.model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
                if next_id in lm.eos_token_ids:
                    break
                out.append(next_id)
        return out

    return decode


@pytest.fixture(scope="session")
def make_bpe_tokenizer():
    """The tiny byte-level BPE tokenizer builder, for tests that build their own model."""
    return train_bpe_tokenizer
