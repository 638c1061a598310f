"""What every model endpoint does around its work: the request's limits, and dropping the work
when its client goes away (vLLM aborts a request on disconnect; so does this server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request

from promptlearning.serving.batching import RequestLimits

T = TypeVar("T")

DISCONNECT_POLL_SECONDS = 0.1


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready (logged as status 499)."""


def request_limits(request: Request) -> RequestLimits:
    """The server's per-request limits, charging the request's key for the tokens it uses."""
    settings = request.app.state.settings
    limiter, key = request.app.state.limiter, request.state.key
    return RequestLimits(
        max_prompt_tokens=settings.max_prompt_tokens,
        max_request_tokens=settings.max_request_tokens,
        charge=lambda tokens: limiter.charge_tokens(key, tokens),
    )


def cancel_event(request: Request) -> threading.Event:
    """Set when the request's work is abandoned (its client went away)."""
    event = getattr(request.state, "cancel", None)
    if event is None:
        event = request.state.cancel = threading.Event()
    return event


def abandon(request: Request) -> None:
    """Mark the request's model work abandoned and take its queued jobs out of the queue."""
    cancel_event(request).set()
    request.app.state.batcher.drop_abandoned()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, abandon the request's model work, cancel
    ``work`` and raise :class:`ClientDisconnected` (nobody is left to read an answer)."""
    task: asyncio.Future[T] = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server cancels the request (shutdown): drop its work too
        abandon(request)
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    abandon(request)
    task.cancel()
    task.add_done_callback(_consume)  # a thread still finishing reports nothing to anyone
    raise ClientDisconnected()


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read: the next ASGI message is the disconnect (waited for, where
    # ``is_disconnected()`` would only poll).
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
