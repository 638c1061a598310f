"""The playground's two helpers on top of the API: the prompt a template renders for an input (so the
heat map scores exactly that text), and what is on screen exported as a runnable task file."""

from __future__ import annotations

import time
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from promptlearning.errors import PromptLearningError
from promptlearning.prompts.template import PromptTemplate
from promptlearning.serving.errors import APIError
from promptlearning.tasks import validate_config

MAX_TEXT = 20_000  # characters of a template, instruction or input field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: StrictStr = Field(min_length=1, max_length=MAX_TEXT)
    mode: Literal["plain", "chat"] = "plain"
    instruction: StrictStr = Field("", max_length=MAX_TEXT)
    model: StrictStr | None = Field(None, max_length=200)


class RenderRequest(_Body):
    """A template and one input: the prompt the served model sees."""

    input: dict[StrictStr, StrictStr] = Field(max_length=32)


class ExportRequest(_Body):
    """The playground's settings: template, label words, calibration."""

    words: dict[StrictStr, list[StrictStr]] = Field(min_length=2, max_length=200)
    calibration: Literal["none", "contextual", "domain", "batch"] = "none"


def render_prompt(served: Any, body: RenderRequest) -> dict[str, Any]:
    """The rendered prompt (the model's chat template applied in chat mode)."""
    if not served.ready:
        raise APIError(503, "the model is still loading", headers={"Retry-After": "5"})
    name, model = served.text_model(body.model)
    template = _template(body)
    if any(len(v) > MAX_TEXT for v in body.input.values()):
        raise APIError(400, f"an input field is longer than {MAX_TEXT} characters", param="input")
    chat = model.apply_chat_template if body.mode == "chat" else None
    if chat is not None and not getattr(model, "has_chat_template", False):
        raise APIError(400, f"{name} has no chat template: use mode 'plain'", param="mode")
    try:
        return {"model": name, "prompt": template.render(body.input, chat=chat)}
    except PromptLearningError as exc:
        raise APIError(400, str(exc), param="template") from None


def export_task(body: ExportRequest) -> str:
    """A classification task file of the playground's settings, checked by the task schema."""
    _template(body)  # a template that does not compile is refused here, not when the file runs
    labels_of: dict[str, str] = {}
    for label, words in body.words.items():
        for word in words:
            if labels_of.setdefault(word, label) != label:
                raise APIError(400, f"the word {word!r} stands for both {labels_of[word]!r} and {label!r}",
                               param="words")  # fmt: skip
    template: dict[str, Any] = {"mode": body.mode, "input": body.template}
    if body.instruction:
        template["instruction"] = body.instruction
    task = {
        "type": "classification",
        "name": "playground",
        "description": "Exported from the promptlearning playground; point data: at your files.",
        "model": body.model or "smollm2-135m-instruct",
        "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
        "template": template,
        "verbalizer": {"words": body.words},
        "method": {"calibration": body.calibration},
    }
    try:
        validate_config(task, "exported from the playground")
    except PromptLearningError as exc:
        raise APIError(400, str(exc)) from None
    header = f"# Exported from the promptlearning playground, {time.strftime('%Y-%m-%d %H:%M')}.\n" \
             "# Point data: at your labelled files, then: promptlearning run playground-task.yaml\n"  # fmt: skip
    return header + yaml.safe_dump(task, sort_keys=False, allow_unicode=True)


def _template(body: _Body) -> PromptTemplate:
    try:
        return PromptTemplate(body.template, mode=body.mode, instruction=body.instruction)
    except PromptLearningError as exc:
        raise APIError(400, str(exc), param="template") from None
