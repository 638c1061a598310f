"""PNG plots of a run: confusion matrix, reliability diagram, self-consistency curve (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (how far chance alone moves an accuracy)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def plot_comparison(
    rows: Sequence[Mapping[str, Any]], path: Path, metric: str = "accuracy", label: str = "setting"
) -> None:
    """One line per setting (``row[label]``), best first: every run of the setting as a small dot,
    their mean as a large one with its spread (± one standard deviation over the runs, or for a
    single run the 95 % confidence interval of its accuracy on ``num_examples`` examples). The axis
    is zoomed to the values, so differences of a few points are visible."""
    plt = _pyplot()
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get(label, row.get("run", "?"))), []).append(row)
    summary = []
    for name, members in groups.items():
        values = [float(r[metric]) for r in members]
        mean = sum(values) / len(values)
        if len(values) > 1:
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            low, high, spread = mean - std, mean + std, f"± {std:.3f} std over {len(values)} runs"
        elif members[0].get(f"{metric}_std"):
            std = float(members[0][f"{metric}_std"])
            low, high, spread = mean - std, mean + std, f"± {std:.3f}"
        elif members[0].get("num_examples") and 0 <= mean <= 1:
            low, high = wilson_interval(mean * members[0]["num_examples"], int(members[0]["num_examples"]))
            spread = f"95% interval, n={members[0]['num_examples']}"
        else:
            low = high = mean
            spread = ""
        summary.append((name, values, mean, low, high, spread))
    summary.sort(key=lambda item: -item[2])
    fig, ax = plt.subplots(figsize=(8, 0.62 * len(summary) + 1.3))
    for y, (_, values, mean, low, high, _) in enumerate(summary):
        ax.plot([low, high], [y, y], color="tab:blue", linewidth=2, alpha=0.6, solid_capstyle="round")
        if len(values) > 1:
            ax.plot(values, [y] * len(values), "o", color="gray", markersize=3, alpha=0.8)
        ax.plot([mean], [y], "o", color="tab:blue", markersize=8)
    lows = [item[3] for item in summary] + [min(item[1]) for item in summary]
    highs = [item[4] for item in summary] + [max(item[1]) for item in summary]
    pad = max(0.01, 0.05 * (max(highs) - min(lows)))
    left, right = min(lows) - pad, max(highs) + pad
    if all(0 <= v <= 1 for item in summary for v in item[1]):
        left, right = max(0.0, left), min(1.0, right)
    ax.set_xlim(left, right)
    labels = [f"{name}   {mean:.3f}" + (f"\n({spread})" if spread else "") for name, _, mean, _, _, spread in summary]
    ax.set_yticks(range(len(summary)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"{metric}  (axis zoomed to the values; large dot: mean, small dots: runs)", fontsize=9)
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
