"""The chain-of-thought task kind (``type: cot``): questions answered with (or without) generated
reasoning, answers extracted by chains of filters, optionally voted over sampled rationales."""

from promptlearning.tasks.cot.config import CoTDataConfig, CoTTaskConfig, Exemplar
from promptlearning.tasks.cot.run import build_cot, check, cot_exemplars, load_exemplars, run_cot
from promptlearning.tasks.registry import TaskKind, register_task_kind

KIND = register_task_kind(
    TaskKind(
        type="cot",
        config=CoTTaskConfig,
        run=run_cot,
        check=check,
        description="chain-of-thought: few-shot, zero-shot, direct; self-consistency",
    )
)

__all__ = [
    "KIND",
    "CoTDataConfig",
    "CoTTaskConfig",
    "Exemplar",
    "build_cot",
    "cot_exemplars",
    "load_exemplars",
    "run_cot",
]
