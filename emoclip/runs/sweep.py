"""Hydra multiruns: where a job runs, what it may launch, and the sweep's table of jobs.

`trials.csv` has one row per job with its overrides and metric. A Hydra callback
(conf/hydra/default.yaml) writes it when a multirun ends, with any sweeper (the basic one,
Optuna) or launcher (local, SLURM): it reads the jobs' run folders, so jobs skipped on a resumed
sweep are listed as well. Optuna's own optimization_results.yaml (the best parameters) lies
beside it.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emoclip.errors import ConfigError, DataError
from emoclip.runs.run_folder import finished_metrics
from emoclip.system.atomic import open_atomically

if TYPE_CHECKING:  # Hydra imports this module (its callback) before every job: no Lightning
    import lightning as L

log = logging.getLogger(__name__)
TRIALS = "trials.csv"


def sweep_dir() -> Path | None:
    """The sweep folder when this process runs a Hydra multirun job, else None."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir)
    return None


def check_launchable(trainer: L.Trainer) -> None:
    """Lightning's DDP starts its other processes by running the command line again; inside a
    local multirun that command is the whole sweep. Under SLURM, SLURM starts them instead."""
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    strategy = trainer.strategy
    relaunches = isinstance(strategy.launcher, _SubprocessScriptLauncher) and not (
        strategy.cluster_environment.creates_processes_externally
    )
    processes = trainer.num_devices * trainer.num_nodes
    if relaunches and processes > 1 and sweep_dir() is not None:
        raise ConfigError(
            f"trainer.strategy={type(strategy).__name__} with {processes} processes "
            "cannot run inside a local multirun (-m): it starts its processes by running the "
            "command again. Run each configuration on its own, or sweep with "
            "hydra/launcher=slurm (SLURM starts the processes)."
        )


def sweep_jobs(sweep_dir: Path) -> list[dict]:
    """Each job under sweep_dir: number, run folder, overrides (key -> value), finished metrics.
    A job's hydra.yaml is read as data: its values as written, nothing resolved."""
    jobs = []
    parser = OverridesParser.create()
    for hydra_yaml in sweep_dir.glob("**/.hydra/hydra.yaml"):
        run_dir = hydra_yaml.parent.parent
        job_number, task_overrides = _job_entries(hydra_yaml)
        overrides = parser.parse_overrides(task_overrides)
        jobs.append(
            {
                "number": job_number,
                "run_dir": run_dir,
                "overrides": {o.get_key_element(): o.value() for o in overrides},
                "metrics": finished_metrics(run_dir),
            }
        )
    return sorted(jobs, key=lambda job: job["number"])


def _job_entries(hydra_yaml: Path) -> tuple[int, list[str]]:
    """hydra.job.num and hydra.overrides.task of a job's hydra.yaml, unresolved."""
    raw = OmegaConf.to_container(OmegaConf.load(hydra_yaml), resolve=False)
    hydra_cfg = raw.get("hydra") if isinstance(raw, dict) else None
    try:
        number, overrides = hydra_cfg["job"]["num"], hydra_cfg["overrides"]["task"]
    except (KeyError, TypeError):
        number, overrides = None, None
    if not isinstance(number, int) or not (
        isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)
    ):
        raise DataError(
            f"{hydra_yaml}: expected hydra.job.num (a number) and hydra.overrides.task (a list "
            "of overrides), as Hydra writes them"
        )
    return number, overrides


def write_trials(sweep_dir: Path, monitor: str) -> Path:
    jobs = sweep_jobs(sweep_dir)
    keys = list(dict.fromkeys(k for job in jobs for k in job["overrides"]))
    path = sweep_dir / TRIALS
    with open_atomically(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", monitor, *keys, "run_dir"])
        for job in jobs:
            metrics = job["metrics"]
            writer.writerow(
                [
                    job["number"],
                    "finished" if metrics is not None else "unfinished",
                    "" if metrics is None else metrics.get(monitor, ""),
                    *(job["overrides"].get(k, "") for k in keys),
                    job["run_dir"].relative_to(sweep_dir).as_posix(),
                ]
            )
    return path


class WriteTrialsTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_trials(Path(config.hydra.sweep.dir), config.monitor)
        log.info("trials: %s", path)
