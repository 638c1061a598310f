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


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 9**(9**9) }}", "larger than 4096 bits"),
        ("{{ text * 10**11 }}", "repeating a value"),
        ("{{ range(10**9)|list|length }}", "above the limit"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop iterations"),
        ("{% set ns = namespace(x='a') %}{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}", "~"),
        ("{% macro f(x, n) %}{{ f(x ~ x, n - 1) if n else x }}{% endmacro %}{{ f('a', 60) }}", "~"),
        ("{{ 'a'|center(10**9) }}", "above the limit"),
        ("{{ 'ab'.ljust(10**9) }}", "above the limit"),
        ("{{ text|replace('a', 'b' * 900000) * 3 }}", "limit"),
        ("{{ '%999999999d' % 1 }}", "format width"),
        ("{{ '{:>999999999}'.format(1) }}", "format width"),
        ("{{ range(100000)|join(text * 100000) }}", "join would build"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
    ],
)
def test_templates_cannot_exhaust_time_or_memory(source, message):
    """Each of these would hang or allocate gigabytes in a plain Jinja sandbox."""
    import time

    from promptlearning.prompts import TemplateLimitError

    start = time.perf_counter()
    with pytest.raises(TemplateLimitError, match=message):
        PromptTemplate(source).render_input({"text": "ab"})
    assert time.perf_counter() - start < 5


def test_ordinary_templates_still_render_within_the_limits():
    source = (
        "{{ (text ~ '!')|upper }} {{ text|join(',') }} {{ [1, 2]|map('string')|join('-') }} "
        "{% for x in words %}{{ loop.index }}{{ x }}{% endfor %} {{ 2**10 }} {{ '%5d' % 3 }} {{ 'x' * 3 }} "
        "{{ '{:>4}'.format(7) }}"
    )
    rendered = PromptTemplate(source).render_input({"text": "ab", "words": ["a", "b"]})
    assert rendered == "AB! a,b 1-2 1a2b 1024     3 xxx    7"


def test_templates_must_be_strings_and_fields_not_null():
    with pytest.raises(TemplateError, match="must be a string"):
        PromptTemplate(None)  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match=r"\['text'\] of the example are null"):
        PromptTemplate("Review: {{ text }}").render_input({"text": None})
