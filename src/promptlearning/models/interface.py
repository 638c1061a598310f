"""The backend-independent language-model interface.

Everything above the models package (prompts, methods, evaluation, serving) talks to a model
through two request kinds only, as lm-evaluation-harness does:

* :meth:`LanguageModel.loglikelihood` — how likely is a continuation after a context;
* :meth:`LanguageModel.generate` — continue a prompt.

Backends (Hugging Face ``transformers`` today; an OpenAI-compatible HTTP server and llama.cpp
in-process later) implement this class and register themselves by name with
:func:`register_backend`; :func:`promptlearning.models.load_model` picks one by name.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from promptlearning.errors import BackendNotFoundError, PromptLearningError, UnsupportedOperationError


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` as the text that follows ``context``.

    ``suffix`` is text after the continuation that the model may read while scoring it: the cloze
    form ``"It was [MASK] ."`` of masked LMs. Causal and encoder-decoder models read left to right
    and refuse a non-empty suffix.
    """

    context: str
    continuation: str
    suffix: str = ""


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Log-probabilities (natural log) of a continuation's tokens given its context."""

    token_logprobs: tuple[float, ...]
    is_greedy: bool
    tokens: tuple[str, ...] = ()

    @property
    def logprob(self) -> float:
        """Summed log-probability of the whole continuation."""
        return math.fsum(self.token_logprobs)

    @property
    def num_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def mean_logprob(self) -> float:
        """Log-probability per token (length-normalised score)."""
        return self.logprob / max(1, self.num_tokens)


@dataclass
class GenerationConfig:
    """How to continue a prompt. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    calculator: bool = False  # evaluate ``<<expr=`` calls while decoding (see models/calculator.py)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise PromptLearningError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise PromptLearningError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise PromptLearningError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise PromptLearningError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if any(not s for s in self.stop):
            raise PromptLearningError("stop strings must be non-empty")

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Generation:
    """One generated continuation. ``finish_reason`` is ``"stop"`` for EOS or a stop string."""

    text: str
    num_tokens: int
    finish_reason: FinishReason
    token_ids: tuple[int, ...] = ()  # the generated tokens (EOS excluded), when the backend knows them


TopTokens = tuple[tuple[int, float], ...]  # (token id, logprob), most likely first


@dataclass(frozen=True)
class TokenLogprobs:
    """How likely every token of a sequence is given the tokens before it.

    ``logprobs[i]`` and ``top[i]`` are those of position ``i`` (``None`` at position 0, which nothing
    predicts); ``top`` lists the most likely tokens there. ``next_top`` is the distribution after the
    last token (its first entry is the greedy next token).
    """

    token_ids: tuple[int, ...]
    logprobs: tuple[float | None, ...]
    top: tuple[TopTokens | None, ...]
    next_top: TopTokens


RequestLike = LoglikelihoodRequest | tuple[str, str] | tuple[str, str, str]


def as_requests(requests: Iterable[RequestLike]) -> list[LoglikelihoodRequest]:
    """Accept request objects or ``(context, continuation)`` pairs; validate them."""
    out = []
    for item in requests:
        request = item if isinstance(item, LoglikelihoodRequest) else LoglikelihoodRequest(*item)
        if not all(isinstance(text, str) for text in (request.context, request.continuation, request.suffix)):
            raise PromptLearningError(f"context, continuation and suffix must be strings, got {item!r}")
        if not request.continuation:
            raise PromptLearningError(f"empty continuation for context {request.context[:60]!r}")
        out.append(request)
    if not out:
        raise PromptLearningError("loglikelihood needs at least one request, got an empty list")
    return out


def shared_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def refuse_suffix(requests: Sequence[LoglikelihoodRequest], model: str) -> None:
    """Models that read left to right cannot see text after the scored continuation."""
    if any(request.suffix for request in requests):
        raise UnsupportedOperationError(
            f"{model} reads left to right: it scores a continuation at the end of the context, not in a blank "
            "with text after it (a suffix, e.g. a template with {{ mask }} before the end); use a masked LM "
            "(BERT, RoBERTa) or put the blank last"
        )


def split_at_boundary(
    request: LoglikelihoodRequest, encode_many: Callable[[list[str]], list[list[int]]]
) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation) as a model sees ``context + continuation``.

    * Trailing whitespace of the context moves to the continuation, because tokenizers attach a
      space to the word after it (``"is" + " Paris"``, not ``"is " + "Paris"``).
    * The whole string is tokenized once; the context is the longest prefix of that tokenization
      shared with the context's own tokenization. When BPE merges a token across the boundary, the
      merged token counts as continuation, so the scored tokens are those of the whole string.
    * The continuation always keeps at least one token. Special tokens (BOS) are the backend's.
    """
    context, continuation = request.context, request.continuation
    stripped = context.rstrip()
    continuation = context[len(stripped) :] + continuation
    if not stripped:
        return [], encode_many([continuation])[0]
    whole, context_ids = encode_many([stripped + continuation, stripped])
    shared = min(shared_prefix_length(whole, context_ids), len(whole) - 1)
    return whole[:shared], whole[shared:]


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """Validate a prompt list for :meth:`LanguageModel.generate`."""
    if isinstance(prompts, str):
        raise PromptLearningError("generate takes a list of prompts; wrap a single prompt in a list")
    prompts = list(prompts)
    if not prompts:
        raise PromptLearningError("generate needs at least one prompt, got an empty list")
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise PromptLearningError(f"prompts must be strings, got {type(prompt).__name__}")
    return prompts


def sample_seed(seed: int, sample: int) -> int:
    """The seed of sample ``sample`` of every prompt in a run seeded with ``seed``."""
    return (seed * 1_000_003 + sample * 7919 + 17) % (2**63 - 1)


def check_calculator(config: GenerationConfig, backend: str) -> None:
    """Refuse calculator decoding on a backend that cannot force tokens in the middle of a generation."""
    if config.calculator:
        raise UnsupportedOperationError(
            f"calculator decoding forces tokens while decoding, which the local causal backends (hf without a "
            f"soft prompt, llamacpp) do; {backend} cannot"
        )


def check_samples(config: GenerationConfig, n: int) -> None:
    """Validate a sample count; warn when greedy decoding would make the samples identical."""
    if not isinstance(n, int) or n < 1:
        raise PromptLearningError(f"the number of samples n must be a positive integer, got {n!r}")
    if n > 1 and not config.do_sample:
        warnings.warn(
            f"temperature 0 (greedy) with n={n}: all samples will be identical; set a temperature > 0",
            UserWarning,
            stacklevel=3,
        )


class LanguageModel(ABC):
    """A model that answers the two request kinds (and optionally embeds texts)."""

    name: str = "model"

    @abstractmethod
    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        """Score each continuation given its context, in request order."""

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[Generation]:
        """Continue each prompt, in prompt order."""

    def sample(
        self,
        prompts: Sequence[str],
        config: GenerationConfig,
        *,
        n: int,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[list[Generation]]:
        """``n`` continuations of every prompt (self-consistency). Sample ``j`` is seeded with
        ``sample_seed(config.seed, j)``. This default calls :meth:`generate` ``n`` times; backends
        that can share the prompt's prefill between samples override it."""
        check_samples(config, n)
        runs = [
            self.generate(
                prompts,
                replace(config, seed=None if config.seed is None else sample_seed(config.seed, j)),
                batch_size=batch_size,
                progress=progress,
            )
            for j in range(n)
        ]
        return [[run[i] for run in runs] for i in range(len(runs[0]))]

    @property
    @abstractmethod
    def max_length(self) -> int:
        """Maximum number of tokens (prompt + continuation) the model can attend to."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes as a prompt (special tokens the backend adds included)."""

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest start of ``text`` that takes at most ``max_tokens`` tokens."""
        raise UnsupportedOperationError(f"{self.name} cannot truncate text by tokens")

    @property
    def has_chat_template(self) -> bool:
        return False

    def apply_chat_template(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render chat ``messages`` as the prompt string the model was trained on."""
        raise UnsupportedOperationError(f"{self.name} has no chat template; use plain prompts")

    def generation_stats(self) -> dict[str, float] | None:
        """Where the time of the last ``generate``/``sample`` call went (prefill/decode split,
        tokens/s), for backends that measure it; ``None`` otherwise."""
        return None

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any:
        """Sentence embeddings as a ``(len(texts), dim)`` float array."""
        raise UnsupportedOperationError(f"{self.name} does not embed texts; use an encoder such as 'minilm-l6'")

    def fingerprint(self) -> str | None:
        """What identifies this model's weights across processes (files and their sizes and times), so
        results computed from them can be cached on disk; ``None`` (the default): not cacheable."""
        return None


@dataclass
class Joining:
    """Prompts that join a generation call while it decodes (continuous batching, as vLLM's
    scheduler admits requests between decoding steps). ``take(room)`` hands over at most ``room``
    new token-id prompts; they get the call's next prompt indices (after the ones it started with).
    ``done(index, result)`` receives a joined prompt's ``n`` samples as soon as all are finished,
    or the exception that stopped it."""

    take: Callable[[int], list[Sequence[int]]]
    done: Callable[[int, list[Generation] | BaseException], None]


class TokenLevelModel(ABC):
    """Token-level access for backends that have their tokenizer in process (the HF causal backend).

    The OpenAI-compatible server needs it: prompts given as token ids, per-token logprobs of an
    echoed prompt, streaming token by token, and tokenize/detokenize endpoints.
    """

    @abstractmethod
    def encode_prompt(self, text: str, *, literals: Sequence[str] = ()) -> list[int]:
        """The ids the model reads for prompt ``text``, the special tokens it needs (BOS) included;
        spans equal to ``literals`` are plain text even where they spell a special token."""

    @abstractmethod
    def encode_text(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (with the tokenizer's own special tokens if asked)."""

    @abstractmethod
    def encode_chat_text(self, text: str, contents: Sequence[str]) -> list[int]:
        """Token ids of a rendered chat, the messages' ``contents`` read as plain text."""

    @abstractmethod
    def decode_ids(self, ids: Sequence[int]) -> str:
        """Text of token ids (special tokens skipped)."""

    @abstractmethod
    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The text of each token on its own (as OpenAI's ``logprobs.tokens`` lists them)."""

    @abstractmethod
    def score_token_ids(self, sequences: Sequence[Sequence[int]], *, top: int = 1) -> list[TokenLogprobs]:
        """Per-token logprobs of whole token sequences (prompt logprobs, ``echo``), in order."""

    @abstractmethod
    def generate_token_ids(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig,
        *,
        n: int = 1,
        on_token: Callable[[int, int, int], None] | None = None,
        joining: Joining | None = None,
    ) -> list[list[Generation]]:
        """``n`` continuations of every token-id prompt; ``on_token(prompt, sample, token_id)`` is
        called for every token as it is chosen (streaming). With ``joining``, prompts may join the
        call while it runs (their results go to ``joining.done``, not into the returned list)."""

    @abstractmethod
    def tokenizer_info(self) -> dict[str, Any]:
        """Special tokens, chat template and context limit (the ``/tokenizer_info`` endpoint)."""


_BACKENDS: dict[str, Callable[..., LanguageModel]] = {}
_RESOLVES_NAMES: set[str] = set()


def register_backend(
    name: str, *, resolves_names: bool = False
) -> Callable[[Callable[..., LanguageModel]], Callable[..., LanguageModel]]:
    """Register a backend factory under ``name``.

    By default the factory is called as ``factory(local_dir_or_hub_id, name=..., **options)``:
    ``load_model`` has resolved an embedded name or a path to a Hugging Face directory first. With
    ``resolves_names=True`` it gets what the user wrote, as ``factory(name_or_path, pull=..., **options)``,
    and resolves it itself (a GGUF file, a model on a server)."""

    def decorator(factory: Callable[..., LanguageModel]) -> Callable[..., LanguageModel]:
        _BACKENDS[name] = factory
        if resolves_names:
            _RESOLVES_NAMES.add(name)
        else:
            _RESOLVES_NAMES.discard(name)
        return factory

    return decorator


def get_backend(name: str) -> Callable[..., LanguageModel]:
    if name not in _BACKENDS:
        known = ", ".join(sorted(_BACKENDS))
        raise BackendNotFoundError(f"unknown backend {name!r}; known backends: {known}")
    return _BACKENDS[name]


def backend_resolves_names(name: str) -> bool:
    """Whether the backend takes the name as the user wrote it (see :func:`register_backend`)."""
    get_backend(name)
    return name in _RESOLVES_NAMES


def backend_names() -> list[str]:
    return sorted(_BACKENDS)
