"""The run folder's figures: training curves, confusion matrices, attribution maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum.attr import visualization  # noqa: E402


def plot_curves(history: Sequence[dict], path: Path) -> None:
    """Loss and accuracy per epoch for train and val (the report's Figures 1 and 2)."""
    epochs = [row["epoch"] + 1 for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        for stage, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{stage}/{metric}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, label=stage)
        ax.set_xlabel("epoch")
        ax.set_title(f"Train and validation {title.lower()}")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str
) -> None:
    """Counts in each cell; colour by row-normalised rate so rare classes stay readable."""
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_attribution_map(pixels: torch.Tensor, attribution: np.ndarray, path: Path) -> None:
    """A face (uint8, 3 x H x W) beside its attribution map (H x W; absolute values) blended
    over it."""
    face = pixels.permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(face)
    axes[0].set_title("face")
    axes[0].axis("off")
    visualization.visualize_image_attr(
        attribution[..., None],
        face,
        method="blended_heat_map",
        sign="absolute_value",
        cmap="inferno",
        plt_fig_axis=(fig, axes[1]),
        show_colorbar=True,
        title="Integrated Gradients",
        use_pyplot=False,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
