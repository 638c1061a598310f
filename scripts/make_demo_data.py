"""Write the demo dataset shipped with the package: short movie-review sentences, balanced.

The sentences are composed from phrases written for this project (no external data), with a fixed
seed, so the files are reproducible:

    python scripts/make_demo_data.py   # writes src/promptlearning/data/movie_reviews/{train,test}.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "promptlearning" / "data" / "movie_reviews"

SUBJECTS = [
    "The film", "This movie", "The acting", "The script", "The soundtrack", "The ending", "The cast",
    "The plot", "The director's latest work", "This sequel", "The cinematography", "The dialogue",
    "The first half", "The lead performance", "This comedy", "This thriller",
]
POSITIVE = [
    "is a delight from start to finish", "left me smiling for days", "is beautifully crafted",
    "is funny, warm and smart", "deserves every award it gets", "moved me in the best way",
    "is the best thing I have seen this year", "kept me gripped until the last scene",
    "is clever and heartfelt", "shines thanks to a brilliant cast", "is a joy to watch",
    "feels fresh, bold and alive", "is gorgeous and deeply touching", "won me over completely",
    "is a triumph", "made the whole audience cheer", "is wonderfully entertaining",
    "is sharp, witty and full of heart", "is a real masterpiece", "exceeded all my expectations",
]
NEGATIVE = [
    "is a tedious mess", "wasted two hours of my life", "falls flat at every turn",
    "is dull and predictable", "made me want to leave early", "is painfully boring",
    "is a clumsy, lifeless bore", "has nothing new to say", "is an insult to the audience",
    "is a complete disaster", "drags on forever", "is loud, empty and stupid",
    "left me cold and irritated", "is the worst thing I have seen this year", "is a total waste of time",
    "feels cheap and lazy", "is awkward and badly written", "made no sense at all",
    "is an unbearable slog", "fell far below my expectations",
]
OPENERS = ["", "Honestly, ", "In my opinion, ", "Frankly, ", "All in all, "]


def sentences(predicates: list[str], label: str, rng: random.Random, n: int) -> list[dict[str, str]]:
    combos = [(o, s, p) for o in OPENERS for s in SUBJECTS for p in predicates]
    chosen = rng.sample(combos, n)
    rows = []
    for opener, subject, predicate in chosen:
        subject = subject if not opener else subject[0].lower() + subject[1:]
        rows.append({"text": f"{opener}{subject} {predicate}.", "label": label})
    return rows


def main() -> None:
    rng = random.Random(2026)
    positive = sentences(POSITIVE, "positive", rng, 150)
    negative = sentences(NEGATIVE, "negative", rng, 150)
    train = positive[:50] + negative[:50]
    test = positive[50:] + negative[50:]
    rng.shuffle(train)
    rng.shuffle(test)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    print(f"wrote {len(train)} train and {len(test)} test sentences to {OUT}")


if __name__ == "__main__":
    main()
