"""Prompt templates: Jinja2 in a sandbox, strict about fields, plain or chat, shortening one field.

A template turns an example (a dict of fields) into the text the model continues. Demonstrations
(solved examples) are rendered with the same template followed by their answer.

* ``mode="plain"`` (base models): ``instruction``, demonstrations and the query are joined by
  ``separator``; the answer follows the query directly (label words carry their leading space).
* ``mode="chat"`` (instruct models): the instruction is the system message, each demonstration is a
  user turn answered by an assistant turn, and the query is a user turn with the assistant turn opened.
  Answers start the assistant turn, so label words lose their leading whitespace there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError

from promptlearning.errors import PromptTooLongError
from promptlearning.prompts.sandbox import ENVIRONMENT as _ENV
from promptlearning.prompts.sandbox import TemplateError, TemplateLimitError, render_limited

__all__ = ["Demonstration", "PromptTemplate", "TemplateError", "TemplateLimitError", "compile_template"]


@dataclass(frozen=True)
class Demonstration:
    """A solved example shown in the prompt: its fields and the answer text (a label word)."""

    example: Mapping[str, Any]
    answer: str


def compile_template(source: str, what: str = "template") -> Any:
    if not isinstance(source, str):
        raise TemplateError(f"{what} must be a string (a Jinja2 template), got {type(source).__name__}")
    try:
        return _ENV.from_string(_ENV.parse_limited(source))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{what} does not parse (line {exc.lineno}): {exc.message}\n  {source!r}") from exc


BLANK_FIELD = "mask"
"""The field marking where the answer goes (``It was {{ mask }} .``); without it the answer follows the prompt."""
BLANK_MARK = "\u2063[answer]\u2063"  # stands in the rendered query until the prompt is split around the blank


def split_at_blank(prompt: str) -> tuple[str, str]:
    """(text before the answer, text after it) of a rendered prompt."""
    before, _, after = prompt.partition(BLANK_MARK)
    return before, after


class PromptTemplate:
    """Renders examples into prompts. ``input`` is a Jinja2 template over the example's fields.

    The answer goes after the rendered input, or where ``{{ mask }}`` stands (a cloze template: masked
    LMs read the text after the blank too). In demonstrations the blank holds the demonstration's answer.
    """

    def __init__(
        self,
        input: str,
        *,
        instruction: str = "",
        mode: Literal["plain", "chat"] = "plain",
        separator: str = "\n\n",
        shorten: str | None = None,
    ) -> None:
        if mode not in ("plain", "chat"):
            raise TemplateError(f"template mode must be 'plain' or 'chat', got {mode!r}")
        self.source = input
        self.instruction = instruction
        self.mode = mode
        self.separator = separator
        self.shorten = shorten
        self._template = compile_template(input, "template input")
        self.fields = sorted(meta.find_undeclared_variables(_ENV.parse(input)))
        if shorten is not None and shorten not in self.fields:
            raise TemplateError(f"shorten names field {shorten!r}, which the template does not use ({self.fields})")

    # ------------------------------------------------------------------ rendering one example

    @property
    def has_blank(self) -> bool:
        """Whether the template places the answer itself (``{{ mask }}``)."""
        return BLANK_FIELD in self.fields

    @property
    def input_fields(self) -> list[str]:
        """The fields an example must provide (the blank is not one of them)."""
        return [f for f in self.fields if f != BLANK_FIELD]

    def render_input(self, example: Mapping[str, Any], *, blank: str | None = None) -> str:
        """The query text for one example (no demonstrations, no chat wrapping); ``blank`` fills ``{{ mask }}``."""
        if not isinstance(example, Mapping):
            raise TemplateError(f"an example must be a mapping of field names to values, got {type(example).__name__}")
        if self.has_blank:
            example = {**example, BLANK_FIELD: blank if blank is not None else example.get(BLANK_FIELD, "")}
        nulls = [f for f in self.fields if f in example and example[f] is None]
        if nulls:
            raise TemplateError(f"field(s) {nulls} of the example are null; give them a value or drop the example")
        try:
            return render_limited(self._template, example)
        except UndefinedError as exc:
            missing = [f for f in self.fields if f not in example]
            raise TemplateError(
                f"the template uses field(s) {missing or exc.message} that the example does not have; "
                f"available fields: {sorted(example)}"
            ) from exc
        except SecurityError as exc:
            raise TemplateError(f"the template tried an unsafe operation and was stopped: {exc}") from exc

    def answer_text(self, word: str) -> str:
        """How a label word appears after the prompt: without leading whitespace in chat mode."""
        return word.lstrip() if self.mode == "chat" else word

    # ------------------------------------------------------------------ whole prompts

    def render(
        self,
        example: Mapping[str, Any],
        demonstrations: Sequence[Demonstration] = (),
        *,
        chat: Callable[[list[dict[str, str]]], str] | None = None,
        blank: str = BLANK_MARK,
    ) -> str:
        """The full prompt for ``example``; the answer is what the model should continue with (or,
        for a cloze template, what goes where ``blank`` stands: split the prompt with :func:`split_at_blank`).

        ``chat`` is the model's chat-template function, required in chat mode.
        """
        if self.mode == "chat":
            if chat is None:
                raise TemplateError("a chat-mode template needs a model with a chat template")
            messages = [{"role": "system", "content": self.instruction}] if self.instruction else []
            for demo in demonstrations:
                messages.append({"role": "user", "content": self.render_input(demo.example, blank=demo.answer.strip())})
                messages.append({"role": "assistant", "content": self.answer_text(demo.answer)})
            messages.append({"role": "user", "content": self.render_input(example, blank=blank)})
            return chat(messages)
        parts = [self.instruction] if self.instruction else []
        for demo in demonstrations:
            if self.has_blank:
                parts.append(self.render_input(demo.example, blank=demo.answer.strip()))
            else:
                parts.append(self.render_input(demo.example) + demo.answer)
        parts.append(self.render_input(example, blank=blank))
        return self.separator.join(parts)

    def render_to_fit(
        self,
        example: Mapping[str, Any],
        demonstrations: Sequence[Demonstration],
        *,
        budget: int,
        count_tokens: Callable[[str], int],
        truncate: Callable[[str, int], str],
        chat: Callable[[list[dict[str, str]]], str] | None = None,
        blank: str = BLANK_MARK,
    ) -> str:
        """Render, shortening the ``shorten`` field of the query (by tokens) until it fits ``budget``.

        The instruction, the demonstrations and the answer slot are never cut.
        """
        prompt = self.render(example, demonstrations, chat=chat, blank=blank)
        overflow = count_tokens(prompt) - budget
        if overflow <= 0:
            return prompt
        if self.shorten is None:
            raise PromptTooLongError(
                f"the prompt takes {overflow} tokens more than the {budget} available, and the template "
                "names no field to shorten (set `shorten: <field>`)"
            )
        value = str(example.get(self.shorten, ""))
        shortened = dict(example)
        for _ in range(4):  # re-tokenising after a cut can differ by a token or two
            keep = count_tokens(value) - overflow - 1
            if keep <= 0:
                break
            value = truncate(value, keep)
            shortened[self.shorten] = value
            prompt = self.render(shortened, demonstrations, chat=chat, blank=blank)
            overflow = count_tokens(prompt) - budget
            if overflow <= 0:
                return prompt
        raise PromptTooLongError(
            f"the prompt does not fit in {budget} tokens even with field {self.shorten!r} shortened to "
            "nothing: use fewer or shorter demonstrations, or a shorter instruction"
        )
