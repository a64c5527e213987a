"""What `ckpt_path` asks of a training run: start, continue from a checkpoint, or skip.

`ckpt_path=last`, or the run's own folder, means this run folder (hydra.run.dir, or a sweep
job's folder; `last` without one is an error, not a new empty folder): a finished run (its
metrics.json says so) is not run again and returns its stored metrics; an unfinished one
continues from its newest full checkpoint (checkpoints/last.ckpt, or interrupted.ckpt after a
Ctrl-C, or best.ckpt if the run died between writing it and last.ckpt); one killed before its
first checkpoint starts again. A sweep relaunched with the same `hydra.sweep.dir` gives each
job the same folder, so `ckpt_path=last` resumes a whole sweep. Any other run folder or
checkpoint file is continued from, in this run's folder. Either way the checkpoint must hold
the same study (data, model, seed, monitor), read through emoclip.study.stored_study (a file never
chooses what code runs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from emoclip.data.sources.base import LOCATION_KEYS
from emoclip.errors import ConfigError, DataError
from emoclip.runs.run_folder import (
    CHECKPOINTS,
    LAST_CHECKPOINT,
    continue_command,
    finished_metrics,
    shown_overrides,
)
from emoclip.study.restore import load_checkpoint
from emoclip.study.stored_study import RECORDED_GROUPS, read_stored_study
from emoclip.study.trust import GUARD_ONLY, Trust

log = logging.getLogger(__name__)

STUDY_KEYS = ("data", "model", "seed", "monitor", "monitor_mode")
# Where the data lives (emoclip.data.sources.base.LOCATION_KEYS)
# and how fast it loads may change between launches; the study may not.
LOADING_KEYS = {"num_workers", "pin_memory", "cache_dir"}
# A run folder's checkpoints that hold a whole training state, to continue from.
RESUMABLE = ("last.ckpt", "interrupted.ckpt", "best.ckpt")


@dataclass
class Resume:
    checkpoint: str | None = None  # for Trainer.fit(ckpt_path=...)
    global_step: int = 0  # the checkpoint's count of optimizer steps
    in_place: bool = False  # this run continues the run in its own folder
    finished: dict | None = None  # the stored metrics of a run that already finished


def plan_resume(cfg: DictConfig, trust: Trust = GUARD_ONLY) -> Resume:
    requested = cfg.get("ckpt_path")
    if requested is None:
        return Resume()
    run_dir = Path(cfg.paths.output_dir)
    if requested == "last":
        check_run_folder_named()
    in_place = requested == "last" or Path(requested).resolve() == run_dir.resolve()
    if in_place:
        finished = finished_metrics(run_dir)
        newest = newest_checkpoint(run_dir)
        if finished is not None:
            if newest is not None:
                check_same_study(cfg, newest[0], trust)
            log.info("%s holds a finished run (metrics.json): not run again", run_dir)
            return Resume(finished=finished)
        if newest is None:
            log.warning(
                "ckpt_path=%s: no checkpoint in %s yet, training from the start",
                requested,
                run_dir / CHECKPOINTS,
            )
            return Resume(in_place=True)
        checkpoint, loaded = newest
        adopt_stored_study(cfg, checkpoint, loaded, trust)
    else:
        path = Path(requested)
        checkpoint = path / LAST_CHECKPOINT if path.is_dir() else path
        if not checkpoint.is_file():
            raise ConfigError(
                f"ckpt_path={requested!r}: no checkpoint at {checkpoint}; expected a .ckpt file, "
                f"a run folder holding {LAST_CHECKPOINT}, or `last` (this run folder's)"
            )
        loaded = None
    loaded = check_same_study(cfg, checkpoint, trust, loaded)
    log.info("continuing from %s (%s)", checkpoint, place_in_training(loaded))
    return Resume(str(checkpoint), global_step=int(loaded["global_step"]), in_place=in_place)


# What a run folder continued with nothing else on the command line takes from its own
# checkpoint: the study, and how it trains (the keys its config groups and overrides set).
ADOPTED_KEYS = (*STUDY_KEYS, "name", "trainer")


def adopt_stored_study(cfg: DictConfig, checkpoint: Path, loaded: dict, trust: Trust) -> None:
    """`emoclip-train ckpt_path=<run folder>` alone continues that run: each of ADOPTED_KEYS
    the command line does not set is taken from the study stored in the folder's checkpoint,
    rebuilt through emoclip.study.stored_study (so the user need not repeat the run's overrides)."""
    if not HydraConfig.initialized():
        return  # called from Python: cfg is the caller's, compared as it is
    given = {
        o.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0]
        for o in HydraConfig.get().overrides.task
    }
    if given & {"experiment", "debug"}:
        return  # the command line chose a study of its own: compared, not replaced
    rebuilt = rebuilt_study(loaded, checkpoint, trust, cfg)
    adopted = [key for key in ADOPTED_KEYS if key not in given and rebuilt.get(key) is not None]
    with open_dict(cfg):
        for key in adopted:
            cfg[key] = rebuilt[key]
    if adopted:
        log.info("continuing %s with its own %s", checkpoint.parent.parent, ", ".join(adopted))
        record_adopted_choices(loaded["emoclip"].get("choices"), adopted)


def record_adopted_choices(stored: Any, adopted: list[str]) -> None:
    """The group options the adopted keys came from (the checkpoint's, already checked by the
    stored-study reader) replace the command line's in the running app's record: the run
    folder's hydra.yaml and the checkpoints this run writes then name the options it runs
    (model/text_tower=bow, not the default the command line composed)."""
    if not isinstance(stored, dict):
        return
    choices = HydraConfig.get().runtime.choices
    with read_write(choices), open_dict(choices):
        for group in [g for g in choices if g in RECORDED_GROUPS and g.split("/")[0] in adopted]:
            del choices[group]  # the command line's; the stored study's replace them
        for group, option in stored.items():
            if group in RECORDED_GROUPS and group.split("/")[0] in adopted:
                choices[group] = option


def check_run_folder_named() -> None:
    """`ckpt_path=last` names the run in this run folder; under Hydra, outside a sweep, that
    folder must be given (hydra.run.dir), or a new, empty one would be made for it."""
    if not HydraConfig.initialized():
        return  # called from Python: paths.output_dir is the caller's folder
    hydra_cfg = HydraConfig.get()
    named = any(o.startswith("hydra.run.dir=") for o in hydra_cfg.overrides.hydra)
    if hydra_cfg.mode == RunMode.RUN and not named:
        raise ConfigError(
            "ckpt_path=last continues the run in the folder hydra.run.dir names, and none was "
            "named: add hydra.run.dir=<the run folder> (e.g. hydra.run.dir=outputs/2026-01-02/"
            "03-04-05_clip_fusion_synthetic), or give that folder as ckpt_path=<the run folder>; "
            "a sweep resumes with -m ... hydra.sweep.dir=<the sweep folder> ckpt_path=last"
        )


def newest_checkpoint(run_dir: Path) -> tuple[Path, dict] | None:
    """The run folder's checkpoint with the most training done that holds a whole training
    state (optimizer included), loaded; None if it has none."""
    candidates = []
    for preference, name in enumerate(reversed(RESUMABLE)):  # on a tie, last.ckpt
        path = run_dir / CHECKPOINTS / name
        if path.is_file():
            try:
                loaded = load_checkpoint(path, mmap=True)  # tensors are read only when used
            except DataError as err:  # truncated (a copy cut short): the next whole one serves
                log.warning("%s; continuing from the run's next whole checkpoint", err)
                continue
            if "optimizer_states" in loaded:
                candidates.append(((int(loaded.get("global_step", 0)), preference), path, loaded))
    if not candidates:
        return None
    _, path, loaded = max(candidates, key=lambda c: c[0])
    return path, loaded


def check_same_study(
    cfg: DictConfig, checkpoint: Path, trust: Trust = GUARD_ONLY, loaded: dict | None = None
) -> dict:
    """Raise unless the checkpoint holds the study of cfg, in a config the guard allows;
    return the loaded checkpoint."""
    if loaded is None:
        loaded = load_checkpoint(checkpoint)
    rebuilt = rebuilt_study(loaded, checkpoint, trust, cfg)
    stored = {key: _plain(rebuilt, key) for key in STUDY_KEYS}
    not_study = LOCATION_KEYS
    differences = []
    for key in STUDY_KEYS:
        now = cfg.get(key)
        if OmegaConf.is_config(now):
            now = OmegaConf.to_container(now, resolve=True)
        differences += _differences(stored.get(key), now, key, not_study)
    if differences:
        run_dir = checkpoint.parent.parent
        raise ConfigError(
            f"{checkpoint} was trained on another study ({'; '.join(differences)}). The run's "
            f"own overrides: {shown_overrides(run_dir)}. Continue it with its own overrides: "
            f"{continue_command(run_dir)}; or train a new run without ckpt_path."
        )
    return loaded


def _plain(cfg: DictConfig, key: str):
    value = cfg.get(key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _differences(stored, now, key: str, not_study: set[str]) -> list[str]:
    if key in not_study or key.rsplit(".", 1)[-1] in LOADING_KEYS:
        return []
    if isinstance(stored, dict) and isinstance(now, dict):
        found = []
        for k in sorted(stored.keys() | now.keys()):
            found += _differences(stored.get(k), now.get(k), f"{key}.{k}", not_study)
        return found
    return [] if stored == now else [f"{key}: {stored!r} in the checkpoint, {now!r} now"]


def place_in_training(loaded: dict) -> str:
    """Where a checkpoint stands, epochs counted from 1: 'after epoch 2; global step 10', or
    mid-epoch (a Ctrl-C'd run, emoclip.data.resumable) 'in epoch 3, from its training batch 4'."""
    epoch, step = int(loaded.get("epoch", 0)), int(loaded.get("global_step", 0))
    loops = loaded.get("loops", {}).get("fit_loop", {})
    loader = (loops.get("state_dict", {}).get("combined_loader") or [{}])[0]
    done = loader.get("batches", 0)
    if done and not loops.get("epoch_loop.batch_progress", {}).get("is_last_batch", True):
        return f"in epoch {epoch + 1}, from its training batch {done + 1}; global step {step}"
    return f"after epoch {epoch + 1}; global step {step}"


def rebuilt_study(loaded: dict, checkpoint, trust, cfg: DictConfig) -> DictConfig:
    """The loaded checkpoint's study, rebuilt from conf/ by the one reader of stored studies."""
    return read_stored_study(
        loaded["hyper_parameters"],
        str(checkpoint),
        trust,
        choices=loaded["emoclip"].get("choices"),
        entry_paths=cfg.get("paths"),
    )
