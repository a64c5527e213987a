"""What a run shows on the console, and its copy in the run folder's train.log.

`copy_console_to_job_log` makes train.log (Hydra's job log file) hold what the console showed:
log records, Python warnings, printed results and the final `emoclip: ...` error, but not the
progress bar's redraws. `silence_library_noise` drops the lines of Lightning that mislead or
advertise, and only those: every other warning stays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

# Python warnings from libraries that say nothing true or useful about an emoclip run.
NOISE_WARNINGS = (
    # The csv logger's folder is the run folder, which always holds .hydra/ already; a resumed
    # run keeps its metrics.csv rows (emoclip.runs.tracking), so nothing "will be deleted".
    r"Experiment logs directory .* exists and is not empty",
    # lightning 2.6 on torch 2.13 uses a deprecated torch API internally: not the user's to fix.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # A study's splits are decoded once (emoclip.data.store): for small splits worker processes
    # would add start-up, not speed, and data.num_workers=null picks none for them.
    r"The '\w+_dataloader' does not have many workers",
    # A resumed run writes its checkpoints (best.ckpt, last.ckpt) over its own, by design.
    r"Checkpoint directory .* exists and is not empty",
    # Frozen towers are kept in eval mode on purpose (no dropout, fixed batch-norm statistics).
    r"Found \d+ module\(s\) in eval mode at the start of training",
    # emoclip logs its metrics once an epoch, whatever the number of batches.
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)
# Log lines of Lightning that advertise other products.
NOISE_LOG_PREFIXES = ("💡 Tip:",)
NOISE_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE_LOG_PREFIXES)


def route_library_logs_through_hydra() -> None:
    """Lightning's package adds its own console handler to the `lightning` logger ("INFO: ...")
    and, imported after Hydra has set up logging, also lets records reach Hydra's handlers: each
    line would show twice, once without reaching train.log. Imports Lightning and keeps Hydra's
    handlers only."""
    import lightning  # noqa: F401

    if not logging.getLogger().handlers:
        return
    logger = logging.getLogger("lightning")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)


def silence_library_noise() -> None:
    """Filter the NOISE_WARNINGS and Lightning's tips; idempotent."""
    for pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in NOISE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())


class _Tee:
    """A text stream that writes to the console stream and, line by line, to the log file,
    leaving out the progress bar's lines (redrawn with carriage returns and cursor moves)."""

    def __init__(self, console: TextIO, log: TextIO):
        self.console, self.log = console, log
        self.pending = ""

    def write(self, text: str) -> int:
        written = self.console.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._keep(line)
        return written

    def _keep(self, line: str) -> None:
        if "\r" in line or "\x1b[" in line or self.log.closed:
            return
        self.log.write(line + "\n")

    def flush(self) -> None:
        self.console.flush()
        if not self.log.closed:
            self.log.flush()

    def close_line(self) -> None:
        if self.pending:
            self._keep(self.pending)
            self.pending = ""

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the console's
        return getattr(self.console, name)


class _DeferredLog:
    """The job log file, opened only once the run folder's checks pass (start_job_log, called
    by emoclip.runs.run_folder.RunFolder.claim), without following a symbolic link; until then what
    is written waits here, and a refused command's lines never reach any file."""

    def __init__(self, path: Path):
        self.path, self.pending, self.file = path, [], None
        self.closed = False

    def write(self, text: str) -> None:
        if self.file is None:
            self.pending.append(text)
        else:
            self.file.write(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def open(self) -> None:
        if self.file is not None or self.closed:
            return
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as err:
            from emoclip.system.atomic import write_error

            raise write_error(self.path, err) from err
        self.file = os.fdopen(fd, "a", encoding="utf-8")
        self.file.write("".join(self.pending))
        self.pending = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.closed = True


_JOB_LOG: _DeferredLog | None = None


def start_job_log() -> None:
    """The run folder passed its checks: the job log file (train.log) may now be written."""
    if _JOB_LOG is not None:
        _JOB_LOG.open()


def _process_rank() -> int:
    """This process's rank in a multi-process run (0 when alone), from what launchers set."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"):
        value = os.environ.get(name, "0")
        if value.isdigit() and int(value) != 0:
            return int(value)
    return 0


def _job_log_handlers() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


@contextlib.contextmanager
def copy_console_to_job_log() -> Iterator[Path | None]:
    """Within the block, everything written to stdout and stderr also goes to Hydra's job log
    file (train.log in the run folder), which then holds what the console showed instead of the
    log records alone. Without a job log file (emoclip-predict), nothing changes. The extra
    processes of a DDP run (rank > 0) keep their own job log of log records, as Hydra writes it."""
    handlers = _job_log_handlers()
    if not handlers or _process_rank() != 0:
        # Another rank's job log (train_ddp_process_N.log) keeps Hydra's own log records.
        yield None
        return
    path = Path(handlers[0].baseFilename)
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
    global _JOB_LOG
    console = {"stdout": sys.stdout, "stderr": sys.stderr}
    _JOB_LOG = log = _DeferredLog(path)
    with contextlib.closing(log):
        tees = {name: _Tee(stream, log) for name, stream in console.items()}
        # Hydra's console log handler holds the stream it was configured with.
        repointed = []
        for handler in root.handlers:
            for name, stream in console.items():
                if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
                    handler.setStream(tees[name])
                    repointed.append((handler, stream))
        sys.stdout, sys.stderr = tees["stdout"], tees["stderr"]
        try:
            yield path
        except SystemExit as exit_:
            if isinstance(exit_.code, str):  # `emoclip: <message>`, printed by Python next
                log.write(exit_.code + "\n")
            raise
        except BaseException:  # printed to the console by Hydra or Python once out of here
            log.write(traceback.format_exc())
            raise
        finally:
            for tee in tees.values():
                tee.close_line()
            sys.stdout, sys.stderr = console["stdout"], console["stderr"]
            for handler, stream in repointed:
                handler.setStream(stream)
            _JOB_LOG = None
