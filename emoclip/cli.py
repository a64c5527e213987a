"""What the entry points share: a light start, and emoclip's own errors as one clear message.

An entry module (emoclip/train.py, evaluate.py, ...) imports only this module, Hydra and
OmegaConf at the top; its task function hands `run_entry` a job that imports torch, Lightning
and transformers (9-10 s) inside. So Hydra's composition errors and emoclip's config checks
come out in about a second, before those imports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

# Registers ${emoclip.run_dir:...}, which Hydra resolves (conf/hydra/default.yaml) before the job.
from emoclip import run_folder  # noqa: F401
from emoclip.errors import EmoclipError

T = TypeVar("T")


def config_dir() -> str:
    """conf/ beside the package in a source checkout, emoclip/conf inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no Hydra config folder (conf/train.yaml) next to {here}")


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
        # Inside fit/validate/test Lightning handles Ctrl-C (see emoclip.faults); this is the
        # rest: reading data, building the model, writing the run folder.
        raise SystemExit("emoclip: interrupted (Ctrl-C)") from None
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        raise SystemExit(f"emoclip: {cause}") from None


def run_entry(cfg: DictConfig, job: Callable[[], T]) -> T:
    """An entry's task: the console copied to the run folder's train.log, library noise
    silenced, the config checked (before the heavy imports that `job` makes), the hub's
    reachability settled, then the job; emoclip's errors end it as one `emoclip: ...` line."""
    from emoclip import config_checks, offline, threads
    from emoclip.console import (
        copy_console_to_job_log,
        route_library_logs_through_hydra,
        silence_library_noise,
    )

    silence_library_noise()

    def checked_job() -> T:
        pending = config_checks.unread_added_keys(cfg)
        offline.go_offline_if_hub_unreachable(OmegaConf.to_container(cfg, resolve=False))
        route_library_logs_through_hydra()  # the first heavy import
        threads.configure(cfg)  # before the checks: trainer.threads is no Trainer argument
        config_checks.check_target_parameters(cfg, pending)  # imports the targets
        return job()

    with copy_console_to_job_log():
        return run_reporting_errors(checked_job)
