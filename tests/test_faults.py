"""Faults during training: a run killed, diverged or interrupted leaves a usable run folder."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from emoclip.cli.entry import run_reporting_errors
from emoclip.errors import TrainingError
from emoclip.runs.faults import StopOnDivergence
from emoclip.system.checkpoint_io import load_checkpoint_file
from emoclip.train import train
from tests.conftest import QUIET, REPO, compose_train

# 70 training examples in batches of 16: 5 batches an epoch.
TINY = [
    "model=text_lstm",
    "data.dataset.train_size=70",
    "data.dataset.val_size=35",
    "data.dataset.test_size=35",
    "data.batch_size=16",
    *QUIET,
]
BATCHES_PER_EPOCH = 5


def start_slow_run(run_dir: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """`python -m emoclip.train` in a subprocess, 0.2 s a training batch, 3 epochs."""
    progress, log = tmp_path / "progress.json", tmp_path / "run.log"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "emoclip.train",
        *TINY,
        "trainer.max_epochs=3",
        "+callbacks.slow._target_=tests.fault_injection.SlowBatches",
        "+callbacks.slow.seconds=0.2",
        f"+callbacks.slow.progress_file={progress}",
        f"hydra.run.dir={run_dir}",
    ]
    with open(log, "w") as out:
        # SIGINT back to its default in the child: a shell running these tests in the
        # background ignores it, and Python then never raises KeyboardInterrupt.
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return process, progress, log


def wait_for_batch(process: subprocess.Popen, progress: Path, log: Path, epoch: int, batch: int):
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended before the fault:\n{log.read_text()[-3000:]}")
        try:
            where = json.loads(progress.read_text())
        except (FileNotFoundError, ValueError):  # not written yet, or half written
            where = None
        if where and (where["epoch"], where["batch"]) >= (epoch, batch):
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"the run did not reach epoch {epoch}, batch {batch}:\n{log.read_text()[-3000:]}")


def logged_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file) if row.get("train/acc")]


def assert_valid_metrics(metrics: dict) -> None:
    for stage in ("val", "test"):
        assert 0 <= metrics[f"{stage}/acc"] <= 1
        assert math.isfinite(metrics[f"{stage}/loss"])


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_from_its_last_checkpoint(tmp_path):
    killed = tmp_path / "killed"
    process, progress, log = start_slow_run(killed, tmp_path)
    wait_for_batch(process, progress, log, epoch=1, batch=2)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()  # it really died before finishing

    last = killed / "checkpoints" / "last.ckpt"
    saved = load_checkpoint_file(last)
    assert (saved["epoch"], saved["global_step"]) == (0, BATCHES_PER_EPOCH)

    resumed = tmp_path / "resumed"
    overrides = [*TINY, "trainer.max_epochs=2", f"ckpt_path={last}", "allow_targets=[tests]"]
    metrics = train(compose_train(overrides, resumed))
    assert_valid_metrics(metrics)
    assert logged_epochs(resumed) == [1]  # continued, not started over
    final = load_checkpoint_file(resumed / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 2 * BATCHES_PER_EPOCH
    assert [row["epoch"] for row in final["emoclip"]["history"]] == [1, 2]


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_the_metrics_so_far(tmp_path):
    run_dir = tmp_path / "run"
    process, progress, log = start_slow_run(run_dir, tmp_path)
    wait_for_batch(process, progress, log, epoch=1, batch=2)
    process.send_signal(signal.SIGINT)
    returncode = process.wait(timeout=60)
    output = log.read_text()
    assert returncode == 1, output[-3000:]  # Lightning's exit status after Ctrl-C
    assert "Traceback" not in output, output[-3000:]
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    command = f"emoclip-train {' '.join(TINY)} trainer.max_epochs=3 "
    assert "Continue the run from there with:\n  " + command in output
    assert f"ckpt_path={run_dir}" in output  # the run folder, its own study keys before it

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["epochs_completed"] == 1
    assert 0 <= metrics["val/acc"] <= 1  # epoch 0's validation
    assert (run_dir / "plots" / "curves.png").is_file()
    assert (run_dir / "splits.json").is_file()
    saved = load_checkpoint_file(interrupted)
    assert saved["epoch"] == 1 and saved["global_step"] > BATCHES_PER_EPOCH  # mid-epoch
    assert metrics["global_step"] == saved["global_step"]
    assert load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 0

    # The printed command, as the test can run it: in place, from the newest checkpoint
    # (interrupted.ckpt, mid-epoch 1); the test's own callback allowed by name.
    continued = ["ckpt_path=last", "allow_targets=[tests]"]
    metrics = train(compose_train([*TINY, "trainer.max_epochs=2", *continued], run_dir))
    assert_valid_metrics(metrics)
    assert metrics["status"] == "finished"
    final = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 2 * BATCHES_PER_EPOCH  # continued mid-epoch, not restarted


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    poison = [
        "+callbacks.poison._target_=tests.fault_injection.PoisonWeights",
        "+callbacks.poison.epoch=1",
        "+callbacks.poison.value=nan",
    ]
    cfg = compose_train([*TINY, "trainer.max_epochs=3", *poison], tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as stop:
        run_reporting_errors(lambda: train(cfg))
    message = str(stop.value)
    assert message.startswith("emoclip: the training loss became nan at epoch 2, batch 1")
    assert f"The last good checkpoint is {last}" in message
    saved = load_checkpoint_file(last)
    assert saved["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    assert not (tmp_path / "checkpoints" / "interrupted.ckpt").exists()


SEVEN_CLASSES = SimpleNamespace(classes=tuple("abcdefg"))  # a uniform guess's loss: ln 7 = 1.95


@pytest.mark.parametrize("loss", [float("inf"), float("-inf"), float("nan")])
def test_any_nonfinite_loss_stops_training(loss):
    trainer = SimpleNamespace(checkpoint_callbacks=[], current_epoch=4, global_step=40)
    callback = StopOnDivergence()
    callback.on_train_batch_end(trainer, SEVEN_CLASSES, {"loss": torch.tensor(2.5)}, None, 0)
    with pytest.raises(TrainingError, match=rf"became {loss} at epoch 5, batch 4.*No checkpoint"):
        callback.on_train_batch_end(trainer, SEVEN_CLASSES, {"loss": torch.tensor(loss)}, None, 3)


def test_a_loss_far_above_where_training_started_stops_training():
    trainer = SimpleNamespace(checkpoint_callbacks=[], current_epoch=2, global_step=17)
    callback = StopOnDivergence(factor=100)
    callback.on_train_batch_end(trainer, SEVEN_CLASSES, {"loss": torch.tensor(0.5)}, None, 0)
    # From ln 7 (above the first batch's 0.5): a hard batch is not divergence...
    callback.on_train_batch_end(trainer, SEVEN_CLASSES, {"loss": torch.tensor(150.0)}, None, 1)
    # ...a loss 100 times that is.
    with pytest.raises(TrainingError, match=r"became 3.7e\+33, more than 100 times the 1.946 "):
        callback.on_train_batch_end(trainer, SEVEN_CLASSES, {"loss": torch.tensor(3.7e33)}, None, 2)
    try:
        callback.on_train_batch_end(trainer, SEVEN_CLASSES, {"loss": torch.tensor(3.7e33)}, None, 5)
    except TrainingError as stop:
        assert stop.where == {"epoch": 3, "batch": 6, "global_step": 17}  # counted from 1


def test_ctrl_c_outside_training_is_a_one_line_exit():
    def reading_data():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit, match=r"^emoclip: interrupted \(Ctrl-C\)$"):
        run_reporting_errors(reading_data)
