"""The compression task kind (``type: compress``): a causal model pruned (depth, MLP width),
recovered by distillation, quantized (bf16, int8, int4), written as a directory every command loads."""

from promptlearning.runs.directory import check_run_dir
from promptlearning.tasks.compress.config import CompressTaskConfig
from promptlearning.tasks.compress.run import check, run_compress_task
from promptlearning.tasks.registry import TaskKind, register_task_kind

KIND = register_task_kind(
    TaskKind(
        type="compress",
        config=CompressTaskConfig,
        run=run_compress_task,
        check=check,
        description="compression: depth/width pruning, distillation, bf16/int8/int4 quantization",
        check_run_dir=check_run_dir,
    )
)

__all__ = ["KIND", "CompressTaskConfig", "run_compress_task"]
