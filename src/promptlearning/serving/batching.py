"""Concurrent requests gathered into batched model calls, run by one worker thread.

Handlers submit *jobs*: a list of items (scoring requests, prompts, program inputs) and the batched
call that answers a list of items. Jobs with the same key (same model, same kind of call, same
decoding settings) that wait together are concatenated, up to ``max_batch_size`` items, into one
call; its results are split back. A job that arrives while the model is busy waits at most until
the running call ends; an idle worker waits ``wait_seconds`` for company before it starts.

Only this thread touches the models, so the event loop never blocks on one and a model never runs
two calls at once. A failing batched call is retried job by job, so one bad request fails alone.
The queue is bounded: :class:`QueueFullError` at once when it is full (the server answers 429).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    LanguageModel,
    LoglikelihoodResult,
    RequestLike,
    as_requests,
    check_prompts,
    check_samples,
)


class QueueFullError(PromptLearningError):
    """The batcher's queue is full; retry later."""


class ShuttingDownError(PromptLearningError):
    """The batcher no longer takes work."""


@dataclass
class _Job:
    key: Hashable
    items: list[Any]
    run: Callable[[list[Any]], Sequence[Any]]
    future: Future = field(default_factory=Future)


class Batcher:
    """One worker thread running batched calls (see the module docstring)."""

    def __init__(
        self,
        *,
        max_batch_size: int = 64,
        wait_seconds: float = 0.01,
        max_queue: int = 256,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.wait_seconds = wait_seconds
        self.max_queue = max_queue
        self.on_batch = on_batch  # called with the number of items of every batched call (metrics)
        self._pending: deque[_Job] = deque()
        self._condition = threading.Condition()
        self._running = 0  # jobs in the call being run
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="promptlearning-model", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return self._running

    def submit(self, key: Hashable, items: Sequence[Any], run: Callable[[list[Any]], Sequence[Any]]) -> Future:
        """Queue ``items`` for ``run``; the future holds one result per item."""
        job = _Job(key, list(items), run)
        with self._condition:
            if self._stopping:
                raise ShuttingDownError("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFullError(f"{len(self._pending)} requests are waiting for the model; retry shortly")
            self._pending.append(job)
            self._condition.notify()
        return job.future

    def call(self, key: Hashable, items: Sequence[Any], run: Callable[[list[Any]], Sequence[Any]]) -> list[Any]:
        """:meth:`submit` and wait for the results (from a thread other than the worker)."""
        return self.submit(key, items, run).result()

    def idle(self) -> bool:
        return not self._pending and not self._running

    def stop(self, timeout: float | None = None) -> None:
        """Finish the queued work (up to ``timeout`` seconds), then end the worker."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Job] | None:
        with self._condition:
            while not self._pending:
                if self._stopping:
                    return None
                self._condition.wait()
            first = self._pending.popleft()
            batch, size = [first], len(first.items)
            deadline = time.monotonic() + self.wait_seconds
            while True:
                for job in list(self._pending):
                    if job.key == first.key and size + len(job.items) <= self.max_batch_size:
                        self._pending.remove(job)
                        batch.append(job)
                        size += len(job.items)
                left = deadline - time.monotonic()
                if size >= self.max_batch_size or left <= 0 or self._stopping:
                    break
                self._condition.wait(left)
            self._running = len(batch)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        items = [item for job in batch for item in job.items]
        try:
            if self.on_batch is not None:
                self.on_batch(len(items))
            try:
                results = list(batch[0].run(items))
                if len(results) != len(items):
                    raise RuntimeError(f"a batched call returned {len(results)} results for {len(items)} items")
            except BaseException as exc:
                if len(batch) == 1:
                    batch[0].future.set_exception(exc)
                    return
                for job in batch:  # isolate the failing request
                    self._run([job])
                return
            start = 0
            for job in batch:
                job.future.set_result(results[start : start + len(job.items)])
                start += len(job.items)
        finally:
            with self._condition:
                self._running = 0


def _config_key(config: GenerationConfig) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in asdict(config).items())


class BatchingModel(LanguageModel):
    """A :class:`LanguageModel` whose calls go through a :class:`Batcher`, so that methods running
    in many request threads (classifiers, chain-of-thought) share batched calls of one model.

    Token counting and chat templates are answered in the calling thread (the tokenizer is only
    read there); scoring, generation and embedding run on the batcher's worker.
    """

    def __init__(self, model: LanguageModel, batcher: Batcher) -> None:
        self.inner = model
        self.batcher = batcher
        self.name = model.name

    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        items = as_requests(requests)
        return self.batcher.call((id(self.inner), "loglikelihood"), items, self._score)

    def _score(self, items: list[Any]) -> list[LoglikelihoodResult]:
        return self.inner.loglikelihood(items, progress=False)

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[Generation]:
        config = config or GenerationConfig()
        rows = self.sample(prompts, config, n=1)
        return [row[0] for row in rows]

    def sample(
        self,
        prompts: Sequence[str],
        config: GenerationConfig,
        *,
        n: int,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[list[Generation]]:
        prompts = check_prompts(prompts)
        check_samples(config, n)
        config = replace(config, stop=list(config.stop))

        def run(items: list[str]) -> list[list[Generation]]:
            if n == 1:
                return [[g] for g in self.inner.generate(items, config, progress=False)]
            return self.inner.sample(items, config, n=n, progress=False)

        return self.batcher.call((id(self.inner), "generate", _config_key(config), n), prompts, run)

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any:
        import numpy as np

        rows = self.batcher.call((id(self.inner), "embed"), list(texts), lambda items: list(self.inner.embed(items)))
        return np.stack(rows)

    @property
    def max_length(self) -> int:
        return self.inner.max_length

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        return self.inner.truncate(text, max_tokens)

    @property
    def has_chat_template(self) -> bool:
        return self.inner.has_chat_template

    def apply_chat_template(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        return self.inner.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
