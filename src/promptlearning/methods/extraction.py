"""Answer extraction: small composable steps that turn a generated rationale into an answer.

A chain is a list of steps; each step maps a string (or ``None``, "no answer") to a string or
``None``. The first steps *find* the answer span, later steps *normalise* it::

    strict = ExtractionChain([Regex.strict(), NormaliseNumber()])     # "#### 42", "The answer is 42"
    flexible = ExtractionChain([LastNumber(), NormaliseNumber()])      # the last number anywhere
    strict("... so she has 7 apples. The answer is $1,200.00.")        # -> "1200"

Both the strict and the flexible score are reported for every run, because models (and peers'
users) differ mostly in *format*, not in reasoning. A text without an answer gives ``None``, which
is scored as wrong; extraction never raises on model output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Step = Callable[[str | None], str | None]

NUMBER = r"-?[$]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
STRICT_PATTERNS = (
    rf"####\s*({NUMBER})",
    rf"[Tt]he (?:final )?answer is[:\s]*\$?\s*\(?({NUMBER})",
)


@dataclass(frozen=True)
class Regex:
    """The first (or last) match of any of the patterns; the pattern's group 1 when it has one."""

    patterns: tuple[str, ...]
    last: bool = False

    @classmethod
    def strict(cls) -> Regex:
        """GSM8K's strict formats: ``#### N`` and ``The answer is N``."""
        return cls(STRICT_PATTERNS)

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        for pattern in self.patterns:
            matches = list(re.finditer(pattern, text))
            if matches:
                match = matches[-1] if self.last else matches[0]
                return match.group(1) if match.groups() else match.group(0)
        return None


@dataclass(frozen=True)
class LastNumber:
    """The last number in the text (flexible extraction)."""

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        numbers = re.findall(NUMBER, text)
        return numbers[-1] if numbers else None


@dataclass(frozen=True)
class FirstNumber:
    """The first number in the text (for answer-extraction prompts that answer right away)."""

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        match = re.search(NUMBER, text)
        return match.group(0) if match else None


@dataclass(frozen=True)
class MultipleChoice:
    """A choice letter: "(B)", "answer is C", or a lone capital letter among ``letters``."""

    letters: str = "ABCDE"

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        letters = re.escape(self.letters)
        for pattern in (rf"[Aa]nswer is:?\s*\(?([{letters}])\b", rf"\(([{letters}])\)", rf"\b([{letters}])\b"):
            match = re.search(pattern, text)
            if match:
                return match.group(1)
        return None


@dataclass(frozen=True)
class NormaliseNumber:
    """Canonical number text: no ``$``, commas, spaces or units; ``12.0`` -> ``12``, ``.50`` -> ``0.5``."""

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        match = re.search(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+", text.replace("$", "").replace(" ", ""))
        if not match:
            return None
        number = match.group(0).replace(",", "")
        if "." in number:
            number = number.rstrip("0").rstrip(".")
        if number.startswith("-."):
            number = "-0" + number[1:]
        elif number.startswith("."):
            number = "0" + number
        return "0" if number in ("-0", "") else number


@dataclass(frozen=True)
class Strip:
    """Whitespace and trailing punctuation removed."""

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        stripped = text.strip().rstrip(".!?,;:").strip()
        return stripped or None


class ExtractionChain:
    """Apply steps in order; ``None`` ("no answer") passes through to the end."""

    def __init__(self, steps: Sequence[Step]) -> None:
        if not steps:
            raise ValueError("an extraction chain needs at least one step")
        self.steps = list(steps)

    def __call__(self, text: str | None) -> str | None:
        for step in self.steps:
            text = step(text)
        return text

    def __repr__(self) -> str:
        return f"ExtractionChain({self.steps!r})"


def numeric_extractors() -> dict[str, ExtractionChain]:
    """The strict and flexible chains for numeric answers (GSM8K and the like)."""
    return {
        "strict": ExtractionChain([Regex.strict(), NormaliseNumber()]),
        "flexible": ExtractionChain([LastNumber(), NormaliseNumber()]),
    }


def multiple_choice_extractors(letters: str = "ABCDE") -> dict[str, ExtractionChain]:
    """The strict and flexible chains for multiple-choice letters."""
    return {
        "strict": ExtractionChain([Regex((rf"[Aa]nswer is:?\s*\(?([{re.escape(letters)}])\b",))]),
        "flexible": ExtractionChain([MultipleChoice(letters)]),
    }


def normalise_reference(answer: str) -> str | None:
    """A gold answer in the same canonical form as extracted ones (``"1,200"`` -> ``"1200"``)."""
    return NormaliseNumber()(str(answer))
