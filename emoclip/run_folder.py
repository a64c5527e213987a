"""What a run leaves for its user: metrics.json, splits.json, versions.json and the plots."""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from emoclip import __version__
from emoclip.plots import plot_confusion, plot_curves

METRICS = "metrics.json"  # written last: its presence marks a finished run
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
PACKAGES = ("torch", "lightning", "transformers", "torchmetrics", "hydra-core")


def flat_metrics(classes: Sequence[str], results: dict[str, dict]) -> dict:
    """metrics.json's content: flat `stage/metric` keys of val, test and the test ablations."""
    metrics: dict = {"classes": list(classes)}
    for scope, values in results.items():
        if scope != "train":
            metrics.update(values)
    return metrics


def write_results(
    run_dir: Path,
    classes: Sequence[str],
    results: dict[str, dict],
    history: Sequence[dict] = (),
    split_ids: dict[str, list[str]] | None = None,
) -> dict:
    """Write metrics.json and the plots; return the metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = flat_metrics(classes, results)
    (run_dir / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
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


def finished_metrics(run_dir: Path) -> dict | None:
    """The metrics of a run folder whose run finished, else None."""
    path = run_dir / METRICS
    return json.loads(path.read_text()) if path.is_file() else None


def git_commit(source: Path) -> dict:
    """The commit of the git checkout that tracks the file `source`, and whether the checkout
    has uncommitted changes; None for both otherwise (e.g. an installed wheel)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(source.parent), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # Tracked, not merely inside a work tree: a wheel in a venv under some repository is not it.
    tracked = git("ls-files", "--error-unmatch", source.name) is not None
    commit = git("rev-parse", "HEAD") if tracked else None
    changed = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if changed is None else bool(changed)}


def versions() -> dict:
    """What produced a run: python and library versions, and the code's git commit."""
    found = {"python": platform.python_version(), "emoclip": __version__}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return {**found, **git_commit(Path(__file__).resolve())}


def write_versions(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "versions.json").write_text(json.dumps(versions(), indent=2) + "\n")
