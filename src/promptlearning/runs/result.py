"""The result every task kind returns, and the ``run.json`` every run directory holds.

``compare``, ``sweep``, the reports and the server read runs of any kind through this one shape:
a headline metric (with its spread over seeds when there are several), flat scalar metrics, the
per-example predictions and a short description of the setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_json_atomically

RUN_FILE = "run.json"


@dataclass
class TaskResult:
    """A finished run of any task kind.

    ``evaluation`` is the kind's own detailed result (a classification ``Evaluation``, a
    ``CoTEvaluation``, a training ``TrainEvaluation``); everything else is common to all kinds.
    """

    kind: str
    name: str
    setting: str  # what the run did, e.g. "4-shot balanced + batch calibration"
    model: str
    metric: str  # the headline metric
    value: float  # its value (the mean over seeds for several seeds)
    values: list[float] = field(default_factory=list)  # one per seed (or the one value)
    metrics: dict[str, float] = field(default_factory=dict)  # flat scalar metrics
    num_examples: int = 0
    seed: int | str = 0
    run_dir: Path | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    evaluation: Any = None
    config: Any = None

    @property
    def std(self) -> float:
        """The sample standard deviation over seeds (0 for one run)."""
        if len(self.values) < 2:
            return 0.0
        mean = sum(self.values) / len(self.values)
        return (sum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1)) ** 0.5

    def summary_line(self) -> str:
        """One line for a terminal: the headline metric and the other main numbers."""
        spread = f" ± {self.std:.4f} over {len(self.values)} seeds" if len(self.values) > 1 else ""
        others = [f"{k} {v:.4f}" for k, v in self.metrics.items() if k != self.metric and k in _SHOWN]
        speed = self.metrics.get("examples_per_second")
        tail = f"{self.num_examples} examples" + (f", {speed:.1f} examples/s" if speed else "")
        return "  ".join([f"{self.metric} {self.value:.4f}{spread}", *others, f"({tail})"])

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "setting": self.setting, "model": self.model,
            "metric": self.metric, "value": self.value, "std": self.std, "values": self.values,
            "metrics": self.metrics, "num_examples": self.num_examples, "seed": self.seed,
        }  # fmt: skip

    def write(self, run_dir: Path) -> None:
        """Record the result in ``run_dir/run.json``."""
        self.run_dir = Path(run_dir)
        write_json_atomically(self.run_dir / RUN_FILE, self.to_json())

    @classmethod
    def read(cls, run_dir: str | Path) -> TaskResult:
        """The result recorded in a run directory."""
        run_dir = Path(run_dir)
        try:
            data = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
            data.pop("std", None)
            return cls(**data, run_dir=run_dir)
        except (OSError, ValueError, TypeError) as exc:
            raise PromptLearningError(f"{run_dir}/{RUN_FILE} cannot be read ({exc})") from None


# metrics worth showing in a one-line summary, in this order when present
_SHOWN = ("accuracy", "macro_f1", "ece", "accuracy_strict", "accuracy_flexible", "agreement", "f1")


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers among ``metrics`` (nested tables such as confusion matrices left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
