"""Work nobody waits for any more: the server's model worker marks which items of a batched call
were abandoned by their clients (a closed stream, a timed-out request), and long loops such as
decoding stop spending steps on them.

The mark is a context variable, so the models' signatures stay as they are: a loop asks
:func:`abandoned_items` once and, when it gets a check, calls it with an item's index in the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

AbandonedCheck = Callable[[int], bool]

_ABANDONED: ContextVar[AbandonedCheck | None] = ContextVar("promptlearning_abandoned", default=None)


def abandoned_items() -> AbandonedCheck | None:
    """The check of the running batched call (``check(i)``: nobody wants item ``i``), if any."""
    return _ABANDONED.get()


@contextmanager
def abandoning(check: AbandonedCheck) -> Iterator[None]:
    """Run the body with ``check`` telling which of the call's items were abandoned."""
    token = _ABANDONED.set(check)
    try:
        yield
    finally:
        _ABANDONED.reset(token)
