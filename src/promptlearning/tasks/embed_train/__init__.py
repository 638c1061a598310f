"""The sentence-embedding task kind (``type: embed-train``): unsupervised or supervised SimCSE on any
Hugging Face model (an encoder, a BERT pretrained here, or a decoder such as SmolLM2 with mean pooling),
evaluated by STS Spearman before and after training."""

from promptlearning.runs.directory import check_run_dir
from promptlearning.tasks.embed_train.config import EmbedTrainTaskConfig
from promptlearning.tasks.embed_train.run import check, run_embed_train_task
from promptlearning.tasks.registry import TaskKind, register_task_kind

KIND = register_task_kind(
    TaskKind(
        type="embed-train",
        config=EmbedTrainTaskConfig,
        run=run_embed_train_task,
        check=check,
        description="sentence embeddings: unsupervised or supervised SimCSE, STS Spearman",
        check_run_dir=check_run_dir,
    )
)

__all__ = ["KIND", "EmbedTrainTaskConfig", "run_embed_train_task"]
