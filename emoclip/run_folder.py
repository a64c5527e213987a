"""What a run leaves for its user (its own folder, metrics.json, splits.json, versions.json,
plots), and reading it back."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from omegaconf import OmegaConf

from emoclip import __version__
from emoclip.errors import DataError

METRICS_FILE = "metrics.json"  # written last: its presence marks a finished run
CONFIG_FILE = Path(".hydra") / "config.yaml"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
PACKAGES = ("torch", "lightning", "transformers", "torchmetrics", "hydra-core")


def claim_new_dir(path: str) -> str:
    """`path`, or `path_2`, `path_3`, ...: the first that did not exist, created here.

    mkdir fails on an existing folder, so two runs started in the same second (even in two
    processes) never share a folder, and no run writes into an earlier one.
    """
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")


def hydra_run_dir(continue_in: str | None, new_run_dir: str) -> str:
    """hydra.run.dir: the run folder `continue_in` names (train's ckpt_path=<run folder>
    continues that run in place), else a new folder, created here."""
    if continue_in and continue_in != "last" and Path(continue_in).is_dir():
        return continue_in
    return claim_new_dir(new_run_dir)


# For conf/hydra/default.yaml. Cached: Hydra resolves the run folder more than once, and copies
# the cache into each job of a sweep, so every resolution of one config gets the same folder.
if not OmegaConf.has_resolver("emoclip.run_dir"):
    OmegaConf.register_new_resolver("emoclip.run_dir", hydra_run_dir, use_cache=True)


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
    extra: dict | None = None,
) -> dict:
    """Write metrics.json (flat `stage/metric` keys, the per-epoch `history` of training, plus
    `extra`) and the plots; return the metrics."""
    from emoclip.plots import plot_confusion, plot_curves  # matplotlib: only when writing

    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**flat_metrics(classes, results), **(extra or {})}
    if history:
        metrics["history"] = list(history)
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    if split_ids is not None:
        (run_dir / "splits.json").write_text(json.dumps(split_ids, indent=1) + "\n")
    if history:
        plot_curves(history, run_dir / "plots" / "curves.png", best=results.get("val"))
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


def is_run_folder(path: Path) -> bool:
    """A finished run: its composed config and its metrics.json."""
    return (path / METRICS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def read_metrics(run_dir: Path) -> dict:
    """metrics.json of a run folder, checked for what every finished run has."""
    path = run_dir / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable metrics.json ({err})") from err
    if not isinstance(metrics, dict):
        raise DataError(f"{path}: expected a JSON object of metrics, got {type(metrics).__name__}")
    missing = [key for key in ("classes", "test/acc", "test/f1_macro") if key not in metrics]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}; is it a finished run's metrics?")
    return metrics


def read_history(run_dir: Path, metrics: dict) -> list[dict]:
    """Per-epoch training history: metrics.json's, else rebuilt from the csv logger's
    metrics.csv (older run folders), else none."""
    if "history" in metrics:
        return list(metrics["history"])
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("epoch")]
    # The validation after fit (of the best checkpoint) is logged one epoch past the last
    # trained one: keep the epochs that trained.
    trained = {row["epoch"] for row in rows if row.get("train/acc")}
    epochs: dict[int, dict] = {}
    try:
        for row in rows:
            if row["epoch"] in trained:
                values = {k: float(v) for k, v in row.items() if v and "/" in k}
                epochs.setdefault(int(row["epoch"]), {}).update(values)
    except ValueError as err:
        raise DataError(f"{path}: not a metrics.csv of numbers ({err})") from err
    return [{"epoch": epoch, **epochs[epoch]} for epoch in sorted(epochs)]


def finished_metrics(run_dir: Path) -> dict | None:
    """The metrics of a run folder whose run finished, else None (no metrics.json, or the one
    a Ctrl-C wrote, marked `"status": "interrupted"`)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return None if metrics.get("status") == "interrupted" else metrics


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
