"""Curves read at a glance: whole epochs on the x axis, the kept checkpoint's epoch marked."""

import matplotlib.pyplot as plt
import pytest

from emoclip.runs.plots import _epoch_axis, _epoch_of, plot_curves, plot_overlaid_curves

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


def fused_results(**majority):
    scores = {"test": (0.8, 0.7), "test_text_only": (0.6, 0.5), "test_image_only": (0.5, 0.4)}
    return {
        scope: {f"{scope}/acc": acc, f"{scope}/f1_macro": f1, f"{scope}/loss": 1.0}
        for scope, (acc, f1) in scores.items()
    } | ({"test_majority": majority} if majority else {})


def test_a_fusion_run_folder_plots_the_fused_model_beside_its_ablations(tmp_path):
    from emoclip.runs.plots import plot_ablations
    from emoclip.runs.run_folder import flat_metrics, write_results

    write_results(tmp_path / "run", ["a", "b"], fused_results())
    assert (tmp_path / "run" / "plots" / "ablations.png").is_file()
    labels = plot_ablations(flat_metrics(["a"], fused_results()), tmp_path / "a.png")
    assert labels == ["accuracy", "macro-F1"]  # no majority floor without its keys
    floor = {"test_majority/acc": 0.4, "test_majority/f1_macro": 0.2}
    labels = plot_ablations(flat_metrics(["a"], fused_results(**floor)), tmp_path / "b.png")
    assert (
        "majority class, macro-F1: 0.200" in labels and "majority class, accuracy: 0.400" in labels
    )
    # A one-modality study has no ablations: no plot.
    write_results(tmp_path / "text", ["a", "b"], {"test": fused_results()["test"]})
    assert not (tmp_path / "text" / "plots" / "ablations.png").exists()
