"""What a run leaves for its user (its own folder, metrics.json, splits.json, versions.json,
plots, its config files), reading it back, and the rules every command that writes a run folder
(train, eval, explain) follows through RunFolder:

- The folder is checked before anything is written: a folder that holds a run is never written
  by another command (it is refused with a message saying how to continue that run or where to
  go), and a refused command changes nothing in it. Hydra writes no .hydra files
  (hydra.output_subdir is null in conf/hydra/default.yaml); emoclip writes them once the work
  begins.
- A lock (the file .lock, held with flock) is held while the command writes; a second command
  into a locked folder is refused at once.
- Every file is written atomically (emoclip.system.atomic), metrics.json last.
- metrics.json says what the folder holds: "status" is finished, interrupted (Ctrl-C), diverged
  (the loss stopped being finite or exploded) or failed (with "error"). A folder with run files
  but no readable metrics.json is unfinished (killed, or still running: then it is locked).
  A finished run's metrics.json names the checkpoint file it describes ("checkpoint": file,
  epoch, global_step, sha256), and a fast_dev_run is marked ("fast_dev_run": true).
- A command that fails before its work begins leaves the folder as it found it: a new folder it
  created is removed, in another what it added goes. One that fails later marks it failed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from emoclip import __version__
from emoclip.errors import DataError, RunFolderError, TrainingError, WriteError
from emoclip.system.atomic import write_atomically, write_error

try:
    import fcntl
except ImportError:  # Windows: no flock, so no lock
    fcntl = None

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"  # written last; its "status" says what the folder holds
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CHECKPOINTS = Path("checkpoints")
LAST_CHECKPOINT = CHECKPOINTS / "last.ckpt"
LOCK_FILE = ".lock"
PACKAGES = ("torch", "lightning", "transformers", "torchmetrics", "hydra-core")
FINISHED, INTERRUPTED, DIVERGED, FAILED = "finished", "interrupted", "diverged", "failed"
UNFINISHED = "unfinished"  # no readable metrics.json: killed, or still running
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


# The run folders this process created (for a new run): a command that fails before its work
# begins removes its own folder, and only that.
CREATED_HERE: set[Path] = set()


def _cannot_create(path: Path, err: OSError) -> SystemExit:
    return SystemExit(
        f"emoclip: cannot create the run folder {path}: {err.strerror or err} (a read-only or "
        "missing disk?); choose another paths.output_root or hydra.run.dir"
    )


class CreatableRunFolder(Callback):
    """Hydra callback (conf/hydra/default.yaml): the run folder is created before Hydra's job
    starts, so a folder that cannot be (a read-only file system) is one line, not a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        path = Path(str(config.hydra.run.dir))  # a new folder: claim_new_dir made it
        try:
            if not path.exists():
                path.mkdir(parents=True)
                CREATED_HERE.add(path.resolve())  # hydra.run.dir=<a new folder>
        except OSError as err:
            raise _cannot_create(path, err) from None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _cannot_create(Path(err.filename or "?"), err) from None


def claim_new_dir(path: str) -> str:
    """`path`, or `path_2`, `path_3`, ...: the first that did not exist, created here.

    mkdir fails on an existing folder, so two runs started in the same second (even in two
    processes) never share a folder, and no run writes into an earlier one.
    """
    base = Path(path)
    candidate, n = base, 1
    while True:
        try:
            _make_parents(base.parent)
            candidate.mkdir()
            CREATED_HERE.add(candidate.resolve())
            return str(candidate)
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")
        except OSError as err:  # SystemExit passes through Hydra's resolver as one line
            raise _cannot_create(candidate, err) from None


def _make_parents(folder: Path) -> None:
    """mkdir -p, remembering the folders made here (outputs/<date>), so that a refused command
    leaves none of them behind."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    CREATED_HERE.update(p.resolve() for p in missing)


def remove_empty_created_folders() -> None:
    """A command refused before its run folder was claimed leaves no folder behind: the empty
    folders this process created for it go."""
    for path in sorted(CREATED_HERE, reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()  # only when empty


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


def study_name(model: Mapping | None) -> str:
    """What a model config trains, for run folders and report rows: its modality and its
    towers as chosen (`text_hf` for model=text_lstm model/text_tower=hf, `image_cnn`,
    `fusion_clip_cnn`: text and image towers); a network without towers (zero-shot CLIP, the
    linear probe) by its model option's name. A tower is named by the module that defines it
    (emoclip/models/towers/hf.py: hf, as its option in conf/model/text_tower/)."""
    if not isinstance(model, Mapping):
        return "model"
    towers = {
        m: str(tower.get("_target_", "")).rpartition(".")[0].rpartition(".")[2] or "tower"
        for m in ("text", "image")
        if isinstance(tower := model.get(f"{m}_tower"), Mapping)
    }
    if len(towers) == 2:
        return f"fusion_{towers['text']}_{towers['image']}"
    if towers:
        (modality, tower), *_ = towers.items()
        return f"{modality}_{tower}"
    return str(model.get("name") or "model")


# For conf/train.yaml's `name` (the run folder's): the study's model, named by what it trains.
if not OmegaConf.has_resolver("emoclip.study_name"):
    OmegaConf.register_new_resolver("emoclip.study_name", study_name)


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
    """Write the plots, splits.json, then metrics.json (flat `stage/metric` keys, the per-epoch
    `history` of training, "status": finished unless `extra` says otherwise, plus `extra`),
    each atomically; return the metrics."""
    from emoclip.runs.plots import plot_ablations, plot_confusion, plot_curves  # matplotlib: here

    metrics = {"status": FINISHED, **flat_metrics(classes, results), **(extra or {})}
    if history:
        metrics["history"] = list(history)
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
    plot_ablations(metrics, run_dir / "plots" / "ablations.png")  # a fusion study's
    if split_ids is not None:
        write_atomically(run_dir / "splits.json", json.dumps(split_ids, indent=1) + "\n")
    write_metrics(run_dir, metrics)
    return metrics


def write_metrics(run_dir: Path, metrics: dict) -> None:
    write_atomically(run_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")


def summary(run_dir: Path, metrics: dict) -> str:
    lines = [f"run folder: {run_dir.resolve()}"]
    for stage in ("val", "test", "test_text_only", "test_image_only"):
        if f"{stage}/acc" in metrics:
            lines.append(
                f"{stage}: acc {metrics[f'{stage}/acc']:.4f}  "
                f"f1_macro {metrics[f'{stage}/f1_macro']:.4f}  "
                f"loss {metrics[f'{stage}/loss']:.4f}"
            )
        split = "val" if stage == "val" else "test"
        if f"{split}_majority/acc" in metrics and stage in ("val", "test"):
            lines.append(
                f"{split}_majority ({metrics.get('majority_class')}, of {metrics.get('majority_of')}): "
                f"acc {metrics[f'{split}_majority/acc']:.4f}  "
                f"f1_macro {metrics[f'{split}_majority/f1_macro']:.4f}"
            )
    return "\n".join(lines)


def read_metrics(run_dir: Path) -> dict:
    """metrics.json of a run folder, checked for what every finished run has."""
    path = run_dir / METRICS_FILE
    metrics = _load_metrics(path)
    missing = [key for key in ("classes", "test/acc", "test/f1_macro") if key not in metrics]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}; is it a finished run's metrics?")
    classes = metrics["classes"]
    if not isinstance(classes, list) or not all(
        isinstance(c, str) and c.isprintable() for c in classes
    ):
        raise DataError(f"{path}: classes is not a list of printable names")
    numbers = [k for k, v in metrics.items() if "/" in k and isinstance(v, str | bool)]
    if numbers:
        raise DataError(f"{path}: {', '.join(numbers[:3])} is not a number")
    return metrics


def _load_metrics(path: Path) -> dict:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable metrics.json ({err})") from err
    if not isinstance(metrics, dict):
        raise DataError(f"{path}: expected a JSON object of metrics, got {type(metrics).__name__}")
    return metrics


def stored_metrics(run_dir: Path) -> dict | None:
    """metrics.json as written, or None when there is none or it cannot be read (a run that
    did not get to write it whole: unfinished)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return None
    try:
        return _load_metrics(path)
    except DataError as err:
        log.warning("%s; taking the run as unfinished", err)
        return None


def run_status(run_dir: Path) -> str | None:
    """What the folder holds: None (no run), finished, interrupted, diverged, failed, or
    unfinished (run files but no readable metrics.json)."""
    metrics = stored_metrics(run_dir)
    if metrics is not None:
        status = metrics.get("status", FINISHED)  # folders from before "status" finished
        return status if status in (FINISHED, INTERRUPTED, DIVERGED, FAILED) else UNFINISHED
    return UNFINISHED if holds_run_files(run_dir) else None


def holds_run_files(run_dir: Path) -> bool:
    markers = (METRICS_FILE, CONFIG_FILE, "versions.json")
    if any((run_dir / m).exists() for m in markers):
        return True
    return any((run_dir / CHECKPOINTS).glob("*.ckpt"))


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
    # metrics.csv is Lightning's, counting epochs from 0; the history counts from 1.
    return [{"epoch": epoch + 1, **epochs[epoch]} for epoch in sorted(epochs)]


def finished_metrics(run_dir: Path) -> dict | None:
    """The metrics of a run folder whose run finished, else None (none yet, unreadable, or a
    run that was interrupted, diverged or failed)."""
    metrics = stored_metrics(run_dir)
    if metrics is None or metrics.get("status", FINISHED) != FINISHED:
        return None
    return metrics


def checkpoint_disagreement(checkpoint: Path, identity: dict) -> str | None:
    """A note when the metrics.json of the run folder holding `checkpoint` describes another
    file, or this file with other content (e.g. a best.ckpt written over later); else None."""
    run_dir = checkpoint.parent.parent
    if checkpoint.parent.name != CHECKPOINTS.name:
        return None
    metrics = finished_metrics(run_dir)
    if metrics is None:
        return None
    recorded = metrics.get("checkpoint")
    if not isinstance(recorded, dict):
        return (
            f"note: {run_dir / METRICS_FILE} does not record which checkpoint it describes "
            "(written before emoclip recorded it): its numbers may not be this checkpoint's"
        )
    name = (CHECKPOINTS / checkpoint.name).as_posix()
    if recorded.get("file") == name and recorded.get("sha256") == identity["sha256"]:
        return None
    return (
        f"note: {run_dir / METRICS_FILE} describes {recorded.get('file')} at epoch "
        f"{recorded.get('epoch')} (sha256 {str(recorded.get('sha256'))[:12]}), not this file "
        f"({name} at epoch {identity['epoch']}, sha256 {identity['sha256'][:12]}): the run "
        "folder's numbers are not this checkpoint's"
    )


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
    write_atomically(run_dir / "versions.json", json.dumps(versions(), indent=2) + "\n")


def running_app(cfg: DictConfig) -> DictConfig | None:
    """The running Hydra app's `hydra` node when `cfg` is that app's config (its run folder is
    the app's); None outside an app, or for a study composed in the same process after an app
    ran (Hydra's state stays behind: it must not be recorded as this study's)."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    ran_in = OmegaConf.select(hydra, "runtime.output_dir", default=None, throw_on_missing=False)
    output_dir = OmegaConf.select(
        cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False
    )
    if ran_in is None or output_dir is None or str(output_dir) != str(ran_in):
        return None
    return hydra


def write_config_files(run_dir: Path, cfg: DictConfig) -> None:
    """.hydra/config.yaml (the composed config, unresolved, as Hydra writes it), and under
    Hydra also hydra.yaml and overrides.yaml."""
    write_atomically(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg))
    if running_app(cfg) is not None:
        hydra_cfg = HydraConfig.instance().cfg
        write_atomically(run_dir / ".hydra" / "hydra.yaml", OmegaConf.to_yaml(hydra_cfg))
        overrides = OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task)
        write_atomically(run_dir / OVERRIDES_FILE, overrides)


# ---------------------------------------------------------------- continuing a run


def run_overrides(run_dir: Path) -> list[str] | None:
    """The overrides the run in run_dir was started with (.hydra/overrides.yaml), read as
    untrusted text: a YAML list of strings, else None."""
    try:
        loaded = yaml.safe_load((run_dir / OVERRIDES_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(loaded, list) or not all(isinstance(o, str) for o in loaded):
        return None
    return loaded


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _hydra_value(value: str) -> str:
    """A value as Hydra's override grammar reads it: quoted unless plainly safe."""
    if re.fullmatch(r"[\w./:@-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# An override the printed "continue" command may repeat: a config group's option, or a
# dotted key of the study with a literal value. Never the entry's trust (trust_config,
# allow_targets), Hydra's own keys, + or ~, special keys, interpolations or mappings.
_GROUP_OR_KEY = re.compile(r"[A-Za-z][\w/]*(\.[A-Za-z]\w*)*")
_LITERAL = re.compile(r"[\w./:@+,\-\[\] ]*")
NEVER_REPEATED = ("ckpt_path", "hydra", "trust_config", "allow_targets", "paths")


def repeatable(override: str) -> bool:
    """Whether an override read from overrides.yaml (a file) may be printed for the user to
    paste: a study key with a literal value (see _GROUP_OR_KEY, _LITERAL, NEVER_REPEATED)."""
    key, equals, value = override.partition("=")
    return (
        bool(equals)
        and _GROUP_OR_KEY.fullmatch(key) is not None
        and key.split(".")[0].split("/")[0] not in NEVER_REPEATED
        and not any(part.startswith("_") for part in re.split(r"[./]", key))
        and _LITERAL.fullmatch(value) is not None
        and len(override) <= 200
    )


def continue_command(run_dir: Path) -> str:
    """The command that continues the run in run_dir in place: the run folder as ckpt_path,
    and its own overrides that are study keys with literal values (`repeatable`; the file is
    untrusted text, so nothing else it holds is printed for the user to paste)."""
    folder = shlex.quote(f"ckpt_path={_hydra_value(str(run_dir))}")
    overrides = run_overrides(run_dir) or []
    kept = [o for o in overrides if repeatable(o)]
    left = len(overrides) - len(kept)
    note = f" (left out: {left} of its overrides that are not plain study values)" if left else ""
    return " ".join(["emoclip-train", *map(shlex.quote, kept), folder]) + note


def shown_overrides(run_dir: Path) -> str:
    """The run's own overrides as a user would type them, for messages."""
    overrides = run_overrides(run_dir)
    if overrides is None:
        return f"unknown (no readable {run_dir / OVERRIDES_FILE})"
    if not overrides:
        return "none"
    return " ".join(shlex.quote(o) if o.isprintable() else repr(o) for o in overrides)


# ---------------------------------------------------------------- the folder one command writes


def lock_folder(run_dir: Path) -> int:
    """Hold the folder's lock (flock on .lock) until release_lock or the process ends; refuse
    at once if another process holds it."""
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        if path.is_symlink():
            raise RunFolderError(
                f"{path} is a symbolic link: a run folder's files are never opened through one "
                "(a folder from elsewhere could point them at your files); remove it"
            ) from None
        raise write_error(path, err) from err
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunFolderError(
            f"{run_dir} is being written by another run ({holder}); two runs never write one "
            "folder. Wait for that run to end, or give this one another hydra.run.dir (or none, "
            "for a new folder)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    return fd


def refuse_links(run_dir: Path) -> None:
    """A run folder from elsewhere may hold symbolic links where emoclip writes (train.log,
    metrics.json, .hydra/...): refused, so nothing is written through one to a file elsewhere.
    (Other files are written atomically: renamed over a link, not through it.)"""
    for name in ("train.log", METRICS_FILE, ".hydra"):
        if (run_dir / name).is_symlink():
            raise RunFolderError(
                f"{run_dir / name} is a symbolic link: a run folder's files are never written "
                "through one (a folder from elsewhere could point them at your files); remove it"
            )


def remove_partial_files(run_dir: Path) -> None:
    """The hidden .partial files a killed writer left (emoclip.system.atomic): with the folder's lock
    held no one else is writing them, so they go."""
    for folder in (run_dir, run_dir / CHECKPOINTS, run_dir / ".hydra", run_dir / "plots"):
        if folder.is_dir() and not folder.is_symlink():
            for leftover in folder.glob(".*.partial"):
                if leftover.is_file() or leftover.is_symlink():
                    leftover.unlink()
                    log.info("removed %s, left by a killed write", leftover)


def release_lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _entries(run_dir: Path) -> set[str]:
    try:
        return set(os.listdir(run_dir))
    except FileNotFoundError:
        return set()


class RunFolder:
    """The run folder of one command, with the rules in this module's docstring.

        folder = RunFolder(run_dir, entry="train")
        with folder.session():
            ...checks that may refuse...
            folder.claim()  # refuse a folder that holds a run, or one locked; lock it
            ...build the study (a failure here leaves the folder as found)...
            folder.begin(cfg)  # .hydra files, versions.json; from here failures mark it
            ...train, write_results...

    `writes=False` (DDP ranks other than 0) makes every step a no-op: rank 0 owns the folder.
    """

    def __init__(self, path: str | Path, entry: str = "train", writes: bool = True):
        self.path = Path(path)
        self.entry = entry
        self.writes = writes
        self.existed = self.path.exists()
        self.found = _entries(self.path)  # what the folder held before this command
        self.started = False
        self._lock: int | None = None

    def claim(self, continuing: bool = False) -> None:
        """Lock the folder for this command; unless `continuing` its own run, refuse a folder
        that holds a run (checked before and after taking the lock)."""
        if not self.writes:
            return
        if not continuing:
            self.refuse_if_taken()
        self._lock = lock_folder(self.path)
        if not continuing:
            self.refuse_if_taken()
        refuse_links(self.path)
        remove_partial_files(self.path)
        from emoclip.runs.console import start_job_log

        start_job_log()  # train.log is written from here on, never before the checks

    def refuse_if_taken(self) -> None:
        status = run_status(self.path)
        if status is None:
            return
        if status == FINISHED:
            best = self.path / CHECKPOINTS / "best.ckpt"
            what = f"To evaluate it: emoclip-eval ckpt_path={shlex.quote(str(best))}. "
        elif self.entry == "train":
            what = f"To continue it: {continue_command(self.path)}. "
        else:
            what = ""
        raise RunFolderError(
            f"{self.path} already holds a run ({status}), and a folder that holds a run is "
            f"never written by another command. {what}For this command, leave hydra.run.dir "
            "unset (a new folder), or name a folder that holds no run"
        )

    def begin(self, cfg: DictConfig, starting_over: bool = False) -> None:
        """The work begins: write the config files and versions.json, and remove a metrics.json
        of an earlier attempt (it would describe that one), and when `starting_over` (a run
        continued in place, with no checkpoint to continue from) that attempt's checkpoints;
        from here a failure marks the folder."""
        self.started = True
        if not self.writes:
            return
        (self.path / METRICS_FILE).unlink(missing_ok=True)
        stale = sorted((self.path / CHECKPOINTS).glob("*.ckpt")) if starting_over else []
        if stale:
            log.warning("starting over: removing %s", ", ".join(str(p) for p in stale))
        for path in stale:
            path.unlink()
        write_config_files(self.path, cfg)
        write_versions(self.path)

    @contextmanager
    def session(self) -> Iterator[RunFolder]:
        try:
            yield self
        except OSError as err:
            if err.errno not in WRITE_ERRNOS or err.filename is None:
                self._failed(err)
                raise
            error = write_error(Path(err.filename), err)
            self._failed(error)
            raise error from err
        except BaseException as err:
            self._failed(err)
            raise
        finally:
            if self._lock is not None:
                release_lock(self._lock)
                self._lock = None

    def _leave_as_found(self) -> None:
        """Undo what this command wrote before its work began: a new folder made for it goes;
        in a folder it locked, what it added goes (the folder too, if it made it). A folder it
        never locked is left alone: another run may be writing there."""
        if self.path.resolve() in CREATED_HERE or (self._lock is not None and not self.existed):
            shutil.rmtree(self.path, ignore_errors=True)
        elif self._lock is not None:
            for name in _entries(self.path) - self.found:
                added = self.path / name
                if added.is_dir() and not added.is_symlink():
                    shutil.rmtree(added, ignore_errors=True)
                else:
                    added.unlink(missing_ok=True)

    def _failed(self, err: BaseException) -> None:
        if not self.writes:
            return
        if not self.started:
            self._leave_as_found()
            return
        status, extra = FAILED, {"error": str(err) or type(err).__name__}
        if isinstance(err, TrainingError):
            status, extra = DIVERGED, {"error": str(err), **err.where}
        elif isinstance(err, KeyboardInterrupt | SystemExit):
            earlier = stored_metrics(self.path)
            if earlier is not None and earlier.get("status") == INTERRUPTED:
                return  # faults.SaveOnInterrupt wrote the metrics so far
            status, extra = INTERRUPTED, {}
        try:
            write_metrics(self.path, {"status": status, **extra})
        except WriteError as write_failed:
            log.warning("could not mark %s as %s: %s", self.path, status, write_failed)
