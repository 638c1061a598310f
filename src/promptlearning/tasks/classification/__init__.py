"""The classification task kind (``type: classification``, the default): prompt-based zero-shot and
in-context classification with a template and a verbalizer, optionally calibrated or ensembled."""

from promptlearning.tasks.classification.config import ClassificationTaskConfig, DataConfig, MethodConfig
from promptlearning.tasks.classification.run import build_classifier, check, check_task, run_classification
from promptlearning.tasks.registry import TaskKind, register_task_kind

KIND = register_task_kind(
    TaskKind(
        type="classification",
        config=ClassificationTaskConfig,
        run=run_classification,
        check=check,
        description="prompt-based classification: zero-shot, in-context learning, calibration",
    )
)

__all__ = [
    "KIND",
    "ClassificationTaskConfig",
    "DataConfig",
    "MethodConfig",
    "build_classifier",
    "check_task",
    "run_classification",
]
