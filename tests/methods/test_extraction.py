"""Answer extraction chains: strict and flexible numbers, normalisation, multiple choice, no answer."""

from __future__ import annotations

import pytest

from promptlearning.methods.extraction import (
    ExtractionChain,
    LastNumber,
    MultipleChoice,
    NormaliseNumber,
    Regex,
    multiple_choice_extractors,
    normalise_reference,
    numeric_extractors,
)

CHAINS = numeric_extractors()


@pytest.mark.parametrize(
    ("text", "strict", "flexible"),
    [
        ("She has 3 + 4 = 7 apples. The answer is 7.", "7", "7"),
        ("Total is 1,200 dollars.\n#### 1,200", "1200", "1200"),
        ("The answer is $18.00.", "18", "18"),
        ("So 5 * 4 = 20. The final answer is 20", "20", "20"),
        ("He pays 12.50 for 2 shirts", None, "2"),
        ("There are 2 cats and 3 dogs, 5 pets", None, "5"),
        ("The answer is -3.", "-3", "-3"),
        ("The answer is 0.50", "0.5", "0.5"),
        ("I do not know.", None, None),
        ("", None, None),
    ],
)
def test_strict_and_flexible_numbers(text, strict, flexible):
    assert CHAINS["strict"](text) == strict
    assert CHAINS["flexible"](text) == flexible


def test_strict_takes_the_first_stated_answer_and_normalises_units():
    assert CHAINS["strict"]("The answer is 4 apples. Then more text. The answer is 9.") == "4"
    assert NormaliseNumber()("$ 1,000.0 per week") == "1000"
    assert NormaliseNumber()(".5") == "0.5"
    assert NormaliseNumber()("-0.0") == "0"
    assert NormaliseNumber()("no digits") is None


def test_none_flows_through_a_chain():
    chain = ExtractionChain([Regex((r"answer: (\d+)",)), NormaliseNumber()])
    assert chain("answer: 42") == "42"
    assert chain("nothing here") is None
    assert LastNumber()(None) is None
    with pytest.raises(ValueError):
        ExtractionChain([])


def test_multiple_choice_letters():
    chains = multiple_choice_extractors("ABCD")
    assert chains["strict"]("Let me see. The answer is (C).") == "C"
    assert chains["strict"]("I pick B") is None
    assert chains["flexible"]("I pick B") == "B"
    assert MultipleChoice("ABCD")("(D) looks right") == "D"
    assert MultipleChoice("ABCD")("no letter here") is None


def test_references_are_normalised_like_answers():
    assert normalise_reference("1,200") == "1200"
    assert normalise_reference("18") == "18"
