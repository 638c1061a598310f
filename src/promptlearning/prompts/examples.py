"""Examples: mappings from field names to values, and the checks and groupings every method needs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from promptlearning.errors import PromptLearningError

Example = Mapping[str, Any]
"""One example: field name -> value (``{"text": "...", "label": "positive"}``)."""


def group_by_label(pool: Sequence[Example], label_field: str) -> dict[str, list[int]]:
    """Indices of ``pool`` per label (labels as strings), in pool order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(pool):
        groups[str(example[label_field])].append(index)
    return dict(groups)


def as_examples(examples: Iterable[Example], what: str) -> list[Example]:
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
