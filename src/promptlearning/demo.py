"""The main job shown by ``make demo``: a real answer and real label scores from the default model.

The prompt-classification work turns this into the full zero-/few-shot comparison.
"""

from __future__ import annotations

import math
import time

from promptlearning.models import GenerationConfig, load_model

QUESTION = "What is the capital of France?"
SENTENCES = [
    ("I loved this film, the acting was wonderful.", "positive"),
    ("A dull, tedious mess that wasted two hours of my life.", "negative"),
    ("The soundtrack is gorgeous and the story moved me.", "positive"),
    ("Terrible dialogue and a plot that makes no sense.", "negative"),
]
LABEL_WORDS = {"negative": "negative", "positive": "positive"}


def run_demo(model_name: str) -> int:
    start = time.perf_counter()
    model = load_model(model_name, pull=True)
    print(f"model: {model.name} (loaded in {time.perf_counter() - start:.1f} s)\n")

    prompt = (
        model.apply_chat_template([{"role": "user", "content": QUESTION}])
        if model.has_chat_template
        else (f"Question: {QUESTION}\nAnswer:")
    )
    start = time.perf_counter()
    [answer] = model.generate([prompt], GenerationConfig(max_new_tokens=48))
    print(f"Q: {QUESTION}\nA: {answer.text.strip()}")
    print(f"   ({answer.num_tokens} tokens in {time.perf_counter() - start:.1f} s)\n")

    print("Zero-shot sentiment by scoring label words:")
    requests, contexts = [], []
    for sentence, _ in SENTENCES:
        instruction = f"Is the sentiment of this review positive or negative?\nReview: {sentence}"
        context = (
            model.apply_chat_template([{"role": "user", "content": instruction}])
            if model.has_chat_template
            else instruction + "\nSentiment:"
        )
        contexts.append(context)
        separator = "" if model.has_chat_template else " "  # chat answers start after a newline
        requests += [(context, separator + word) for word in LABEL_WORDS.values()]
    start = time.perf_counter()
    results = model.loglikelihood(requests)
    elapsed = time.perf_counter() - start
    correct = 0
    print(f"  {'p(positive)':>11}  {'predicted':<9} {'gold':<9} sentence")
    for i, (sentence, gold) in enumerate(SENTENCES):
        scores = dict(zip(LABEL_WORDS, (r.logprob for r in results[2 * i : 2 * i + 2]), strict=True))
        p_positive = 1 / (1 + math.exp(scores["negative"] - scores["positive"]))
        predicted = max(scores, key=scores.__getitem__)
        correct += predicted == gold
        print(f"  {p_positive:>11.3f}  {predicted:<9} {gold:<9} {sentence}")
    print(f"\naccuracy {correct}/{len(SENTENCES)}; {len(requests)} continuations scored in {elapsed:.2f} s")
    return 0
