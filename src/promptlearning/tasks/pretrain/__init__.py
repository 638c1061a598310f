"""The pretraining task kind (``type: pretrain``): a causal, masked or MLM+NSP model trained from
scratch on a corpus, or an existing model pretrained further; ``--resume`` continues a killed run."""

from promptlearning.runs.directory import check_run_dir
from promptlearning.tasks.pretrain.config import PretrainTaskConfig
from promptlearning.tasks.pretrain.run import check, run_pretrain_task
from promptlearning.tasks.registry import TaskKind, register_task_kind

KIND = register_task_kind(
    TaskKind(
        type="pretrain",
        config=PretrainTaskConfig,
        run=run_pretrain_task,
        check=check,
        description="pretraining: causal LM, MLM, MLM+NSP from scratch, or continued pretraining",
        check_run_dir=check_run_dir,
    )
)

__all__ = ["KIND", "PretrainTaskConfig", "run_pretrain_task"]
