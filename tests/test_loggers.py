"""csv, tensorboard and wandb (offline) loggers write into the run folder, one per sweep job."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2

from emoclip.train import train
from tests.conftest import QUIET, SMALL_DATA, compose_train


@pytest.mark.slow
def test_csv_tensorboard_and_offline_wandb_together(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_train(
        [
            "model=text_lstm",
            "debug=limit",
            "logger=[csv,tensorboard,wandb]",
            "logger.wandb.tags=[test]",
            *SMALL_DATA,
            *QUIET,
        ],
        tmp_path,
    )
    assert cfg.logger.wandb.mode == "offline"
    train(cfg)
    assert "val/f1_macro" in (tmp_path / "metrics.csv").read_text()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))


def test_wandb_is_offline_unless_the_environment_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert compose_train(["logger=wandb"], tmp_path).logger.wandb.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert compose_train(["logger=wandb"], tmp_path).logger.wandb.mode == "online"


def wandb_records(run_file: Path) -> dict[str, list]:
    """The records of an offline run's .wandb file, by type. The file is a LevelDB-style log
    of 32 KiB blocks, each record split into chunks with a 7-byte header (crc, length, type)."""
    raw, block, pos = run_file.read_bytes(), 32768, 7  # after the file header
    records, chunks = {}, []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunks.append(raw[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            kind_name = record.WhichOneof("record_type")
            records.setdefault(kind_name, []).append(getattr(record, kind_name))
    return records


@pytest.mark.slow
def test_wandb_offline_one_finished_run_per_sweep_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emoclip.train",
            "-m",
            "model=image_cnn",
            "seed=1,2",
            "logger=[csv,wandb]",
            "debug=limit",
            "trainer.max_epochs=2",
            *SMALL_DATA,
            *QUIET,
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_ids = set()
    for job in ("0", "1"):
        runs = list((sweep / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs  # one run per job, in the job's folder
        records = wandb_records(next(runs[0].glob("run-*.wandb")))
        (run,) = records["run"]
        run_ids.add(run.run_id)
        assert run.run_group == "sweep"  # the sweep folder's name
        assert "exit" in records  # finished before the next job started
        config = {item.key: json.loads(item.value_json) for item in records["config"][0].update}
        assert config["model"]["name"] == "image_cnn" and config["seed"] == int(job) + 1
        history = [{i.nested_key[0]: i.value_json for i in h.item} for h in records["history"]]
        assert sum("val/f1_macro" in row for row in history) >= 2  # per epoch
        summary = {
            u.nested_key[0] if u.nested_key else u.key: u.value_json
            for s in records["summary"]
            for u in s.update
        }
        final = json.loads((sweep / job / "metrics.json").read_text())
        assert json.loads(summary["test/acc"]) == pytest.approx(final["test/acc"])
        assert json.loads(summary["test/f1_macro"]) == pytest.approx(final["test/f1_macro"])
        assert "test/confusion_matrix" in summary  # the image
        assert list((runs[0] / "files" / "media" / "images").glob("test/confusion_matrix_*.png"))
    assert len(run_ids) == 2
