"""Write the demo dataset shipped with the package: movie-review sentences, balanced, of mixed difficulty.

Every sentence is composed from phrases written for this project (no external data), with a fixed
seed, so the files are reproducible:

    python scripts/make_demo_data.py   # writes src/promptlearning/data/movie_reviews/{train,test}.jsonl

The sentences mix the constructions that make real review sentiment (SST-2) hard for small models,
instead of only plain praise and plain complaints:

* ``plain``: the verdict said outright ("The cast is a joy to watch.");
* ``contrast``: a concession and a verdict that disagree; the verdict decides ("The cast is
  charming, but the film drags on forever.");
* ``negation``: the verdict negated ("The script is never boring.", "It is hardly a triumph.");
* ``hedged``: faint praise or a qualified verdict ("Not perfect, but well worth seeing.", "The best
  that can be said of it is that it is short.");
* ``mood``: a sad or dark subject that is praised, or a cheerful one that is not ("A bleak story of
  grief, told with great tenderness.");
* ``irony`` and ``expectation``: "If you enjoy watching paint dry, this is the film for you.",
  "I expected very little and was won over.".

Each row keeps its construction in ``kind``, so a report can break accuracy down by it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "promptlearning" / "data" / "movie_reviews"

SUBJECTS = [
    "the film", "this movie", "the sequel", "the new comedy", "this thriller", "the remake", "the musical",
    "this drama", "the documentary", "the adaptation", "the director's latest", "this western",
]  # fmt: skip
ASPECTS = [
    "the acting", "the script", "the soundtrack", "the cinematography", "the cast", "the dialogue",
    "the plot", "the lead performance", "the editing", "the ending", "the special effects", "the pacing",
]  # fmt: skip
PRAISE = [
    "is a joy to watch", "is beautifully crafted", "is funny, warm and smart", "kept me gripped to the end",
    "is clever and heartfelt", "is a real triumph", "moved me to tears", "is sharp and full of life",
    "is the best I have seen this year", "is wonderfully entertaining", "deserves every award it gets",
    "is fresh and bold", "won me over completely", "is a small masterpiece",
]  # fmt: skip
COMPLAINT = [
    "is a tedious mess", "falls flat at every turn", "is dull and predictable", "drags on forever",
    "is painfully boring", "has nothing new to say", "is a complete disaster", "is loud, empty and stupid",
    "feels cheap and lazy", "is awkward and badly written", "made no sense at all", "is an unbearable slog",
    "left me cold", "is a waste of a good cast",
]  # fmt: skip
ASPECT_GOOD = [
    "is charming", "is lovely", "is gorgeous", "is strong", "is genuinely funny", "is impressive", "shines",
    "is well made", "is stylish", "is excellent",
]  # fmt: skip
ASPECT_BAD = [
    "is clumsy", "is weak", "is dull", "is a mess", "is forgettable", "is flat", "is irritating", "is lifeless",
    "is muddled", "is hard to sit through",
]  # fmt: skip
GOOD_ADJ = ["funny", "moving", "clever", "original", "exciting", "charming", "memorable", "a triumph", "a delight"]
BAD_ADJ = ["boring", "dull", "predictable", "tedious", "pretentious", "a chore", "a letdown", "a waste of time"]
DARK_SUBJECT = [
    "A bleak story of grief", "A harrowing tale of war", "A grim portrait of addiction", "A sad, quiet film about loss",
    "A dark and violent thriller", "A painful family drama", "A heartbreaking story of a lonely man",
]  # fmt: skip
DARK_PRAISE = [
    "told with great tenderness", "that is impossible to forget", "and one of the finest films of the year",
    "handled with real grace", "that left me deeply moved", "and every minute of it is worth it",
    "made with astonishing care",
]  # fmt: skip
BRIGHT_SUBJECT = [
    "A bright, cheerful cast", "Colourful costumes and catchy songs", "A sunny holiday setting",
    "Lovely scenery and a famous star", "A lively, upbeat soundtrack", "A big budget and a happy ending",
    "Plenty of jokes and bright colours",
]  # fmt: skip
BRIGHT_COMPLAINT = [
    "cannot save this dreary script", "are wasted on a story that goes nowhere", "cannot hide how empty it all is",
    "do nothing for a film this lazy", "cannot make up for two hours of boredom", "are not enough to keep me awake",
    "only make the tedium more obvious",
]  # fmt: skip
IRONY = [
    "If you enjoy watching paint dry, {s} is for you.", "Two hours of my life I will never get back.",
    "Bring a pillow: {s} is the perfect cure for insomnia.", "Congratulations to {s} for making ninety minutes feel like a week.",
    "{S} is a masterclass in how not to make a movie.", "The best thing about {s} is the closing credits.",
    "I have had more fun waiting at the dentist than watching {s}.",
]  # fmt: skip
EXPECT_GOOD = [
    "I expected very little from {s} and was won over.", "I went in with low hopes, and {s} surprised me at every turn.",
    "{S} is even better than the original.", "Against all odds, {s} works beautifully.",
    "Do not let the silly title fool you: {s} is a gem.",
]  # fmt: skip
EXPECT_BAD = [
    "I expected a lot from {s} and was bitterly disappointed.", "{S} is a pale copy of the original.",
    "After such a strong start, {s} falls apart.", "For all its ambition, {s} never comes to life.",
    "Despite the famous names, {s} is a letdown.",
]  # fmt: skip
NEGATED_GOOD = ["is never boring", "is never dull for a second", "does not put a foot wrong", "never loses its grip",
                "is not bad at all", "is far from the disaster I was warned about", "never feels long"]  # fmt: skip
NEGATED_BAD = ["is not worth your time", "never comes together", "does not work at all", "has no life in it",
               "never quite manages to be funny", "is not as good as everyone says", "fails to surprise"]  # fmt: skip
HEDGED_GOOD = [
    "Not perfect, but {s} is well worth seeing.", "I would not call {s} a failure; far from it.",
    "{S} has its flaws, but I would happily watch it again.", "It is no masterpiece, yet {s} made me smile throughout.",
    "You could do a lot worse than {s}; I had a great time.",
]  # fmt: skip
HEDGED_BAD = [
    "The best that can be said of {s} is that it is short.", "I cannot say I enjoyed {s}.",
    "{S} is pleasant enough, but I had forgotten it by the next morning.", "There are a few good moments in {s}, and that is all.",
    "{S} is fine, I suppose, if you have nothing better to do.",
]  # fmt: skip

Row = dict[str, str]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def plain(rng: random.Random, label: str) -> str:
    predicate = rng.choice(PRAISE if label == "positive" else COMPLAINT)
    return f"{_cap(rng.choice(SUBJECTS))} {predicate}."


def contrast(rng: random.Random, label: str) -> str:
    aspect, subject = rng.choice(ASPECTS), rng.choice(SUBJECTS)
    if label == "positive":
        forms = [
            f"{_cap(aspect)} {rng.choice(ASPECT_BAD)}, but {subject} {rng.choice(PRAISE)}.",
            f"Although {aspect} {rng.choice(ASPECT_BAD)}, {subject} {rng.choice(PRAISE)}.",
        ]
    else:
        forms = [
            f"{_cap(aspect)} {rng.choice(ASPECT_GOOD)}, but {subject} {rng.choice(COMPLAINT)}.",
            f"Although {aspect} {rng.choice(ASPECT_GOOD)}, {subject} {rng.choice(COMPLAINT)}.",
        ]
    return rng.choice(forms)


def negation(rng: random.Random, label: str) -> str:
    subject = _cap(rng.choice(SUBJECTS))
    if label == "positive":
        forms = [f"{subject} {rng.choice(NEGATED_GOOD)}.", f"{subject} is anything but {rng.choice(BAD_ADJ)}.",
                 f"There is not a single dull moment in {rng.choice(SUBJECTS)}."]  # fmt: skip
    else:
        forms = [f"{subject} {rng.choice(NEGATED_BAD)}.", f"{subject} is hardly {rng.choice(GOOD_ADJ)}.",
                 f"{subject} is not nearly as {rng.choice(GOOD_ADJ[:6])} as it thinks."]  # fmt: skip
    return rng.choice(forms)


def hedged(rng: random.Random, label: str) -> str:
    subject = rng.choice(SUBJECTS)
    return rng.choice(HEDGED_GOOD if label == "positive" else HEDGED_BAD).format(s=subject, S=_cap(subject))


def mood(rng: random.Random, label: str) -> str:
    if label == "positive":
        return f"{rng.choice(DARK_SUBJECT)}, {rng.choice(DARK_PRAISE)}."
    return f"{rng.choice(BRIGHT_SUBJECT)} {rng.choice(BRIGHT_COMPLAINT)}."


def irony_or_expectation(rng: random.Random, label: str) -> str:
    subject = rng.choice(SUBJECTS)
    forms = EXPECT_GOOD if label == "positive" else [*IRONY, *EXPECT_BAD]
    return rng.choice(forms).format(s=subject, S=_cap(subject))


KINDS: dict[str, tuple[Callable[[random.Random, str], str], float]] = {
    "plain": (plain, 0.3),
    "contrast": (contrast, 0.1),
    "negation": (negation, 0.2),
    "hedged": (hedged, 0.15),
    "mood": (mood, 0.1),
    "irony-expectation": (irony_or_expectation, 0.15),
}


def sentences(rng: random.Random, n: int, seen: set[str]) -> list[Row]:
    """``n`` new sentences, half of each label, constructions in the proportions of ``KINDS``."""
    rows: list[Row] = []
    for label in ("positive", "negative"):
        for kind, (make, share) in KINDS.items():
            wanted = round(share * n / 2)
            made = 0
            while made < wanted:
                text = make(rng, label)
                if text not in seen:
                    seen.add(text)
                    rows.append({"text": text, "label": label, "kind": kind})
                    made += 1
    rng.shuffle(rows)
    return rows


def main() -> None:
    rng = random.Random(2026)
    seen: set[str] = set()
    train = sentences(rng, 120, seen)
    test = sentences(rng, 200, seen)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    print(f"wrote {len(train)} train and {len(test)} test sentences to {OUT}")


if __name__ == "__main__":
    main()
