"""Prompts: templates, verbalizers and demonstration selection."""

from promptlearning.prompts.demonstrations import NearestNeighbours, select_fixed
from promptlearning.prompts.template import (
    Demonstration,
    PromptTemplate,
    TemplateError,
    TemplateLimitError,
    split_at_blank,
)
from promptlearning.prompts.verbalizer import Verbalizer, VerbalizerError

__all__ = [
    "Demonstration",
    "NearestNeighbours",
    "PromptTemplate",
    "TemplateError",
    "TemplateLimitError",
    "Verbalizer",
    "VerbalizerError",
    "select_fixed",
    "split_at_blank",
]
