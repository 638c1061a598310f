"""Checking what methods receive as examples: a list of mappings from field names to values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from promptlearning.errors import PromptLearningError


def as_examples(examples: Iterable[Mapping[str, Any]], what: str) -> list[Mapping[str, Any]]:
    """``examples`` as a list, refusing a lone string or dict (a common slip) and non-dict items."""
    if isinstance(examples, str | bytes | Mapping):
        raise PromptLearningError(
            f"{what} takes a list of examples (dicts of fields), got a single {type(examples).__name__}; "
            "wrap it in a list, e.g. [{'text': 'a gorgeous film'}]"
        )
    try:
        rows = list(examples)
    except TypeError:
        raise PromptLearningError(f"{what} takes a list of examples, got {type(examples).__name__}") from None
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise PromptLearningError(
                f"{what}: example {index} is a {type(row).__name__}, not a dict of fields such as {{'text': ...}}"
            )
    return rows
