"""What a run leaves for its user: metrics.json, splits.json and the plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from emoclip.plots import plot_confusion, plot_curves


def write_results(
    run_dir: Path,
    classes: Sequence[str],
    results: dict[str, dict],
    history: Sequence[dict] = (),
    split_ids: dict[str, list[str]] | None = None,
) -> dict:
    """Write metrics.json (flat `stage/metric` keys) and the plots; return the metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"classes": list(classes)}
    for scope, values in results.items():
        if scope != "train":  # val, test, and test ablations such as test_text_only
            metrics.update(values)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if split_ids is not None:
        (run_dir / "splits.json").write_text(json.dumps(split_ids, indent=1) + "\n")
    if history:
        plot_curves(history, run_dir / "plots" / "curves.png")
    for stage, name in (("val", "validation"), ("test", "test")):
        matrix = results.get(stage, {}).get(f"{stage}/confusion_matrix")
        if matrix is not None:
            acc = results[stage][f"{stage}/acc"]
            plot_confusion(
                matrix,
                classes,
                run_dir / "plots" / f"confusion_{stage}.png",
                title=f"Confusion matrix, {name} (acc {acc:.3f})",
            )
    return metrics


def summary(run_dir: Path, metrics: dict) -> str:
    lines = [f"run folder: {run_dir.resolve()}"]
    for stage in ("val", "test", "test_text_only", "test_image_only"):
        if f"{stage}/acc" in metrics:
            lines.append(
                f"{stage}: acc {metrics[f'{stage}/acc']:.4f}  "
                f"f1_macro {metrics[f'{stage}/f1_macro']:.4f}  "
                f"loss {metrics[f'{stage}/loss']:.4f}"
            )
    return "\n".join(lines)
