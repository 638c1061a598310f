"""A run's ``report.md`` as HTML, through markdown-it-py (CommonMark plus tables).

Raw HTML in a report is shown as text, links keep markdown-it's safe-URL check (no ``javascript:``),
the report's relative image paths (its plots) point at the UI's file route for that run, and its
headings move two levels down, under the page's own.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt


def render_markdown(text: str, file_link: str) -> str:
    """``text`` as HTML; a relative image ``plot.png`` becomes ``file_link + "plot.png"``."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    default_image = md.renderer.rules["image"]

    def image(renderer: Any, tokens: Any, index: int, options: Any, env: Any) -> str:
        token = tokens[index]
        source = str(token.attrGet("src") or "")
        if source and "/" not in source and ":" not in source:
            token.attrSet("src", file_link + source)
        return default_image(tokens, index, options, env)

    md.add_render_rule("image", image)
    tokens = md.parse(text)
    for token in tokens:  # the report's headings sit under the page's own h1 and h2
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + 2)}"
    return md.renderer.render(tokens, md.options, {})
