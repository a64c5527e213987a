"""Experiment trackers, beyond what Lightning logs by itself (the config and per-epoch metrics):
one wandb run per sweep job, grouped by sweep, ending with the final metrics and figures; a
resumed run's metrics.csv that still holds the epochs before the resume."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, open_dict

from emoclip.runs.sweep import sweep_dir
from emoclip.system.atomic import open_atomically


def group_by_sweep(cfg: DictConfig) -> None:
    """In a sweep, logger.wandb.group defaults to the sweep folder's name."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    sweep = sweep_dir()
    if wandb is not None and wandb.get("group") is None and sweep is not None:
        with open_dict(cfg):
            wandb.group = sweep.name


def publish_results(loggers: Sequence[Logger], run_dir: Path, metrics: dict) -> None:
    """The final metrics into each wandb run's summary, the confusion matrices as images."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        logger.experiment.summary.update(scalars)
        for stage in ("val", "test"):
            image = run_dir / "plots" / f"confusion_{stage}.png"
            if image.is_file():
                logger.log_image(f"{stage}/confusion_matrix", [str(image)])


def finish(loggers: Sequence[Logger]) -> None:
    """End the job's wandb run: the next job of a sweep would otherwise log into it."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


def csv_rows_before(loggers: Sequence[Logger], step: int) -> dict[Path, list[dict]]:
    """Each csv logger's metrics.csv rows logged before global step `step`. A resumed run's
    CSVLogger starts the file afresh; put_back_csv_rows returns these rows once the run is done."""
    kept = {}
    for logger in loggers:
        path = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
        if path is not None and path.is_file():
            with path.open(newline="") as f:
                kept[path] = [row for row in csv.DictReader(f) if int(row["step"]) < step]
    return kept


def put_back_csv_rows(kept: dict[Path, list[dict]]) -> None:
    for path, earlier in kept.items():
        later = []
        if path.is_file():
            with path.open(newline="") as f:
                later = list(csv.DictReader(f))
        with open_atomically(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted(set().union(*earlier, *later)))
            writer.writeheader()
            writer.writerows(earlier + later)
