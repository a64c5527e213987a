"""Checkpoint files: a write never leaves a broken file in place of a good one, and a file
carrying pickled code is refused without running it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import emoclip.system.checkpoint_io
from emoclip.cli.entry import run_reporting_errors
from emoclip.errors import DataError, WriteError
from emoclip.study.restore import load_checkpoint
from emoclip.system.checkpoint_io import SafeCheckpointIO, load_checkpoint_file
from emoclip.train import train
from tests.conftest import QUIET, REPO, compose_train


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)}, path)
    real_save = torch.save

    def save_half_then_fail(obj, file):
        real_save(obj, file)
        file.truncate(file.tell() // 2)
        assert io.load_checkpoint(path)["epoch"] == 1  # the old file is untouched meanwhile
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emoclip.system.checkpoint_io.torch, "save", save_half_then_fail)
    with pytest.raises(WriteError, match=f"^cannot write {path}: No space left on device"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    saved = io.load_checkpoint(path)
    assert saved["epoch"] == 1 and torch.equal(saved["weights"], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file left


WRITER = """
import sys, torch
from emoclip.system.checkpoint_io import SafeCheckpointIO
io, step = SafeCheckpointIO(), 0
while True:
    io.save_checkpoint({"step": step, "weights": torch.full((2_000_000,), float(step))}, sys.argv[1])
    print(step, flush=True)
    step += 1
"""


def test_sigkill_while_writing_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    for _ in range(2):  # each line is one finished checkpoint
        assert writer.stdout.readline(), "the writer died"
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".last.ckpt.*.partial")) and time.monotonic() < deadline:
        time.sleep(0.001)  # until the next write is under way
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    saved = load_checkpoint_file(path)
    assert saved["step"] >= 1
    assert torch.equal(saved["weights"], torch.full((2_000_000,), float(saved["step"])))


class WritesAFileWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    """A checkpoint shaped like emoclip's, carrying an object whose unpickling writes a file."""
    marker, path = tmp_path / "payload_ran", tmp_path / "crafted.ckpt"
    checkpoint = {
        "state_dict": {},
        "hyper_parameters": {"seed": 0},
        "emoclip": {"classes": ["anger", "happiness"]},
        "epoch": 0,
        "global_step": 0,
        "payload": WritesAFileWhenUnpickled(marker),
    }
    torch.save(checkpoint, path)
    assert not marker.exists()
    return path, marker


def test_crafted_checkpoint_is_refused_by_evaluation(crafted):
    path, marker = crafted
    with pytest.raises(DataError, match=rf"refused to load {path}: .*weights_only=True.*open"):
        load_checkpoint(path)
    assert not marker.exists()


def test_crafted_checkpoint_is_refused_when_resuming(crafted, tmp_path):
    path, marker = crafted
    cfg = compose_train(["model=text_lstm", "debug=fdr", *QUIET, f"ckpt_path={path}"], tmp_path)
    with pytest.raises(SystemExit, match=rf"^emoclip: refused to load {path}"):
        run_reporting_errors(lambda: train(cfg))
    assert not marker.exists()
    # The file is a real threat: loaded without weights_only, its payload runs.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint({"weights": torch.ones(10_000)}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{path} is not a readable checkpoint"):
        load_checkpoint_file(path)


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"\x80" + os.urandom(4095), b"not a checkpoint", b""],
    ids=["random bytes", "random bytes like a pickle", "text", "empty"],
)
def test_a_file_that_is_not_a_pytorch_file_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "best.ckpt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{path} is not a checkpoint: a PyTorch checkpoint is"):
        load_checkpoint(path)
