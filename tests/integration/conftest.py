"""Data shared by the integration tests."""

from __future__ import annotations

import pytest

REVIEWS = [
    {"text": "a gorgeous , witty , seductive movie .", "label": "positive"},
    {"text": "the acting is wonderful and the story moving .", "label": "positive"},
    {"text": "an utterly charming and hilarious film .", "label": "positive"},
    {"text": "one of the year 's best .", "label": "positive"},
    {"text": "a dull , tedious mess .", "label": "negative"},
    {"text": "the plot is a disaster and the jokes fall flat .", "label": "negative"},
    {"text": "boring , predictable and far too long .", "label": "negative"},
    {"text": "an ugly , pointless film .", "label": "negative"},
]


@pytest.fixture
def reviews() -> list[dict[str, str]]:
    """Eight short, clearly labelled movie reviews (a tiny training set)."""
    return [dict(row) for row in REVIEWS]
