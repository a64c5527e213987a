"""csv, tensorboard and wandb (offline) loggers write into the run folder."""

import pytest

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
