"""Write arithmetic word problems with GSM8K-style solutions, for chain-of-thought fine-tuning.

One- to three-step problems (add, take away, multiply, share equally, prices, rates) composed from
templates written for this project, with a fixed seed; every solution step is a calculator call as
GSM8K writes them (``48/2 = <<48/2=24>>24``) and ends with ``#### N``, and each step's value is
computed by the same evaluator the decoding calculator uses::

    python scripts/make_word_problems.py -n 5000 -o runs/word_problems.jsonl \\
        --exclude ../shared/data/gsm8k/test.jsonl

``--exclude`` drops any problem whose question (lower-cased, numbers and spacing normalised) equals
one in the given JSONL files, so a set can be kept disjoint from every test set. Rows carry
``question``, ``answer`` (the solution) and ``final``: ``rationale_field: answer`` of
``objective: rationale`` reads them as they are, mixed with GSM8K's or alone.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from promptlearning.models.calculator import evaluate, format_number

NAMES = [
    "Ava",
    "Ben",
    "Chloe",
    "Daniel",
    "Emma",
    "Farid",
    "Grace",
    "Hugo",
    "Isla",
    "Jamal",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
]
ITEMS = ["apples", "stickers", "marbles", "pencils", "cookies", "books", "shells", "stamps", "cards", "eggs"]


def _step(sentence: str, expression: str) -> tuple[str, str]:
    """The sentence with its ``{calc}`` filled by the calculator call, and the step's value."""
    value = format_number(evaluate(expression))
    return sentence.format(calc=f"{expression} = <<{expression}={value}>>{value}"), value


def _problem(question: str, steps: list[tuple[str, str]]) -> dict[str, str]:
    """A row: the question, the solution (each step a sentence with its calculator call), the answer."""
    lines, value = [], ""
    for sentence, expression in steps:
        line, value = _step(sentence, expression)
        lines.append(line)
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {value}", "final": value}


def add(r: random.Random, name: str, item: str) -> dict[str, str]:
    a, b = r.randint(2, 60), r.randint(2, 60)
    return _problem(f"{name} has {a} {item}. Then {name} gets {b} more. How many {item} does {name} have now?",
                    [(f"{name} has {{calc}} {item} now.", f"{a}+{b}")])  # fmt: skip


def take_away(r: random.Random, name: str, item: str) -> dict[str, str]:
    a = r.randint(10, 90)
    b = r.randint(1, a - 1)
    return _problem(f"{name} had {a} {item} and gave {b} of them to a friend. How many {item} are left?",
                    [(f"{name} has {{calc}} {item} left.", f"{a}-{b}")])  # fmt: skip


def packs(r: random.Random, name: str, item: str) -> dict[str, str]:
    a, b = r.randint(2, 12), r.randint(2, 15)
    c = r.randint(1, min(20, a * b - 1))
    return _problem(f"{name} buys {a} packs of {item} with {b} {item} in each pack, then gives away {c}. How many "
                    f"{item} does {name} have left?",
                    [(f"The packs hold {{calc}} {item}.", f"{a}*{b}"),
                     (f"After giving some away, {name} has {{calc}} {item}.", f"{a * b}-{c}")])  # fmt: skip


def share(r: random.Random, name: str, item: str) -> dict[str, str]:
    b, each = r.randint(2, 9), r.randint(2, 12)
    keep = r.randint(1, b - 1)
    a = b * each
    return _problem(f"{name} splits {a} {item} equally into {b} bags and keeps {keep} of the bags. How many {item} "
                    f"does {name} keep?",
                    [(f"Each bag holds {{calc}} {item}.", f"{a}/{b}"),
                     (f"{name} keeps {{calc}} {item}.", f"{each}*{keep}")])  # fmt: skip


def budget(r: random.Random, name: str, item: str) -> dict[str, str]:
    count, price = r.randint(2, 9), r.randint(2, 15)
    money = count * price + r.randint(0, 40)
    return _problem(f"{name} has ${money}. {name} buys {count} {item} at ${price} each. How much money does {name} "
                    f"have left?",
                    [(f"The {item} cost ${{calc}}.", f"{count}*{price}"),
                     (f"{name} has ${{calc}} left.", f"{money}-{count * price}")])  # fmt: skip


def wages(r: random.Random, name: str, _: str) -> dict[str, str]:
    rate, hours, days = r.randint(8, 30), r.randint(2, 8), r.randint(2, 6)
    return _problem(f"{name} earns ${rate} an hour and works {hours} hours a day for {days} days. How much does "
                    f"{name} earn?",
                    [(f"In a day {name} earns ${{calc}}.", f"{rate}*{hours}"),
                     (f"In {days} days {name} earns ${{calc}}.", f"{rate * hours}*{days}")])  # fmt: skip


def shop(r: random.Random, _: str, item: str) -> dict[str, str]:
    morning, afternoon = r.randint(3, 40), r.randint(3, 40)
    stock = morning + afternoon + r.randint(1, 60)
    return _problem(f"A shop has {stock} {item}. It sells {morning} in the morning and {afternoon} in the afternoon. "
                    f"How many {item} are left?",
                    [(f"It sells {{calc}} {item} in all.", f"{morning}+{afternoon}"),
                     (f"It has {{calc}} {item} left.", f"{stock}-{morning + afternoon}")])  # fmt: skip


def doubling(r: random.Random, name: str, item: str) -> dict[str, str]:
    a, extra = r.randint(3, 30), r.randint(1, 25)
    return _problem(f"{name} collects {a} {item} in the first week, twice as many in the second week and {extra} in "
                    f"the third week. How many {item} does {name} collect in the three weeks?",
                    [(f"In the second week {name} collects {{calc}} {item}.", f"{a}*2"),
                     (f"In the first two weeks that is {{calc}} {item}.", f"{a}+{a * 2}"),
                     (f"With the third week it is {{calc}} {item}.", f"{a + a * 2}+{extra}")])  # fmt: skip


def half_price(r: random.Random, name: str, item: str) -> dict[str, str]:
    price, count = 2 * r.randint(2, 20), r.randint(2, 10)
    return _problem(f"A box of {item} costs ${price}. On sale it costs half as much. {name} buys {count} boxes on "
                    f"sale. How much does {name} pay?",
                    [("A box on sale costs ${calc}.", f"{price}/2"),
                     (f"{count} boxes cost ${{calc}}.", f"{price // 2}*{count}")])  # fmt: skip


KINDS: list[Callable[[random.Random, str, str], dict[str, str]]] = [
    add,
    take_away,
    packs,
    share,
    budget,
    wages,
    shop,
    doubling,
    half_price,
]


def normalise(question: str) -> str:
    """The form two questions are compared in: lower case, numbers as N, single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"\d[\d,.]*", "N", question.lower())).strip()


def word_problems(count: int, seed: int = 0, exclude: set[str] | None = None) -> list[dict[str, str]]:
    """``count`` distinct problems (by question text), none whose normalised question is in ``exclude``."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < count and attempts < 50 * count:
        attempts += 1
        row = rng.choice(KINDS)(rng, rng.choice(NAMES), rng.choice(ITEMS))
        if row["question"] in seen or (exclude and normalise(row["question"]) in exclude):
            continue
        seen.add(row["question"])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="problems to write (default 5000)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", type=Path, nargs="*", default=[], help="JSONL files whose questions to avoid")
    args = parser.parse_args()
    excluded = set()
    for path in args.exclude:
        with open(path, encoding="utf-8") as rows:
            excluded.update(normalise(json.loads(line)["question"]) for line in rows if line.strip())
    rows = word_problems(args.n, args.seed, excluded)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} problems to {args.output} ({len(excluded)} questions excluded)")


if __name__ == "__main__":
    main()
