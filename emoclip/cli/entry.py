"""What the entry points share: a light start, and emoclip's own errors as one clear message.

An entry module (emoclip/train.py, evaluate.py, ...) imports only this module, Hydra and
OmegaConf at the top; its task function hands `run_entry` a job that imports torch, Lightning
and transformers (9-10 s) inside. So Hydra's composition errors and emoclip's config checks
come out in about a second, before those imports.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

from emoclip.errors import ConfigError, EmoclipError

# Registers ${emoclip.run_dir:...}, which Hydra resolves (conf/hydra/default.yaml) before the job.
from emoclip.runs import run_folder  # noqa: F401

T = TypeVar("T")
log = logging.getLogger(__name__)


def config_dir() -> str:
    """conf/ beside the package in a source checkout, emoclip/conf inside an installed wheel.
    Hydra composes from it, then from the installed plugins' folders (registered here on
    Hydra's search path, emoclip.plugins)."""
    from emoclip import plugins

    plugins.register()
    here = Path(__file__).resolve().parents[1]  # the emoclip package
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no Hydra config folder (conf/train.yaml) next to {here}")


def expand_home(argument: str) -> str:
    """`key=~/path` as `key=/home/me/path`: the shell leaves a `~` after `=` as it is, and
    Hydra's override grammar has no `~`. A path with characters the grammar reads otherwise is
    quoted."""
    key, sep, value = argument.partition("=")
    if not sep or not key or key.startswith("-") or not (value == "~" or value.startswith("~/")):
        return argument
    expanded = os.path.expanduser(value)
    if not re.fullmatch(r"[\w./\-+@:]+", expanded):
        expanded = "'" + expanded.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={expanded}"


# Arguments that choose the study: with none of them, an entry runs its default study.
STUDY_CHOICES = ("model", "data", "experiment", "hparams_search", "ckpt_path")


def chooses_a_study(arguments: Sequence[str]) -> bool:
    """Whether a command line picks the model, the data, an experiment, a search or a
    checkpoint (`model=`, `model/text_tower=`, `+experiment=`...); `seed=1` or
    `trainer.max_epochs=3` only adjust the default study."""
    for argument in arguments:
        key = argument.split("=", 1)[0].lstrip("+~")
        if key.split("/")[0] in STUDY_CHOICES:
            return True
    return False


def hydra_entry(config_name: str, default_study: Sequence[str] = ()) -> Callable:
    """@hydra.main for an emoclip entry point, reading `~/...` values as the shell would;
    `default_study`: the overrides added when the command line chooses no study
    (chooses_a_study), after its arguments (flags such as -m stay first; its overrides win
    either way)."""
    import hydra

    def decorate(task: Callable[[DictConfig], T]) -> Callable:
        hydra_main = hydra.main(
            version_base="1.3", config_path=config_dir(), config_name=config_name
        )(task)

        @functools.wraps(task)
        def main(cfg_passthrough: DictConfig | None = None):
            if cfg_passthrough is None:
                given = [expand_home(a) for a in sys.argv[1:]]
                if not chooses_a_study(given):
                    given = [*given, *default_study]
                sys.argv[1:] = given
            return hydra_main(cfg_passthrough)

        return main

    return decorate


def user_error(err: BaseException) -> EmoclipError | None:
    """The EmoclipError behind an exception, also when Hydra's instantiate wrapped it."""
    seen = err
    while seen is not None:
        if isinstance(seen, EmoclipError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def run_reporting_errors(job: Callable[[], T]) -> T:
    try:
        return job()
    except KeyboardInterrupt:
        # Inside fit/validate/test Lightning handles Ctrl-C (see emoclip.runs.faults); this is the
        # rest: reading data, building the model, writing the run folder.
        raise SystemExit("emoclip: interrupted (Ctrl-C)") from None
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        run_folder.remove_empty_created_folders()  # refused: no empty run folder left behind
        raise SystemExit(f"emoclip: {cause}") from None


def checkpoint_to_read(requested: str) -> str:
    """The checkpoint file that eval, predict and explain read for `ckpt_path`: the file, or a
    run folder's checkpoints/best.ckpt (said in one line); none there is an error, said before
    anything else is done."""
    path = Path(requested).expanduser()
    if path.is_dir():
        best = path / "checkpoints" / "best.ckpt"
        if not best.is_file():
            raise ConfigError(
                f"ckpt_path={requested}: a folder without checkpoints/best.ckpt; expected a "
                ".ckpt file or a run folder of emoclip-train"
            )
        log.info("ckpt_path=%s is a run folder: reading its checkpoints/best.ckpt", requested)
        return str(best)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={requested}: no such file; expected a .ckpt file or a run folder of "
            "emoclip-train (its checkpoints/best.ckpt is read)"
        )
    return str(path)


def run_entry(cfg: DictConfig, job: Callable[[], T], reads_checkpoint: bool = False) -> T:
    """An entry's task: the console copied to the run folder's train.log, library noise
    silenced, the config checked (before the heavy imports that `job` makes), the hub's
    reachability settled, then the job; emoclip's errors end it as one `emoclip: ...` line.
    `reads_checkpoint`: the entry reads the checkpoint ckpt_path names (eval, predict,
    explain), a file or a run folder's best one (checkpoint_to_read)."""
    from emoclip.cli import config_checks
    from emoclip.runs.console import (
        copy_console_to_job_log,
        route_library_logs_through_hydra,
        silence_library_noise,
    )
    from emoclip.system import offline, threads

    silence_library_noise()

    def checked_job() -> T:
        config_checks.check_value_types(cfg)
        if reads_checkpoint and cfg.get("ckpt_path"):
            cfg.ckpt_path = checkpoint_to_read(str(cfg.ckpt_path))
        pending = config_checks.unread_added_keys(cfg)
        config_checks.check_gpu_available(cfg)  # imports torch if a GPU is asked for
        offline.go_offline_if_hub_unreachable(OmegaConf.to_container(cfg, resolve=False))
        route_library_logs_through_hydra()  # the first heavy import
        threads.configure(cfg)  # before the checks: trainer.threads is no Trainer argument
        config_checks.check_target_parameters(cfg, pending)  # imports the targets
        return job()

    with copy_console_to_job_log():
        return run_reporting_errors(checked_job)
