"""scripts/make_word_problems.py: reproducible, correct by the calculator, disjoint from what it excludes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from promptlearning.models.calculator import evaluate, format_number
from promptlearning.tasks.train.config import RationaleSection
from promptlearning.tasks.train.rationale import rationale_target

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_word_problems.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_word_problems", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_problems_are_reproducible_distinct_and_their_arithmetic_is_right() -> None:
    make = _module()
    rows = make.word_problems(300, seed=3)
    assert rows == make.word_problems(300, seed=3) and rows != make.word_problems(300, seed=4)
    assert len({r["question"] for r in rows}) == 300
    assert len({make.normalise(r["question"]).split(" ")[0] for r in rows}) > 5  # several kinds of problem
    for row in rows:
        calls = re.findall(r"<<([^<>=]+)=([^<>]+)>>", row["answer"])
        assert 1 <= len(calls) <= 3
        assert all(format_number(evaluate(expression)) == value for expression, value in calls)
        assert row["answer"].endswith(f"#### {row['final']}") and calls[-1][1] == row["final"]
        assert int(row["final"]) >= 0
        assert rationale_target(row, RationaleSection()).endswith(f"The answer is {row['final']}.")


def test_excluded_questions_are_never_written() -> None:
    make = _module()
    rows = make.word_problems(200, seed=0)
    banned = {make.normalise(rows[0]["question"]), make.normalise(rows[5]["question"])}
    kept = make.word_problems(200, seed=0, exclude=banned)
    assert len(kept) == 200 and not {make.normalise(r["question"]) for r in kept} & banned
