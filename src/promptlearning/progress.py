"""Progress reporting that fits where the output goes.

* On a terminal (or with ``--progress`` / ``set_progress_style("bar")``): tqdm bars.
* Anywhere else (logs, CI, pipes): a plain line every ``LINE_INTERVAL`` seconds and one at the
  end, so a log file shows progress without carriage-return noise.
* ``"off"``: nothing.

``progress_bar`` is the one way the library reports progress; its ``write`` prints a message
without breaking the bar (training logs use it). Third-party bars (transformers' "Loading weights",
safetensors shards) are silenced around our own loads with :func:`quiet_third_party`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

Style = Literal["auto", "bar", "lines", "off"]
LINE_INTERVAL = 15.0  # seconds between plain progress lines

_style: ContextVar[Style] = ContextVar("progress_style", default="auto")


def set_progress_style(style: Style) -> None:
    """``auto`` (bars on a terminal, plain lines elsewhere), ``bar``, ``lines`` or ``off``."""
    if style not in ("auto", "bar", "lines", "off"):
        raise ValueError(f"progress style must be auto, bar, lines or off, got {style!r}")
    _style.set(style)


THIRD_PARTY_SWITCHES = {
    "TQDM_DISABLE": "1",  # every tqdm bar that is not ours (tqdm reads TQDM_* as default arguments)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub, and transformers' weight loading / shard writing
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


@contextmanager
def third_party_bars_off() -> Iterator[None]:
    """Other libraries' bars (weights loading, shard writing, trainers, dataset maps) off for the body,
    not just around our own loads: they print carriage returns into logs and pipes. The command line
    uses it when progress is off or stderr is not a terminal (our own bars do not use tqdm then).
    Environment switches cover libraries imported later; everything is restored afterwards."""
    import os

    saved = {name: os.environ.get(name) for name in THIRD_PARTY_SWITCHES}
    os.environ.update(THIRD_PARTY_SWITCHES)
    try:
        with _imported_bars_off():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _imported_bars_off() -> Iterator[None]:
    """The libraries already imported read their switch at import: tell them directly (and restore)."""
    modules = sys.modules
    hub = modules.get("huggingface_hub")
    hub_was_off = hub.utils.are_progress_bars_disabled() if hub is not None else True
    transformers_was_on = False
    if "transformers" in modules:
        from transformers.utils import logging as hf_logging

        transformers_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
    datasets = modules.get("datasets")
    datasets_was_on = datasets.is_progress_bar_enabled() if datasets is not None else False
    if hub is not None:
        hub.utils.disable_progress_bars()
    if datasets is not None:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not hub_was_off:
            hub.utils.enable_progress_bars()
        if transformers_was_on:
            hf_logging.enable_progress_bar()
        if datasets_was_on:
            datasets.enable_progress_bars()


def progress_style() -> Style:
    style = _style.get()
    if style == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    return style


class LineProgress:
    """A tqdm-like counter that prints ``desc: n/total (p%), rate/s`` lines at most every few seconds."""

    def __init__(self, total: int | None = None, desc: str = "", initial: int = 0, unit: str = "it", **_: Any) -> None:
        self.total, self.desc, self.n, self.unit = total, desc, initial, unit
        self.start = self.last = time.monotonic()
        self.first = initial
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LINE_INTERVAL:
            self.last = now
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def _line(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = (self.n - self.first) / elapsed
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        extra = f", {self.postfix}" if self.postfix else ""
        tail = f" in {elapsed:.0f} s" if final else ""
        print(f"{self.desc}: {done}, {rate:.1f} {self.unit}/s{extra}{tail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.n > self.first and time.monotonic() - self.start >= LINE_INTERVAL:
            self._line(final=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class _Silent(LineProgress):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass


def progress_bar(total: int | None = None, *, desc: str = "", enabled: bool = True, **options: Any) -> Any:
    """A progress counter with tqdm's ``update``/``write``/``set_postfix``/``close`` interface.

    ``enabled=False`` (the caller's own choice, e.g. a one-batch call) gives a silent counter whose
    ``write`` still prints.
    """
    style = progress_style()
    if not enabled or style == "off":
        return _Silent(total, desc, **options)
    if style == "lines":
        return LineProgress(total, desc, **options)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, **options)


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Silence transformers', huggingface_hub's and datasets' own progress bars (weights loading, shard
    writing, dataset maps)."""
    import datasets
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hub_was_disabled = hub_utils.are_progress_bars_disabled()
    datasets_was_enabled = datasets.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        if not hub_was_disabled:
            hub_utils.enable_progress_bars()
        if datasets_was_enabled:
            datasets.enable_progress_bars()
