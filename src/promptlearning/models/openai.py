"""The remote backend: any OpenAI-compatible server (vLLM, llama.cpp's server, TGI, ``promptlearning
serve``) behind the :class:`LanguageModel` interface — the way out of one machine.

* ``generate`` posts ``/v1/completions`` (one prompt per request, ``concurrency`` in flight: the
  server batches them);
* ``loglikelihood`` posts the token ids of context + continuation with ``echo`` and ``logprobs``
  and reads the prompt's own logprobs, so the context/continuation boundary is exactly the local
  backend's (the tokenizer is loaded locally). ``max_tokens`` is 1, not 0: llama.cpp's server reads 0
  as "no limit"; the one generated token is not read.
* retries with exponential backoff on 429, 5xx and connection errors, honouring ``Retry-After``,
  are the official ``openai`` client's.

The API key comes from an environment variable (``OPENAI_API_KEY`` unless ``api_key_env`` says
otherwise) and is never written anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError, PromptTooLongError, UnsupportedOperationError
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    LanguageModel,
    LoglikelihoodResult,
    RequestLike,
    as_requests,
    check_prompts,
    check_samples,
    refuse_suffix,
    split_at_boundary,
)
from promptlearning.progress import progress_bar


class RemoteServerError(PromptLearningError):
    """The server refused a request, could not be reached, or cannot answer this kind of request."""


class OpenAICompatibleModel(LanguageModel):
    """A model served by an OpenAI-compatible server at ``base_url`` (e.g. ``http://host:8000/v1``).

    ``model`` is the name the server knows it by; ``tokenizer`` a local directory or embedded model
    name with its tokenizer (default: ``model`` when that is local), needed for ``loglikelihood``,
    token counting and chat templates.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        tokenizer: str | Path | None = None,
        name: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        max_length: int | None = None,
    ) -> None:
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise PromptLearningError(
                "the openai backend needs the server's address: base_url (task files: base_url:, CLI: --base-url, "
                "or $OPENAI_BASE_URL), e.g. http://127.0.0.1:8000/v1"
            )
        if concurrency < 1:
            raise PromptLearningError(f"concurrency must be >= 1, got {concurrency}")
        self.remote_model = model
        self.name = name or model
        self.base_url = base_url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=key or "none", timeout=timeout, max_retries=max_retries
        )
        self.concurrency = concurrency
        self._tokenizer_source = tokenizer if tokenizer is not None else _local_tokenizer_source(model)
        self._max_length = max_length

    # ------------------------------------------------------------------ tokens (local)

    @cached_property
    def tokens(self) -> Any:
        """The model's tokenizer as it sees prompts (:class:`PromptTokens`), loaded locally."""
        from transformers import AutoConfig, AutoTokenizer

        from promptlearning.models.hf.tokens import PromptTokens

        if self._tokenizer_source is None:
            raise UnsupportedOperationError(
                f"{self.name} is remote and no local tokenizer is known: pass tokenizer=DIR (task files: tokenizer:, "
                "CLI: --tokenizer) with the model's tokenizer files (an embedded model name works too); "
                "loglikelihood, token counts and chat templates need it"
            )
        source = str(self._tokenizer_source)
        local = Path(source).is_dir()
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        try:
            model_type = AutoConfig.from_pretrained(source, local_files_only=local).model_type
        except (OSError, ValueError):
            model_type = ""
        return PromptTokens(tokenizer, model_type=model_type)

    @property
    def max_length(self) -> int:
        if self._max_length is None:
            self._max_length = self._server_max_length() or 2048
        return self._max_length

    def _server_max_length(self) -> int | None:
        if self._tokenizer_source is not None:
            from transformers import AutoConfig

            try:
                config = AutoConfig.from_pretrained(str(self._tokenizer_source), local_files_only=True)
                text = config.get_text_config() if hasattr(config, "get_text_config") else config
                return getattr(text, "max_position_embeddings", None)
            except (OSError, ValueError):
                pass
        return None

    def count_tokens(self, text: str) -> int:
        return len(self.tokens.prefix) + len(self.tokens.encode(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        return self.tokens.truncate(text, max_tokens)

    @property
    def has_chat_template(self) -> bool:
        try:
            return self.tokens.has_chat_template
        except UnsupportedOperationError:
            return False

    def apply_chat_template(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        text = self.tokens.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        bos = self.tokens.tokenizer.bos_token
        return text[len(bos) :] if bos and self.tokens.add_bos and text.startswith(bos) else text

    # ------------------------------------------------------------------ requests

    def _map(self, function: Any, items: Sequence[Any], desc: str, progress: bool | None) -> list[Any]:
        """``function`` over ``items`` with ``concurrency`` requests in flight, results in order."""
        show = len(items) > 1 if progress is None else progress
        with ThreadPoolExecutor(self.concurrency) as pool, progress_bar(len(items), desc=desc, enabled=show) as bar:
            futures = [pool.submit(function, item) for item in items]
            results = []
            for future in futures:
                results.append(future.result())
                bar.update(1)
        return results

    def _post(self, **payload: Any) -> Any:
        import openai

        try:
            return self.client.completions.create(model=self.remote_model, **payload)
        except openai.APIStatusError as exc:
            raise RemoteServerError(f"{self.base_url} answered {exc.status_code}: {_server_message(exc)}") from None
        except openai.APIConnectionError as exc:
            raise RemoteServerError(f"could not reach {self.base_url} ({exc}); is the server running?") from None

    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        requests = as_requests(requests)
        refuse_suffix(requests, self.name)
        unique = list(dict.fromkeys(requests))
        encoded = []
        for request in unique:
            context, continuation = split_at_boundary(request, self.tokens.encode_many)
            prefix = self.tokens.prefix + context
            if not prefix:
                tok = self.tokens.tokenizer
                prefix = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
            if len(prefix) + len(continuation) > self.max_length:
                raise PromptTooLongError(
                    f"context + continuation take {len(prefix) + len(continuation)} tokens, more than {self.name}'s "
                    f"maximum of {self.max_length} (context starts {request.context[:60]!r})"
                )
            encoded.append((prefix, continuation))
        scored = self._map(self._score_one, encoded, "loglikelihood", progress)
        by_request = dict(zip(unique, scored, strict=True))
        return [by_request[r] for r in requests]

    def _score_one(self, pair: tuple[list[int], list[int]]) -> LoglikelihoodResult:
        prefix, continuation = pair
        response = self._post(prompt=prefix + continuation, max_tokens=1, temperature=0, logprobs=1, echo=True)
        logprobs = response.choices[0].logprobs
        start, end = len(prefix), len(prefix) + len(continuation)
        values = list(getattr(logprobs, "token_logprobs", None) or [])[start:end]
        if len(values) != len(continuation) or any(v is None for v in values):
            raise UnsupportedOperationError(
                f"the server at {self.base_url} did not return the prompt's logprobs under echo=true (got "
                f"{len(values)} of {len(continuation)}): it cannot score continuations. vLLM and `promptlearning "
                "serve` can; use one of them for classification, or the local hf backend"
            )
        tops = list(logprobs.top_logprobs or [])[start:end]
        greedy = all(top and v >= max(top.values()) for v, top in zip(values, tops, strict=False)) and len(tops) == len(
            values
        )
        tokens = tuple((logprobs.tokens or [])[start:end])
        return LoglikelihoodResult(token_logprobs=tuple(float(v) for v in values), is_greedy=greedy, tokens=tokens)

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[Generation]:
        config = config or GenerationConfig()
        return [row[0] for row in self._sample(check_prompts(prompts), config, 1, progress)]

    def sample(
        self,
        prompts: Sequence[str],
        config: GenerationConfig,
        *,
        n: int,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[list[Generation]]:
        check_samples(config, n)
        return self._sample(check_prompts(prompts), config, n, progress)

    def _sample(self, prompts: list[str], config: GenerationConfig, n: int, progress: bool | None) -> list:
        payload: dict[str, Any] = {
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "n": n,
        }
        if config.seed is not None:
            payload["seed"] = config.seed
        if config.stop:
            payload["stop"] = list(config.stop)

        def one(prompt: str) -> list[Generation]:
            response = self._post(prompt=prompt, **payload)
            choices = sorted(response.choices, key=lambda c: c.index)
            usage = response.usage
            per_choice = (usage.completion_tokens // max(len(choices), 1)) if usage else 0
            return [Generation(c.text, per_choice, "stop" if c.finish_reason == "stop" else "length") for c in choices]

        return self._map(one, prompts, "generate", progress)

    def chat(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> Generation:
        """One reply through ``/v1/chat/completions`` (the server applies its chat template)."""
        import openai

        config = config or GenerationConfig()
        try:
            response = self.client.chat.completions.create(
                model=self.remote_model,
                messages=messages,
                max_tokens=config.max_new_tokens,  # type: ignore[arg-type]
                temperature=config.temperature,
                top_p=config.top_p,
                seed=config.seed,
                stop=config.stop or None,
            )
        except openai.APIError as exc:
            raise RemoteServerError(f"{self.base_url}: {exc}") from None
        choice = response.choices[0]
        tokens = response.usage.completion_tokens if response.usage else 0
        return Generation(choice.message.content or "", tokens, "stop" if choice.finish_reason == "stop" else "length")


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


def _local_tokenizer_source(model: str) -> str | Path | None:
    """Where the tokenizer of a served model is on this machine, if anywhere: an embedded model's
    cache, or a local directory."""
    from promptlearning.models import hub

    if model in hub.EMBEDDED_MODELS:
        return hub.loadable_path(model) if hub.is_pulled(model) else None
    path = Path(model).expanduser()
    if path.is_dir() and (path / "tokenizer_config.json").is_file():
        return path
    if path.is_file() and path.suffix == ".gguf":
        return hub.converted_gguf_dir(path)
    return None
