"""Candidate templates: a library of pattern families instantiated for a task from its seed
template, and instructions proposed by a language model (APE, Zhou et al. 2022).

The seed's input part (everything before its final cue, e.g. ``Review: {{ text }}``) and its cue
word (``Sentiment``) are reused, so the families work for any classification task file:

* key: value — ``<input>\\n<Cue>:``, ``<input>\\nAnswer:``, ``Input: {{ x }}\\nLabel:``;
* question — ``<input>\\nQuestion: What is the <cue>?\\nAnswer:``;
* cloze — ``<input> The <cue> is``;
* instruction — an instruction line before the key-value form;
* each of these with the label words listed (``Options: great, terrible``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.models.interface import GenerationConfig, LanguageModel

CUE = re.compile(r"\n?\s*([A-Za-z][A-Za-z /-]{0,30}):\s*$")


def split_seed(seed_input: str, fields: Sequence[str]) -> tuple[str, str]:
    """The seed template's input part and its final cue word (``"Sentiment"``; ``"Answer"`` if none)."""
    match = CUE.search(seed_input)
    if match and "{{" not in match.group(0):
        return seed_input[: match.start()].rstrip(), match.group(1).strip()
    body = seed_input.rstrip() or " ".join(f"{{{{ {f} }}}}" for f in fields)
    return body, "Answer"


def template_families(seed: Mapping[str, Any], fields: Sequence[str], label_words: Sequence[str]) -> list[dict]:
    """Template candidates (``TemplateConfig`` dicts) built from the seed template; the seed comes first."""
    body, cue = split_seed(seed["input"], fields)
    raw = " ".join(f"{{{{ {f} }}}}" for f in fields)
    topic = cue.lower()
    options = ", ".join(w.strip() for w in label_words)
    inputs = [
        f"{body}\n{cue}:",
        f"{body}\nAnswer:",
        f"Input: {raw}\n{cue}:",
        f"{raw}\nQuestion: What is the {topic}?\nAnswer:",
        f"{body}\nQuestion: What is the {topic}?\nAnswer:",
        f"{raw} The {topic} is",
        f"{body}\nThe {topic} is",
        f"Text: {raw}\n{cue}:",
    ]
    instructions = ["", f"Choose the {topic}: {options}.", f"What is the {topic} of the text? Options: {options}."]
    base = {k: v for k, v in seed.items() if k not in ("input", "instruction")}
    out = [dict(seed)]
    for text in inputs:
        for instruction in instructions:
            out.append({**base, "input": text, "instruction": instruction})
    out += [{**base, "input": f"{body}\nOptions: {options}\n{cue}:", "instruction": ""}]
    return dedupe(out)


def dedupe(templates: Sequence[Mapping[str, Any]]) -> list[dict]:
    seen, out = set(), []
    for t in templates:
        key = (t.get("instruction", ""), t["input"])
        if key not in seen:
            seen.add(key)
            out.append(dict(t))
    return out


INDUCTION = (
    "I gave a friend an instruction. Based on the instruction they produced the following input-output pairs:"
    "\n\n{pairs}\n\nThe instruction was to"
)


def propose_instructions(
    proposer: LanguageModel,
    demos: Sequence[tuple[str, str]],
    *,
    n: int,
    seed: int = 0,
    pairs_per_prompt: int = 5,
    max_new_tokens: int = 40,
) -> list[str]:
    """``n`` instructions induced from input-output pairs (APE's forward template), sampled at
    temperature 0.9 from ``proposer`` — any backend, e.g. a stronger model behind a remote server."""
    if not demos:
        raise PromptLearningError("instruction induction needs labelled examples")
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        chosen = rng.sample(list(demos), min(pairs_per_prompt, len(demos)))
        pairs = "\n\n".join(f"Input: {x}\nOutput: {y.strip()}" for x, y in chosen)
        prompts.append(INDUCTION.format(pairs=pairs))
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.9, top_p=0.95, seed=seed, stop=["\n"])
    out = []
    for generation in proposer.generate(prompts, config):
        text = generation.text.strip().rstrip(".").strip()
        if len(text.split()) >= 2:
            out.append(text[0].upper() + text[1:] + ".")
    return list(dict.fromkeys(out))


def read_templates(path: str) -> list[dict[str, Any]]:
    """A YAML list of candidate templates: strings (the ``input``) or template mappings."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise PromptLearningError(f"cannot read the templates file {path}: {exc}") from None
    if raw is None:
        raw = []
    if not isinstance(raw, list) or not all(isinstance(t, str | dict) for t in raw):
        raise PromptLearningError(f"{path}: expected a YAML list of templates (strings or {{input: ...}} mappings)")
    return [{"input": t} if isinstance(t, str) else dict(t) for t in raw]
