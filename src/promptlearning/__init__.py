"""promptlearning: take large language models from theory to practice through prompt learning.

The public entry points are :func:`load_model` for models and :func:`load_program` for trained prompt
programs; see the README for a tour.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

# transformers imports torchao when it is installed (the [compress] extra); torchao 0.18 then logs a
# warning for each CUDA-only extension it cannot load on a CPU machine and torch one per enum it
# registers: nothing a user can act on, on every model load. Their errors still show.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

__version__ = "0.1.0"

__all__ = ["GenerationConfig", "LoglikelihoodRequest", "__version__", "load_model", "load_program"]

if TYPE_CHECKING:
    from promptlearning.models import GenerationConfig, LoglikelihoodRequest, load_model
    from promptlearning.training import load_program


def __getattr__(name: str) -> Any:
    # Lazy: `import promptlearning` (and the CLI's --help) must not pay for importing torch.
    if name in ("load_model", "GenerationConfig", "LoglikelihoodRequest"):
        from promptlearning import models

        return getattr(models, name)
    if name == "load_program":
        from promptlearning.training import load_program

        return load_program
    raise AttributeError(f"module 'promptlearning' has no attribute {name!r}")
