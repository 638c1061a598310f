"""PNG plots of a run: confusion matrix, reliability diagram, self-consistency curve (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(confusion: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    labels, matrix = confusion["labels"], confusion["matrix"]
    size = max(3.5, 0.9 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(bins: list[dict[str, float]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    width = bins[0]["high"] - bins[0]["low"]
    ax.bar(
        centres,
        [b["accuracy"] for b in bins],
        width=width * 0.9,
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    used = [b for b in bins if b["count"]]
    ax.plot([b["confidence"] for b in used], [b["accuracy"] for b in used], "o", color="tab:orange", label="bins")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max label probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_comparison(rows: list[dict[str, Any]], path: Path, metric: str = "accuracy") -> None:
    """Horizontal bars of one metric across runs (with ± ``<metric>_std`` error bars where given)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    names = [r["run"] for r in rows]
    errors = [r.get(f"{metric}_std", 0.0) for r in rows]
    ax.barh(range(len(rows)), [r[metric] for r in rows], xerr=errors if any(errors) else None, color="tab:blue")
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(metric)
    for i, r in enumerate(rows):
        ax.text(r[metric] + 0.01, i, f"{r[metric]:.3f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sample_curve(curves: dict[str, dict[int, float]], path: Path) -> None:
    """Accuracy of the majority vote against the number of sampled rationales, one line per extractor."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [100 * curve[k] for k in ks], "o-", label=name)
    ax.set_xlabel("sampled rationales (majority vote)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Self-consistency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curves(histories: dict[str, list[dict[str, float]]], metric: str, path: Path) -> None:
    """Dev ``metric`` against the optimizer step, one line per run (e.g. per few-shot seed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, history in histories.items():
        points = [(h["step"], h[metric]) for h in history if metric in h]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o", markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(f"dev {metric}")
    ax.grid(alpha=0.3)
    if histories:
        ax.legend(fontsize=8)
    ax.set_title(f"Dev {metric} during training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
