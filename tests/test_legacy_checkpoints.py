"""Checkpoints written before towers existed load and predict exactly as the old code did
(tests/fixtures/legacy: made by emoclip's main at 75c351a, with that code's logits)."""

import json
from pathlib import Path

import pytest
import torch

from emoclip.errors import ConfigError
from emoclip.models.old_parameters import refuse_resuming
from emoclip.study.legacy import upgrade_checkpoint
from emoclip.study.restore import load_checkpoint, restore_for_prediction, restore_study

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
LOGITS = json.loads((LEGACY / "logits.json").read_text())


@pytest.mark.parametrize("name", sorted(LOGITS))
def test_an_old_checkpoint_gives_the_old_codes_logits(name):
    study, cfg = restore_study(LEGACY / f"{name}.ckpt")
    assert cfg.model.network._target_ == "emoclip.models.tower_fusion.TowerFusion"
    study.datamodule.setup("test")
    batch = study.datamodule.batch_of("test", list(range(6)))
    with torch.no_grad():
        logits = study.module.eval()(batch)
    torch.testing.assert_close(logits, torch.tensor(LOGITS[name]), atol=1e-5, rtol=1e-4)


def test_an_old_checkpoint_predicts_without_its_data():
    study, _ = restore_for_prediction(LEGACY / "clip_fusion_concat.ckpt")
    batch = study.datamodule.encode_inputs(["i feel so happy today"], None)
    with torch.no_grad():
        assert study.module(batch).shape == (1, 7)


def test_an_old_checkpoint_cannot_resume_training_and_says_so():
    checkpoint = load_checkpoint(LEGACY / "text_lstm.ckpt")  # already upgraded: today's names
    raw = torch.load(LEGACY / "text_lstm.ckpt", weights_only=True)
    assert any(k.startswith("network.lstm.") for k in raw["state_dict"])
    assert not any(k.startswith("network.lstm.") for k in checkpoint["state_dict"])
    refuse_resuming({**checkpoint, "optimizer_states": [{}]})  # today's layout: fine
    with pytest.raises(ConfigError, match="cannot be resumed.*emoclip-train"):
        refuse_resuming({**raw, "optimizer_states": [{}]})


def test_an_old_config_that_cannot_be_read_says_how_to_rebuild():
    raw = torch.load(LEGACY / "text_lstm.ckpt", weights_only=True)
    del raw["hyper_parameters"]["model"]["network"]["embed_dim"]
    with pytest.raises(ConfigError, match="earlier emoclip.*overrides.yaml"):
        upgrade_checkpoint(raw, "old.ckpt")
