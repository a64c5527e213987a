"""Resuming: a killed run continued from its last.ckpt ends as if it had run straight through."""

import csv
import re

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from emoclip.errors import ConfigError
from emoclip.runs.run_folder import run_status
from emoclip.study.build import config_dir
from emoclip.study.resume import Resume, plan_resume
from emoclip.train import train
from tests.conftest import QUIET, compose_train
from tests.test_sources import write_ckplus48, write_dair


class KillAtEpoch(L.Callback):
    """Dies as the given epoch starts, after the previous epoch's checkpoints were written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"killed at the start of epoch {self.epoch}")


KILL = ["+callbacks.kill._target_=tests.test_resume.KillAtEpoch", "+callbacks.kill.epoch=1"]


@pytest.fixture
def paired_study(tmp_path):
    """CK+-like faces paired by label with DAIR-like texts: a fresh text per image each epoch
    (the EpochSampler), augmentation and dropout all draw random numbers."""
    return [
        "experiment=paper_tiny",
        f"data.root.image={write_ckplus48(tmp_path / 'ck', subjects=6)}",
        f"data.root.text={write_dair(tmp_path / 'dair')}",
        "data.classes=[anger,happiness,sadness,surprise]",
        "data.test_fraction=0.25",
        "data.val_fraction=0.25",
        "data.batch_size=8",
        "model.backbone.image_size=32",
        "model.network.dropout=0.3",
        "trainer.max_epochs=3",
        "callbacks.early_stopping=null",
        *QUIET,
    ]


def test_killed_run_resumed_from_last_ends_like_a_straight_run(paired_study, tmp_path):
    straight = train(compose_train(paired_study, tmp_path / "straight"))

    killed = tmp_path / "killed"
    # Raised by a test-only callback, not the test module's own class: Hydra imports it anew.
    with pytest.raises(RuntimeError, match="killed at the start of epoch 1"):
        train(compose_train([*paired_study, *KILL], killed))
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    assert run_status(killed) == "failed"  # raised, not SIGKILLed: the run could mark it
    # The killed run's checkpoint names a test-only callback: allowed by name, as a user allows
    # their own code.
    resumed = train(
        compose_train([*paired_study, "ckpt_path=last", "allow_targets=[tests]"], killed)
    )

    # The same best epoch; the files differ (the resumed run's stored config names ckpt_path).
    assert resumed.pop("checkpoint")["epoch"] == straight.pop("checkpoint")["epoch"]
    assert resumed == straight
    histories = [checkpoint_history(d) for d in (tmp_path / "straight", killed)]
    assert [row["epoch"] for row in histories[1]] == [1, 2, 3]
    assert histories[0] == histories[1]
    val_curves = [val_rows(d) for d in (tmp_path / "straight", killed)]
    assert len(val_curves[1]) == 3 + 1  # each epoch, and the best checkpoint validated again
    assert val_curves[0] == val_curves[1]


def checkpoint_history(run_dir):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["emoclip"]["history"]


def val_rows(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        return [(r["epoch"], r["val/f1_macro"]) for r in csv.DictReader(f) if r["val/f1_macro"]]


def fake_checkpoint(run_dir, cfg, name="last.ckpt", step=9):
    """A checkpoint holding cfg's study, as the module saves it (no weights needed here)."""
    path = run_dir / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    saved = {"hyper_parameters": hparams, "emoclip": {}, "optimizer_states": []}
    torch.save({**saved, "epoch": step // 5, "global_step": step}, path)
    return path


def test_ckpt_path_last_continues_skips_or_starts(tmp_path):
    cfg = compose_train(["ckpt_path=last"], tmp_path)
    assert plan_resume(cfg) == Resume(in_place=True)  # nothing yet: start from scratch, here
    checkpoint = fake_checkpoint(tmp_path, cfg)
    assert plan_resume(cfg) == Resume(str(checkpoint), global_step=9, in_place=True)
    (tmp_path / "metrics.json").write_text('{"val/f1_macro": 0.5}')
    assert plan_resume(cfg) == Resume(finished={"val/f1_macro": 0.5})


def test_a_run_folder_is_continued_in_place_and_a_file_in_a_new_folder(tmp_path):
    old = tmp_path / "old"
    checkpoint = fake_checkpoint(old, compose_train([], old))
    with initialize_config_dir(config_dir(), version_base="1.3"):
        by_folder = compose("train", [f"ckpt_path={old}"], return_hydra_config=True)
        by_file = compose("train", [f"ckpt_path={checkpoint}"], return_hydra_config=True)
    assert by_folder.hydra.run.dir == str(old)
    assert by_file.hydra.run.dir != str(old)
    cfg = compose_train([f"ckpt_path={old}"], tmp_path / "new")
    assert plan_resume(cfg) == Resume(str(checkpoint), global_step=9, in_place=False)


def test_resuming_another_study_names_the_differences(tmp_path):
    fake_checkpoint(tmp_path, compose_train([], tmp_path))
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- trainer.max_epochs=7\n")
    changed = [f"data.dataset.{split}_size=9" for split in ("train", "val", "test")]
    changed += ["model.optimizer.lr=0.5", "model.network.dropout=0.9", "seed=3", "monitor=val/acc"]
    cfg = compose_train(["ckpt_path=last", *changed], tmp_path)
    with pytest.raises(ConfigError) as refusal:
        plan_resume(cfg)
    message = str(refusal.value)
    for override in changed:  # every difference, not the first five
        key, value = override.split("=")
        assert re.search(rf"{re.escape(key)}: \S+ in the checkpoint, '?{re.escape(value)}", message)
    assert "The run's own overrides: trainer.max_epochs=7. Continue it with its own" in message
    assert f"emoclip-train trainer.max_epochs=7 ckpt_path={tmp_path}" in message
    # Where the data lives and the trainer may change; the study may not.
    moved = ["ckpt_path=last", "data.num_workers=2", "trainer.max_epochs=20"]
    assert plan_resume(compose_train(moved, tmp_path)).checkpoint is not None


def test_continuing_in_place_continues_from_the_newest_whole_checkpoint(tmp_path):
    cfg = compose_train(["ckpt_path=last"], tmp_path)
    fake_checkpoint(tmp_path, cfg, "best.ckpt", step=5)
    assert plan_resume(cfg).checkpoint == str(tmp_path / "checkpoints" / "best.ckpt")
    fake_checkpoint(tmp_path, cfg, "last.ckpt", step=5)  # a tie: last.ckpt
    assert plan_resume(cfg).checkpoint == str(tmp_path / "checkpoints" / "last.ckpt")
    fake_checkpoint(tmp_path, cfg, "interrupted.ckpt", step=8)  # Ctrl-C, mid-epoch
    assert plan_resume(cfg) == Resume(
        str(tmp_path / "checkpoints" / "interrupted.ckpt"), global_step=8, in_place=True
    )


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    cfg = compose_train([f"ckpt_path={tmp_path}/nope.ckpt"], tmp_path / "run")
    with pytest.raises(ConfigError, match="nope.ckpt"):
        plan_resume(cfg)


def test_moved_data_is_the_same_study_other_classes_are_not(tmp_path):
    """The location keys a data config's sources declare (data.root, paths.data_dir) may change
    between launches; what the data is may not."""
    study = ["data=ckplus_dair", "ckpt_path=last"]
    fake_checkpoint(tmp_path, compose_train([*study, "data.root.image=/old/ck"], tmp_path))
    moved = [*study, "data.root.image=/new/ck", "data.root.text=/new/dair", "data.data_dir=/d"]
    assert plan_resume(compose_train(moved, tmp_path)).checkpoint is not None
    other = [*study, "data.root.image=/old/ck", "data.classes=[anger,fear]"]
    with pytest.raises(ConfigError, match=r"data\.classes: \['anger'"):
        plan_resume(compose_train(other, tmp_path))
