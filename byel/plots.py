"""Plots a person can look at (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from byel.errors import escape_surrogates  # noqa: E402
from byel.files import written_whole  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write a figure atomically (temporary file, then rename: a crash never leaves half a PNG)
    and free it."""
    path = Path(path)
    try:
        with written_whole(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    return path


def confusion_matrix_png(cm: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (true × predicted) with the raw counts printed in each cell."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_title(escape_surrogates(title), fontsize=9)  # a font cannot draw a name that is not UTF-8
    fig.tight_layout()
    return save_figure(fig, path)


def ablation_bars(summary: dict, methods: list[str], eval_sets: list[str], path: str | Path,
                  chance: float = 1 / 6) -> Path:
    """Bar chart: mean macro-F1 (± std over seeds) per method, without / with AdaBN, per set."""
    fig, axes = plt.subplots(1, len(eval_sets), figsize=(5.5 * len(eval_sets), 4), squeeze=False)
    x = np.arange(len(methods))
    for ax, spec in zip(axes[0], eval_sets):
        for k, (label, offset) in enumerate((("plain", -0.2), ("AdaBN", 0.2))):
            vals = [np.array(summary[(spec, m)][k]) for m in methods]
            ax.bar(x + offset, [v.mean() for v in vals], 0.4, yerr=[v.std() for v in vals], label=label, capsize=3)
        ax.axhline(chance, color="grey", ls="--", lw=1, label="chance")
        ax.set_xticks(x, methods)
        ax.set_ylabel("macro-F1 on real faces")
        ax.set_title(escape_surrogates(Path(spec.split(":")[-1]).name), fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
