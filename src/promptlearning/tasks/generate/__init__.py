"""The generation task kind (``type: generate``): text-to-text tasks (QA, summarization, translation,
dialogue, relation generation) answered by a prompted model and scored with text metrics."""

from promptlearning.tasks.generate.config import DecodingConfig, GenerateDataConfig, GenerateTaskConfig
from promptlearning.tasks.generate.run import build_generator, check, dialogue_examples, run_generate
from promptlearning.tasks.registry import TaskKind, register_task_kind

KIND = register_task_kind(
    TaskKind(
        type="generate",
        config=GenerateTaskConfig,
        run=run_generate,
        check=check,
        description="generation: QA, summarization, translation, dialogue; zero- and few-shot",
    )
)

__all__ = [
    "KIND",
    "DecodingConfig",
    "GenerateDataConfig",
    "GenerateTaskConfig",
    "build_generator",
    "dialogue_examples",
    "run_generate",
]
