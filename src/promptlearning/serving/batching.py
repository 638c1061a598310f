"""Concurrent requests gathered into batched model calls, run by one worker thread.

Handlers submit *jobs*: a list of items (scoring requests, prompts, program inputs) and the batched
call that answers a list of items. Jobs with the same key (same model, same kind of call, same
decoding settings) that wait together are concatenated, up to ``max_batch_size`` items, into one
call; its results are split back. A job that arrives while the model is busy waits at most until
the running call ends; an idle worker waits ``wait_seconds`` for company before it starts.

Only this thread touches the models, so the event loop never blocks on one and a model never runs
two calls at once. A failing batched call is retried job by job, so one bad request fails alone.
The queue is bounded: :class:`QueueFullError` at once when it is full (the server answers 429).

A *joinable* job (generation) lets jobs of its key that arrive while its call runs join that call
(:class:`_Admission`): the decoder admits them as rows finish and answers each as soon as its
samples are done, so a request never waits for a whole running batch (continuous batching). It
admits nothing while a job of another kind waits, so scoring requests are not starved.

A job is *abandoned* when its future is cancelled or its ``cancel`` event is set (its client went
away): a queued abandoned job is dropped, and a running call learns which of its items were
abandoned through :mod:`promptlearning.cancellation` (decoding retires their rows). No exception
raised by a call or a client can end the worker; should it end anyway, :attr:`Batcher.failure`
says why, every waiting job fails with :class:`WorkerStoppedError` and new ones are refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from promptlearning.cancellation import abandoning
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

_LOG = logging.getLogger("promptlearning.server")


class QueueFullError(PromptLearningError):
    """The batcher's queue is full; retry later."""


class ShuttingDownError(PromptLearningError):
    """The batcher no longer takes work."""


class RequestCancelled(PromptLearningError):
    """The client that asked for this work went away (it disconnected or gave up)."""


class WorkerStoppedError(PromptLearningError):
    """The model worker has stopped: this server can no longer answer model requests."""


@dataclass
class _Job:
    key: Hashable
    items: list[Any]
    run: Callable[..., Sequence[Any]]  # run(items), or run(items, admission) for a joinable job
    cancel: threading.Event | None = None
    future: Future = field(default_factory=Future)
    joinable: bool = False

    def abandoned(self) -> bool:
        return self.future.cancelled() or (self.cancel is not None and self.cancel.is_set())

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Set the outcome unless the future is already done (a client may cancel it at any time)."""
        if self.future.done():
            return
        try:
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        except InvalidStateError:  # cancelled between the check and the set
            pass


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
        self.failure: str | None = None  # why the worker stopped, if it stopped without being asked
        self._pending: deque[_Job] = deque()
        self._condition = threading.Condition()
        self._running = 0  # jobs in the call being run
        self.joined = 0  # jobs that joined a running call (continuous batching)
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="promptlearning-model", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return self._running

    @property
    def alive(self) -> bool:
        """The worker is there to run calls."""
        return self._thread.is_alive() and self.failure is None

    def submit(
        self,
        key: Hashable,
        items: Sequence[Any],
        run: Callable[[list[Any]], Sequence[Any]],
        *,
        cancel: threading.Event | None = None,
        joinable: bool = False,
    ) -> Future:
        """Queue ``items`` for ``run``; the future holds one result per item. Cancelling the future,
        or setting ``cancel``, abandons the job. A ``joinable`` job's ``run(items, admission)`` lets
        later jobs of its key join the running call through ``admission`` (an :class:`_Admission`)."""
        job = _Job(key, list(items), run, cancel, joinable=joinable)
        with self._condition:
            if self._stopping:
                raise ShuttingDownError("the server is shutting down")
            if not self.alive:
                why = self.failure or "ended"
                raise WorkerStoppedError(f"the model worker has stopped ({why}); restart the server")
            if cancel is not None and cancel.is_set():
                raise RequestCancelled("the request was cancelled")
            if len(self._pending) >= self.max_queue:
                raise QueueFullError(f"{len(self._pending)} requests are waiting for the model; retry shortly")
            self._pending.append(job)
            self._condition.notify()
        return job.future

    def call(
        self,
        key: Hashable,
        items: Sequence[Any],
        run: Callable[[list[Any]], Sequence[Any]],
        *,
        cancel: threading.Event | None = None,
    ) -> list[Any]:
        """:meth:`submit` and wait for the results (from a thread other than the worker)."""
        return self.submit(key, items, run, cancel=cancel).result()

    def drop_abandoned(self) -> int:
        """Take abandoned jobs out of the queue now (their waiters get :class:`RequestCancelled`)."""
        with self._condition:
            return self._drop_abandoned()

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
        batch: list[_Job] = []
        try:
            while True:
                batch = self._next_batch() or []
                if not batch:
                    return
                try:
                    self._run(batch)
                except Exception as exc:  # a fault of the batching itself: fail the batch, keep serving
                    _LOG.exception("model worker: a batched call failed outside the model")
                    for job in batch:
                        job.resolve(error=exc)
                finally:
                    with self._condition:
                        self._running = 0
        except BaseException as exc:
            self.failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
            _LOG.critical("model worker stopped: %s", self.failure)  # the server watches `alive`
        finally:
            self._fail_everything(batch)

    def _fail_everything(self, batch: list[_Job]) -> None:
        """The worker is ending: nobody may wait for it."""
        with self._condition:
            if self.failure is None and not self._stopping:
                self.failure = "the model worker ended"
            jobs = [*batch, *self._pending]
            self._pending.clear()
            self._running = 0
        for job in jobs:
            job.resolve(error=WorkerStoppedError(f"the model worker has stopped ({self.failure or 'stopping'})"))

    def _drop_abandoned(self) -> int:
        dropped = [job for job in self._pending if job.abandoned()]
        for job in dropped:
            self._pending.remove(job)
            job.resolve(error=RequestCancelled("the request was cancelled"))
        return len(dropped)

    def _next_batch(self) -> list[_Job] | None:
        with self._condition:
            while True:
                self._drop_abandoned()
                if self._pending:
                    break
                if self._stopping:
                    return None
                self._condition.wait(0.5)  # wakes up now and then to drop abandoned jobs
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
        for job in batch:
            if job.abandoned():
                job.resolve(error=RequestCancelled("the request was cancelled"))
        batch = [job for job in batch if not job.future.done()]
        if not batch:
            return
        items = [item for job in batch for item in job.items]
        admission = _Admission(self, batch)
        if self.on_batch is not None:
            self.on_batch(len(items))
        try:
            with abandoning(admission.abandoned):
                results = list(batch[0].run(items, admission) if batch[0].joinable else batch[0].run(items))
            if len(results) != len(items):
                raise RuntimeError(f"a batched call returned {len(results)} results for {len(items)} items")
        except Exception as exc:
            unanswered = [job for job in admission.jobs if not job.future.done()]
            if len(admission.jobs) == 1:
                batch[0].resolve(error=exc)
                return
            for job in unanswered:  # isolate the failing request
                self._run([job])
            return
        start = 0
        for job in batch:
            job.resolve(results[start : start + len(job.items)])
            start += len(job.items)


class _Admission:
    """The jobs of one running call: those it started with and those that joined it (``take``), with
    the results of joined ones delivered as they finish (``done``); item indices run over all."""

    def __init__(self, batcher: Batcher, jobs: list[_Job]) -> None:
        self.batcher = batcher
        self.key = jobs[0].key
        self.jobs = list(jobs)
        self.owners = [job for job in jobs for _ in job.items]
        self._first: dict[int, int] = {}  # a joined job's first item index
        self._received: dict[int, dict[int, Any]] = {}

    def abandoned(self, index: int) -> bool:
        return self.owners[index].abandoned()

    def take(self, room: int) -> list[Any]:
        """Items of queued jobs of this call's key, oldest first, that fit in ``room`` items; none
        while a job of another key waits (it runs next) or the batcher is stopping."""
        batcher = self.batcher
        taken: list[Any] = []
        with batcher._condition:
            batcher._drop_abandoned()
            if batcher._stopping or any(job.key != self.key for job in batcher._pending):
                return taken
            for job in list(batcher._pending):
                if len(taken) + len(job.items) > room:
                    break  # first come, first served: a later, smaller job does not overtake
                batcher._pending.remove(job)
                self._first[id(job)] = len(self.owners)
                self.jobs.append(job)
                self.owners += [job] * len(job.items)
                taken += job.items
                batcher._running += 1
                batcher.joined += 1
        if taken and batcher.on_batch is not None:
            batcher.on_batch(len(taken))
        return taken

    def done(self, index: int, result: Any) -> None:
        """A joined item's result (or the exception that failed it): its job is answered once all
        its items are."""
        job = self.owners[index]
        if isinstance(result, BaseException):
            job.resolve(error=result)
            return
        received = self._received.setdefault(id(job), {})
        received[index - self._first[id(job)]] = result
        if len(received) == len(job.items):
            job.resolve([received[i] for i in range(len(job.items))])


def _config_key(config: GenerationConfig) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in asdict(config).items())


class RequestTooLargeError(PromptLearningError):
    """One request would make the model process more tokens than the server allows a request."""


@dataclass
class RequestLimits:
    """What one request may make the model do, checked before every model call it causes: each
    prompt's length, the tokens charged to its key per minute, and the total work of the request.

    Methods (classification, chain-of-thought, programs) decide their model calls themselves, so the
    limits apply where the calls are made rather than to the request body."""

    max_prompt_tokens: int | None = None
    max_request_tokens: int | None = None
    charge: Callable[[int], None] | None = None  # the key's tokens-per-minute limiter
    used: int = 0

    def spend(self, prompt_tokens: Sequence[int], generated: int = 0) -> None:
        """Charge a call on prompts of ``prompt_tokens`` tokens that generates up to ``generated``."""
        if self.max_prompt_tokens is not None:
            longest = max(prompt_tokens, default=0)
            if longest > self.max_prompt_tokens:
                from promptlearning.errors import PromptTooLongError

                raise PromptTooLongError(
                    f"a prompt of this request takes {longest} tokens, more than this server's limit of "
                    f"{self.max_prompt_tokens} (--max-prompt-tokens); send shorter inputs"
                )
        tokens = sum(prompt_tokens) + generated
        self.used += tokens
        if self.max_request_tokens is not None and self.used > self.max_request_tokens:
            raise RequestTooLargeError(
                f"this request needs more than {self.max_request_tokens} tokens of model work, this server's "
                "limit for one request (--max-request-tokens); send fewer inputs, labels or samples"
            )
        if self.charge is not None:
            self.charge(tokens)


class BatchingModel(LanguageModel):
    """A :class:`LanguageModel` whose calls go through a :class:`Batcher`, so that methods running
    in many request threads (classifiers, chain-of-thought) share batched calls of one model.

    Token counting and chat templates are answered in the calling thread (the tokenizer is only
    read there); scoring, generation and embedding run on the batcher's worker. One is made per
    request: its ``limits`` are checked before each call and ``cancel`` abandons the request's work.
    """

    def __init__(
        self,
        model: LanguageModel,
        batcher: Batcher,
        *,
        limits: RequestLimits | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.inner = model
        self.batcher = batcher
        self.name = model.name
        self.limits = limits or RequestLimits()
        self.cancel = cancel

    def _token_counts(self, texts: Sequence[str]) -> dict[str, int]:
        """Tokens of each distinct text (a classifier repeats each prompt once per label word)."""
        return {text: self.count_tokens(text) for text in dict.fromkeys(texts)}

    def _call(self, key: Hashable, items: Sequence[Any], run: Callable[[list[Any]], Sequence[Any]]) -> list[Any]:
        return self.batcher.call(key, items, run, cancel=self.cancel)

    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        items = as_requests(requests)
        counts = self._token_counts([text for r in items for text in (r.context, r.continuation)])
        self.limits.spend([counts[r.context] + counts[r.continuation] for r in items])
        return self._call((id(self.inner), "loglikelihood"), items, self._score)

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
        counts = self._token_counts(prompts)
        self.limits.spend([counts[p] for p in prompts], len(prompts) * n * config.max_new_tokens)

        def run(items: list[str]) -> list[list[Generation]]:
            if n == 1:
                return [[g] for g in self.inner.generate(items, config, progress=False)]
            return self.inner.sample(items, config, n=n, progress=False)

        return self._call((id(self.inner), "generate", _config_key(config), n), prompts, run)

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any:
        import numpy as np

        texts = list(texts)
        self.limits.spend([self.count_tokens(t) for t in texts])
        rows = self._call((id(self.inner), "embed"), texts, lambda items: list(self.inner.embed(items)))
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
