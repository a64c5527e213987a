"""Curves read at a glance: whole epochs on the x axis, the kept checkpoint's epoch marked."""

import matplotlib.pyplot as plt
import pytest

from emoclip.plots import _epoch_axis, _epoch_of, plot_curves, plot_overlaid_curves

HISTORY = [
    {"epoch": 1, "val/loss": 1.5, "val/acc": 0.4, "train/acc": 0.3},
    {"epoch": 2, "val/loss": 1.2, "val/acc": 0.6, "train/acc": 0.5},
    {"epoch": 3, "val/loss": 1.3, "val/acc": 0.55, "train/acc": 0.7, "stopped_early": True},
]


@pytest.mark.parametrize("epochs", [1, 2, 7, 40])
def test_epoch_ticks_are_whole_epochs(epochs):
    fig, ax = plt.subplots()
    ax.plot(range(1, epochs + 1), [0.5] * epochs)
    _epoch_axis(ax, epochs)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= epochs]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def test_the_best_epoch_is_the_one_whose_validation_the_checkpoint_repeats():
    # The best checkpoint is validated again after fit: its scores are those of its epoch.
    assert _epoch_of(HISTORY, {"val/loss": 1.2000001, "val/acc": 0.6}) == 2
    assert _epoch_of(HISTORY, {"val/loss": 0.9, "val/acc": 0.6}) is None
    assert _epoch_of(HISTORY, None) is None


def test_curve_figures_are_written(tmp_path):
    plot_curves(HISTORY, tmp_path / "curves.png", best={"val/loss": 1.2, "val/acc": 0.6})
    plot_curves(HISTORY[:1], tmp_path / "one.png")
    labels = {
        f"#{i} lr=0.00{i}, dropout=0.{i}, hidden_size=256, finetune=lora": {} for i in range(9)
    }
    curves = {label: {"val/acc": [0.1 * i, 0.2]} for i, label in enumerate(labels)}
    plot_overlaid_curves(curves, ["val/acc"], tmp_path / "overlaid.png")
    for name in ("curves.png", "one.png", "overlaid.png"):
        assert (tmp_path / name).stat().st_size > 10_000
