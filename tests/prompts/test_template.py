"""Templates: rendering, strict fields, the sandbox, chat mode and shortening."""

from __future__ import annotations

import pytest

from promptlearning.errors import PromptTooLongError
from promptlearning.prompts import Demonstration, PromptTemplate, TemplateError


def test_plain_rendering_with_demonstrations():
    template = PromptTemplate("Review: {{ text }}\nSentiment:", instruction="Classify.", separator="\n\n")
    demos = [Demonstration({"text": "great"}, " positive"), Demonstration({"text": "awful"}, " negative")]
    prompt = template.render({"text": "fine film"}, demos)
    assert prompt == (
        "Classify.\n\nReview: great\nSentiment: positive\n\nReview: awful\nSentiment: negative\n\n"
        "Review: fine film\nSentiment:"
    )
    assert template.fields == ["text"]


def test_unknown_field_names_the_field_and_the_available_ones():
    template = PromptTemplate("Premise: {{ premise }} Hypothesis: {{ hypothesis }}")
    with pytest.raises(TemplateError) as info:
        template.render_input({"premise": "a", "text": "b"})
    message = str(info.value)
    assert "hypothesis" in message and "['premise', 'text']" in message


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ text.__init__.__globals__ }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_the_sandbox_blocks_python_internals(source):
    template = PromptTemplate(source)
    with pytest.raises(TemplateError):
        result = template.render_input({"text": "x"})
        # Jinja's sandbox may render an unsafe attribute as undefined instead of raising: then nothing leaks.
        assert "class" not in result and "function" not in result, result


def test_syntax_errors_are_template_errors():
    with pytest.raises(TemplateError, match="does not parse"):
        PromptTemplate("{{ text ")


def test_shorten_must_name_a_used_field():
    with pytest.raises(TemplateError, match="shorten"):
        PromptTemplate("{{ text }}", shorten="title")


def test_chat_mode_uses_turns_and_strips_the_answer_space():
    template = PromptTemplate("Review: {{ text }}", mode="chat", instruction="Be brief.")
    seen = []

    def chat(messages):
        seen.extend(messages)
        return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    prompt = template.render({"text": "ok"}, [Demonstration({"text": "great"}, " positive")], chat=chat)
    assert [m["role"] for m in seen] == ["system", "user", "assistant", "user"]
    assert seen[2]["content"] == "positive"
    assert prompt.endswith("user:Review: ok")
    assert template.answer_text(" positive") == "positive"
    with pytest.raises(TemplateError, match="chat template"):
        template.render({"text": "ok"})


def word_count(text: str) -> int:
    return len(text.split())


def first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def test_long_input_is_shortened_only_in_the_named_field():
    template = PromptTemplate(
        "Title: {{ title }}\nBody: {{ body }}\nTopic:", instruction="Say the topic.", shorten="body"
    )
    example = {"title": "big news", "body": " ".join(f"w{i}" for i in range(100))}
    prompt = template.render_to_fit(example, [], budget=30, count_tokens=word_count, truncate=first_words)
    assert word_count(prompt) <= 30
    assert prompt.startswith("Say the topic.\n\nTitle: big news\nBody: w0 w1")
    assert prompt.endswith("\nTopic:")


def test_prompt_that_cannot_fit_is_a_clear_error():
    template = PromptTemplate("{{ title }} {{ body }}", instruction=" ".join(["x"] * 40), shorten="body")
    with pytest.raises(PromptTooLongError, match="even with field 'body' shortened"):
        template.render_to_fit(
            {"title": "t", "body": "a b c"}, [], budget=20, count_tokens=word_count, truncate=first_words
        )
    no_shorten = PromptTemplate("{{ body }}")
    with pytest.raises(PromptTooLongError, match="names no field to shorten"):
        no_shorten.render_to_fit({"body": "a " * 50}, [], budget=5, count_tokens=word_count, truncate=first_words)
