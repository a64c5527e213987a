"""train.log holds what the console showed; Lightning's misleading and promotional lines are
gone, real warnings stay."""

import io
import logging
import os
import subprocess
import sys
import warnings

from emoclip.runs.console import NOISE_WARNINGS, _Tee, silence_library_noise
from tests.conftest import QUIET

NOISE = (
    "exists and is not empty",
    "Tip:",
    "litlogger",
    "LeafSpec",
    "does not have many workers",
    "smaller than the logging interval",
    "PosixPath(",
    ": None,",
)
TINY = [
    "model=text_lstm",
    "debug=limit",
    "data.batch_size=8",
    "data.dataset.train_size=28",
    "data.dataset.val_size=14",
    "data.dataset.test_size=14",
]


def test_train_log_is_the_console_without_the_noise(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "emoclip.train", *TINY, *QUIET, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    log = (run_dir / "train.log").read_text()
    for noise in NOISE:
        assert noise not in console and noise not in log, noise
    for shown in (
        "GPU available: False",  # Lightning's own lines reach the log...
        "the validation split has 14 examples for 7 classes",  # ...and emoclip's warnings
        f"run folder: {run_dir.resolve()}",  # ...and what was printed
        "test: acc",
    ):
        assert shown in console and shown in log, shown
    assert max(len(line) for line in console.splitlines()) < 250  # no 500-character line
    # Each console line once in the log (Lightning's console handler would double them).
    console_lines = [line for line in console.splitlines() if line.strip()]
    log_lines = [line for line in log.splitlines() if line.strip()]
    assert sorted(console_lines) == sorted(log_lines)


def test_real_warnings_stay():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_noise()
        warnings.warn(
            "Experiment logs directory /x/ exists and is not empty. Previous ...", stacklevel=1
        )
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", stacklevel=1)
        warnings.warn(
            "The 'val_dataloader' does not have many workers which may be ...", stacklevel=1
        )
        for noise in (
            "Checkpoint directory /run/checkpoints exists and is not empty.",
            "Found 69 module(s) in eval mode at the start of training. This may lead to ...",
            "The number of training batches (5) is smaller than the logging interval Trainer(...",
        ):
            warnings.warn(noise, stacklevel=1)
        warnings.warn("the learning rate is too high", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["the learning rate is too high"]
    assert len(NOISE_WARNINGS) == 6


def test_lightning_tips_are_dropped_and_its_info_kept(caplog):
    silence_library_noise()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        logger.info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_the_copy_leaves_out_progress_bar_redraws():
    console, log = io.StringIO(), io.StringIO()
    tee = _Tee(console, log)
    tee.write("Epoch 0:  50%|#####     | 1/2\rEpoch 0: 100%|##########| 2/2\n")
    tee.write("\x1b[A\n")
    tee.write("val: acc 0.8")
    tee.write("500\n")
    tee.write("no newline at the end")
    tee.close_line()
    assert log.getvalue() == "val: acc 0.8500\nno newline at the end\n"
    assert console.getvalue().startswith("Epoch 0:  50%")
