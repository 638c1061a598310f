"""llama.cpp in-process backend (``llama-cpp-python``) for GGUF models.

Install with ``pip install "promptlearning[llamacpp]"`` (pip builds llama.cpp from source, ~5 min
on 2 cores; pip keeps the built wheel in its cache). Select it by name::

    load_model("smollm2-135m-instruct", backend="llamacpp")   # the embedded model's GGUF file
    load_model("/path/to/model.gguf", backend="llamacpp")

It decodes one sequence at a time, but each token is much cheaper than in ``transformers`` on a
CPU (quantised matmuls). A prompt that starts like the previous one reuses its evaluated prefix
(llama-cpp-python keeps the KV cache of the last prompt), so few-shot exemplars are prefilled once
when prompts are sent in order.

Scores come from the logits buffer after ``eval`` (``logits_all=True``), not from the library's
``echo`` log-probs, which were measured off by one position here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptlearning.errors import (
    CorruptModelError,
    PromptLearningError,
    PromptTooLongError,
    UnsupportedOperationError,
)
from promptlearning.models.calculator import MAX_EXPRESSION_CHARS, calculator_completion, continuation_ids
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    LanguageModel,
    LoglikelihoodResult,
    RequestLike,
    as_requests,
    check_prompts,
    refuse_suffix,
    shared_prefix_length,
    split_at_boundary,
)
from promptlearning.progress import progress_bar


def _import_llama() -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise UnsupportedOperationError(
            'the llama.cpp backend needs llama-cpp-python: pip install "promptlearning[llamacpp]" '
            "(builds llama.cpp from source, about 5 minutes)"
        ) from exc
    return Llama


def _gpu_layers(device: str) -> int:
    """llama.cpp offloads every layer to the GPU (-1) when asked for one, or for ``auto`` when its
    build supports offloading; none (0) on ``cpu``."""
    import llama_cpp

    from promptlearning.devices import DeviceError, check_device_name

    device = check_device_name(device)
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    if device == "cpu":
        return 0
    if device != "auto" and not offload:
        raise DeviceError(f"device {device!r}: this llama-cpp-python build cannot offload to a GPU (a CPU build)")
    return -1 if offload else 0


class LlamaCppModel(LanguageModel):
    """A GGUF model run in-process by llama.cpp."""

    def __init__(
        self,
        gguf_path: str | Path,
        *,
        name: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        device: str = "auto",
        **_: Any,
    ) -> None:
        path = Path(gguf_path)
        if not path.is_file():
            raise PromptLearningError(f"{path} is not a GGUF file")
        Llama = _import_llama()
        try:
            self.llm = Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, logits_all=True,
                n_gpu_layers=_gpu_layers(device), verbose=False,
            )  # fmt: skip
        except (ValueError, RuntimeError) as exc:
            raise CorruptModelError(f"llama.cpp could not load {path}: {exc}") from exc
        self.name = name or path.name
        self.path = path
        self.add_bos = bool(self.llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true")
        self.eos_token_id = self.llm.token_eos()
        self.last_seconds = 0.0

    # ------------------------------------------------------------------ tokens

    @property
    def max_length(self) -> int:
        return self.llm.n_ctx()

    def encode(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    def _prompt_tokens(self, text: str) -> list[int]:
        bos = [self.llm.token_bos()] if self.add_bos else []
        return bos + self.encode(text)

    def count_tokens(self, text: str) -> int:
        return len(self._prompt_tokens(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        return self.llm.detokenize(ids[: max(max_tokens, 0)]).decode("utf-8", errors="ignore")

    @property
    def has_chat_template(self) -> bool:
        return "tokenizer.chat_template" in self.llm.metadata

    def apply_chat_template(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        if not self.has_chat_template:
            raise UnsupportedOperationError(f"{self.name} has no chat template; use plain prompts")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        template = ImmutableSandboxedEnvironment().from_string(self.llm.metadata["tokenizer.chat_template"])
        eos = self.llm.detokenize([self.eos_token_id]).decode("utf-8", errors="ignore")
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt, eos_token=eos)

    # ------------------------------------------------------------------ scoring

    def _evaluate(self, tokens: list[int]) -> None:
        """Evaluate ``tokens``, reusing the longest prefix already in the KV cache."""
        llm = self.llm
        cached = list(llm.input_ids[: llm.n_tokens])
        common = shared_prefix_length(cached, tokens)
        # eval() drops the KV cache beyond n_tokens and continues from there
        llm.n_tokens = min(common, len(tokens) - 1)  # always evaluate at least one token
        llm.eval(tokens[llm.n_tokens :])

    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        requests = as_requests(requests)
        refuse_suffix(requests, self.name)
        out = []
        bar = progress_bar(len(requests), desc="loglikelihood", enabled=bool(progress))
        for request in requests:
            bar.update(1)
            context_ids, target = split_at_boundary(request, lambda texts: [self.encode(t) for t in texts])
            prefix = ([self.llm.token_bos()] if self.add_bos else []) + context_ids
            if not prefix:
                prefix = [self.eos_token_id]
            tokens = prefix + target
            if len(tokens) > self.max_length:
                raise PromptTooLongError(
                    f"context + continuation take {len(tokens)} tokens, more than {self.max_length}"
                )
            self._evaluate(tokens)
            logits = np.asarray(self.llm.scores[len(prefix) - 1 : len(tokens) - 1], dtype=np.float64)
            logits -= logits.max(-1, keepdims=True)
            logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            token_logprobs = tuple(float(logprobs[i, t]) for i, t in enumerate(target))
            is_greedy = all(int(logprobs[i].argmax()) == t for i, t in enumerate(target))
            pieces = tuple(self.llm.detokenize([t]).decode("utf-8", errors="replace") for t in target)
            out.append(LoglikelihoodResult(token_logprobs=token_logprobs, is_greedy=is_greedy, tokens=pieces))
        bar.close()
        return out

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[Generation]:
        prompts = check_prompts(prompts)
        config = config or GenerationConfig()
        start = time.perf_counter()
        out = []
        bar = progress_bar(len(prompts), desc="generate", enabled=bool(progress))
        for prompt in prompts:
            bar.update(1)
            tokens = self._prompt_tokens(prompt) or [self.eos_token_id]
            if len(tokens) + config.max_new_tokens > self.max_length:
                raise PromptTooLongError(
                    f"prompt of {len(tokens)} tokens + max_new_tokens={config.max_new_tokens} exceeds "
                    f"{self.name}'s context of {self.max_length} tokens (prompt starts {prompt[:60]!r})"
                )
            if config.calculator:
                out.append(self._generate_calculating(tokens, config))
                continue
            result = self.llm.create_completion(
                tokens,
                max_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                top_k=config.top_k if config.do_sample else 1,
                min_p=0.0,
                repeat_penalty=1.0,
                seed=config.seed,
                stop=list(config.stop) or None,
            )
            choice = result["choices"][0]
            reason = "stop" if choice["finish_reason"] == "stop" else "length"
            out.append(Generation(choice["text"], int(result["usage"]["completion_tokens"]), reason))
        self.last_seconds = time.perf_counter() - start
        bar.close()
        return out

    def _generate_calculating(self, prompt: list[int], config: GenerationConfig) -> Generation:
        """One generation with the calculator in the loop: token by token through llama.cpp's
        generator; when the text ends in an open ``<<expr=`` call the result and ``>>`` are appended
        and decoding restarts from the longer sequence (llama.cpp keeps the shared prefix's cache)."""
        llm, limit = self.llm, config.max_new_tokens
        options = {"temp": config.temperature, "top_p": config.top_p, "min_p": 0.0, "repeat_penalty": 1.0,
                   "top_k": config.top_k if config.do_sample else 1}  # fmt: skip
        llm.set_seed(config.seed)
        generated = self._calculated(prompt)[:limit]  # a prompt that ends in an open call
        while len(generated) < limit:
            forced: list[int] = []
            for token in llm.generate(prompt + generated, **options):
                if token == self.eos_token_id:
                    return self._finished(generated, "stop", config)
                generated.append(token)
                if any(stop in self._text(generated) for stop in config.stop):
                    return self._finished(generated, "stop", config)
                forced = self._calculated(prompt + generated) if len(generated) < limit else []
                if forced or len(generated) >= limit:
                    break
            generated += forced[: limit - len(generated)]
        return self._finished(generated, "length", config)

    def _calculated(self, tokens: list[int]) -> list[int]:
        """The calculator's tokens when ``tokens`` end in an open ``<<expr=`` call, else none."""
        text = self._text(tokens[-(MAX_EXPRESSION_CHARS + 4) :])
        completion = calculator_completion(text) if text.endswith("=") else None
        return continuation_ids(self.encode, self._text, tokens, completion) if completion else []

    def _text(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", errors="ignore")

    def _finished(self, tokens: list[int], reason: str, config: GenerationConfig) -> Generation:
        """The generation so far, cut before the first stop string (which is not part of the text)."""
        text = self._text(tokens)
        for stop in config.stop:
            text = text.split(stop, 1)[0]
        return Generation(text, len(tokens), reason)
