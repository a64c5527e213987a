"""Figures: a run folder's training curves and confusion matrices, attribution maps, and a
comparison report's grids and curves."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from emoclip.system.atomic import atomic_path  # noqa: E402


def plot_curves(history: Sequence[dict], path: Path, best: dict | None = None) -> None:
    """Loss and accuracy per epoch for train and val (the report's Figures 1 and 2), with the
    epoch of the kept checkpoint marked (the one whose validation scores are `best`, the
    validation of the best checkpoint) and a note when early stopping ended training."""
    epochs = [row["epoch"] for row in history]  # counted from 1
    best_epoch = _epoch_of(history, best)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        for stage, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{stage}/{metric}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, label=stage)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1)
            ax.plot([], [], color="tab:green", linestyle="--", label=f"best: epoch {best_epoch}")
        _epoch_axis(ax, len(epochs))
        ax.set_title(f"Train and validation {title.lower()}")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1)
    if history and history[-1].get("stopped_early"):
        fig.suptitle(f"Early stopping ended training after epoch {epochs[-1]}", fontsize=10)
    _save(fig, path)


# A two-modality study's test scores: the fused model and the ablations that drop a modality.
ABLATION_BARS = (
    ("test", "fused"),
    ("test_text_only", "text only"),
    ("test_image_only", "image only"),
)


def plot_ablations(metrics: Mapping, path: Path) -> list[str] | None:
    """Test accuracy and macro-F1 of the fused model beside its text-only and image-only
    ablations, with the majority-class floor (test_majority/*) where metrics has it; the legend's
    labels, or None (no plot) for a study without both modalities."""
    if not all(f"{scope}/f1_macro" in metrics for scope, _ in ABLATION_BARS):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x, width = np.arange(len(ABLATION_BARS)), 0.38
    for offset, metric, name in (
        (-width / 2, "acc", "accuracy"),
        (width / 2, "f1_macro", "macro-F1"),
    ):
        bars = ax.bar(
            x + offset, [metrics[f"{s}/{metric}"] for s, _ in ABLATION_BARS], width, label=name
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        floor = metrics.get(f"test_majority/{metric}")
        if floor is not None:
            colour = bars.patches[0].get_facecolor()
            ax.axhline(
                floor,
                color=colour,
                linestyle="--",
                linewidth=1,
                label=f"majority class, {name}: {floor:.3f}",
            )
    ax.set_xticks(x, [label for _, label in ABLATION_BARS])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test score")
    ax.set_title("The fused model and its one-modality ablations (test split)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    _save(fig, path)
    return labels


def _epoch_axis(ax, epochs: int) -> None:
    """Whole epochs only on the x axis, 1..epochs (one epoch: a single tick, not 0.95..1.05)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(epochs, 1) + 0.5)


def _epoch_of(history: Sequence[dict], best: dict | None) -> int | None:
    """The (1-based) epoch whose validation loss and accuracy are those of `best`."""
    if not best or "val/loss" not in best:
        return None
    for row in history:
        if all(
            np.isclose(row.get(k, np.nan), best[k], rtol=1e-4, atol=1e-6)
            for k in ("val/loss", "val/acc")
            if k in best
        ):
            return row["epoch"]
    return None


def _draw_confusion(ax, rates: np.ndarray, cells: list[list[str]], classes: Sequence[str]):
    """Colour by row-normalised rate, write `cells` on top; returns the image for a colorbar."""
    n = len(classes)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                cells[i][j],
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return image


def normalise_rows(matrix: Sequence[Sequence[float]]) -> np.ndarray:
    """Each true class's row as fractions of that class (an empty row stays zero)."""
    counts = np.asarray(matrix, dtype=float)
    return counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)


def plot_confusion(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str
) -> None:
    """Counts in each cell; colour by row-normalised rate so rare classes stay readable."""
    counts = np.asarray(matrix, dtype=float)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n))
    cells = [[f"{int(counts[i, j])}" for j in range(n)] for i in range(n)]
    image = _draw_confusion(ax, normalise_rows(counts), cells, classes)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    _save(fig, path)


def plot_confusion_grid(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str]]], path: Path, columns: int = 3
) -> None:
    """One normalised confusion matrix per (title, rates, classes) panel, rates in the cells."""
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    n = max(len(classes) for _, _, classes in panels)
    size = (1.0 + 0.8 * n, 1.2 + 0.7 * n)
    fig, axes = plt.subplots(
        rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False
    )
    width = max(24, int(11 * size[0]))  # characters of a title line that fit above a panel
    for ax, (title, rates, classes) in zip(axes.flat, panels, strict=False):
        k = len(classes)
        cells = [[f"{rates[i, j]:.2f}" for j in range(k)] for i in range(k)]
        _draw_confusion(ax, rates, cells, classes)
        ax.set_title(textwrap.fill(title, width), fontsize=9)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    _save(fig, path)


def plot_overlaid_curves(
    curves: dict[str, dict[str, Sequence[float]]], metrics: Sequence[str], path: Path
) -> None:
    """One subplot per metric, one line per label: curves[label][metric] is a value per epoch
    (NaN where no value); a star on each line's best epoch. The legend sits below the plots, so
    that long labels and many rows do not cover the lines."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    handles = {}
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, values in curves.items():
            series = np.asarray(values.get(metric, []), dtype=float)
            if not len(series) or np.isnan(series).all():
                continue
            epochs = np.arange(1, len(series) + 1)
            (line,) = ax.plot(epochs, series, "-o", markersize=3, label=label)
            best = int(np.nanargmax(series))
            ax.plot(epochs[best], series[best], "*", markersize=12, color=line.get_color())
            handles[label] = line
        _epoch_axis(ax, max((len(v.get(metric, [])) for v in curves.values()), default=1))
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch (mean over runs)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    width = 60 if len(metrics) > 1 else 45
    labels = [textwrap.fill(label, width) for label in handles]
    columns = 2 if len(metrics) > 1 and len(labels) > 1 else 1
    fig.legend(
        handles.values(), labels, loc="lower center", ncol=columns, fontsize=8, frameon=False
    )
    rows = -(-len(labels) // columns)
    lines_per_row = max((label.count("\n") + 1 for label in labels), default=1)
    legend_inches = 0.2 + 0.17 * rows * lines_per_row
    fig.set_size_inches(fig.get_figwidth(), 4 + legend_inches)
    fig.tight_layout(rect=(0, legend_inches / (4 + legend_inches), 1, 1))
    _save(fig, path, tight=False)


def _save(fig, path: Path, tight: bool = True, dpi: int = 120) -> None:
    """Written whole or not at all (emoclip.system.atomic), in the format the suffix names."""
    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path) as partial:
            fig.savefig(partial, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)


def plot_attribution_map(pixels: torch.Tensor, attribution: np.ndarray, path: Path) -> None:
    """A face (uint8, 3 x H x W) beside its attribution map (H x W; absolute values) blended
    over it."""
    face = pixels.permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(face)
    axes[0].set_title("face")
    axes[0].axis("off")
    from captum.attr import visualization  # imported here: only explain needs captum

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
    _save(fig, path, dpi=100)
