"""What `ckpt_path` asks of a training run: start, continue from a checkpoint, or skip.

`ckpt_path=last`, or the run's own folder, means this run folder: a finished run (it holds
metrics.json) is not run again and returns its stored metrics; an unfinished one continues
from its checkpoints/last.ckpt; one killed before its first checkpoint starts again. A sweep
relaunched with the same `hydra.sweep.dir` gives each job the same folder, so `ckpt_path=last`
resumes a whole sweep. Any other run folder or checkpoint file is continued from, in this run's
folder. Either way the checkpoint must hold the same study (data, model, seed, monitor).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from emoclip.data.sources.base import location_keys
from emoclip.errors import ConfigError
from emoclip.restore import load_checkpoint
from emoclip.run_folder import LAST_CHECKPOINT, finished_metrics

log = logging.getLogger(__name__)

STUDY_KEYS = ("data", "model", "seed", "monitor", "monitor_mode")
# Where the data lives (the keys its sources name: emoclip.data.sources.base.location_keys)
# and how fast it loads may change between launches; the study may not.
LOADING_KEYS = {"num_workers", "pin_memory"}


@dataclass
class Resume:
    checkpoint: str | None = None  # for Trainer.fit(ckpt_path=...)
    global_step: int = 0  # the checkpoint's count of optimizer steps
    in_place: bool = False  # the checkpoint is this run folder's own last.ckpt
    finished: dict | None = None  # the stored metrics of a run that already finished


def plan_resume(cfg: DictConfig) -> Resume:
    requested = cfg.get("ckpt_path")
    if requested is None:
        return Resume()
    run_dir = Path(cfg.paths.output_dir)
    in_place = requested == "last" or Path(requested).resolve() == run_dir.resolve()
    if in_place:
        checkpoint = run_dir / LAST_CHECKPOINT
        finished = finished_metrics(run_dir)
        if finished is not None:
            if checkpoint.is_file():
                check_same_study(cfg, checkpoint)
            log.info("%s holds a finished run (metrics.json): not run again", run_dir)
            return Resume(finished=finished)
        if not checkpoint.is_file():
            log.warning("ckpt_path=%s: no %s yet, training from the start", requested, checkpoint)
            return Resume()
    else:
        path = Path(requested)
        checkpoint = path / LAST_CHECKPOINT if path.is_dir() else path
        if not checkpoint.is_file():
            raise ConfigError(
                f"ckpt_path={requested!r}: no checkpoint at {checkpoint}; expected a .ckpt file, "
                f"a run folder holding {LAST_CHECKPOINT}, or `last` (this run folder's)"
            )
    loaded = check_same_study(cfg, checkpoint)
    log.info("continuing from %s (after epoch %d)", checkpoint, loaded["epoch"])
    return Resume(str(checkpoint), global_step=int(loaded["global_step"]), in_place=in_place)


def check_same_study(cfg: DictConfig, checkpoint: Path) -> dict:
    """Raise unless the checkpoint holds the study of cfg; return the loaded checkpoint."""
    loaded = load_checkpoint(checkpoint)
    stored = loaded["hyper_parameters"]
    not_study = location_keys(stored.get("data")) | location_keys(cfg.get("data"))
    differences = []
    for key in STUDY_KEYS:
        now = cfg.get(key)
        if OmegaConf.is_config(now):
            now = OmegaConf.to_container(now, resolve=True)
        differences += _differences(stored.get(key), now, key, not_study)
    if differences:
        shown = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
        raise ConfigError(
            f"{checkpoint} was trained on another study ({shown}). Resume with the run's own "
            "overrides (the checkpoint keeps its config), or use another run folder."
        )
    return loaded


def _differences(stored, now, key: str, not_study: set[str]) -> list[str]:
    if key in not_study or key.rsplit(".", 1)[-1] in LOADING_KEYS:
        return []
    if isinstance(stored, dict) and isinstance(now, dict):
        found = []
        for k in sorted(stored.keys() | now.keys()):
            found += _differences(stored.get(k), now.get(k), f"{key}.{k}", not_study)
        return found
    return [] if stored == now else [f"{key}: {stored!r} in the checkpoint, {now!r} now"]
