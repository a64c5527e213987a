"""Run folders from elsewhere, and moved ones: a run continued in a moved or copied folder, or
under an outputs/ that is a symbolic link, continues exactly as in place; a folder's links are
never followed; a refused command writes nothing anywhere."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from emoclip.errors import RunFolderError
from emoclip.train import train
from tests.conftest import compose_train
from tests.test_faults import TINY


def test_a_moved_run_folder_continues_with_its_best_score_and_its_own_best_ckpt(tmp_path):
    first = tmp_path / "first"
    train(compose_train([*TINY, "trainer.max_epochs=2"], first))
    (first / "metrics.json").unlink()  # as if killed after its second epoch
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)  # the old folder is gone: nothing may point there
    metrics = train(compose_train([*TINY, "trainer.max_epochs=4", f"ckpt_path={moved}"], moved))
    assert metrics["status"] == "finished"
    assert metrics["checkpoint"]["file"] == "checkpoints/best.ckpt"
    last = torch.load(moved / "checkpoints" / "last.ckpt", weights_only=True)
    # The key Lightning's ModelCheckpoint gives, so runs of either class continue.
    (state,) = [
        v
        for k, v in last["callbacks"].items()
        if k.startswith("ModelCheckpoint{'monitor': 'val/f1_macro'")
    ]
    assert state["dirpath"] == str((moved / "checkpoints").resolve())
    assert state["best_model_path"] == str((moved / "checkpoints" / "best.ckpt").resolve())
    # The best of all four epochs, the two before the move included, is best.ckpt.
    scores = [row["val/f1_macro"] for row in metrics["history"]]
    assert len(scores) == 4
    assert state["best_model_score"] == pytest.approx(max(scores), abs=1e-6)
    best = torch.load(moved / "checkpoints" / "best.ckpt", weights_only=True, mmap=True)
    assert best["epoch"] == scores.index(max(scores))


def test_a_run_under_an_outputs_folder_that_is_a_link_finishes(tmp_path):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "outputs").symlink_to(tmp_path / "scratch")
    metrics = train(compose_train([*TINY, "trainer.max_epochs=1"], tmp_path / "outputs" / "run"))
    assert metrics["status"] == "finished"
    assert metrics["checkpoint"]["file"] == "checkpoints/best.ckpt"


def test_links_in_a_run_folder_are_never_written_through(tmp_path):
    """A folder from elsewhere whose .lock or train.log points at the user's files: refused,
    and the files they point at are untouched."""
    precious = tmp_path / "precious.txt"
    precious.write_text("mine\n")
    for name in (".lock", "train.log"):
        run_dir = tmp_path / f"run_{name.strip('.')}"
        run_dir.mkdir()
        (run_dir / name).symlink_to(precious)
        with pytest.raises(RunFolderError, match="is a symbolic link"):
            train(compose_train([*TINY, "trainer.max_epochs=1"], run_dir))
        assert precious.read_text() == "mine\n"
        assert sorted(p.name for p in run_dir.iterdir()) == [name]


def test_the_printed_continue_command_repeats_no_trust_and_no_payload(tmp_path):
    from emoclip.runs.run_folder import continue_command

    (tmp_path / ".hydra").mkdir()
    planted = [
        "model=text_lstm",
        "trainer.max_epochs=7",
        "trust_config=true",
        "allow_targets=[x]",
        "+callbacks.x._target_=os.system",
        "model.network._target_=mylab.Net",
        "hydra.run.dir=/tmp",
        "data.root=${oc.env:SECRET}",
        "~callbacks.early_stopping",
        "data.label_map={a: b}",
        "'data.root=$(rm -rf ~)'",
    ]
    (tmp_path / ".hydra" / "overrides.yaml").write_text(json.dumps(planted))
    command = continue_command(tmp_path)
    assert command.startswith(
        f"emoclip-train model=text_lstm trainer.max_epochs=7 ckpt_path={tmp_path}"
    )
    for word in ("trust_config", "allow_targets", "_target_", "hydra.", "${", "~", "{", "$("):
        assert word not in command.split(" (left out")[0]
    assert "(left out: 9 of its overrides" in command


def test_a_run_folder_alone_is_enough_to_continue_it(tmp_path):
    """`emoclip-train ckpt_path=<run folder>` with nothing else: the study (model, data, the
    trainer's settings) comes from the folder's own checkpoint, through the same reader."""
    from tests.test_entrypoints import run

    run_dir = tmp_path / "run"
    started = run("emoclip.train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert started.returncode == 0, started.stderr[-2000:]
    (run_dir / "metrics.json").unlink()  # as if killed after its last checkpoint
    continued = run("emoclip.train", f"ckpt_path={run_dir}")
    assert continued.returncode == 0, continued.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "name: text_lstm" in config and "max_epochs: 2" in config


def test_a_full_disk_inside_torchs_zip_writer_is_one_line(tmp_path, monkeypatch):
    """torch's zip writer raises RuntimeError on ENOSPC: said as the disk being full, and the
    previous checkpoint is kept whole."""
    from emoclip.errors import WriteError
    from emoclip.system import checkpoint_io

    path = tmp_path / "last.ckpt"
    checkpoint_io.save_atomically({"epoch": 0}, path)

    def full(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0 file write failed"
        )

    monkeypatch.setattr(checkpoint_io.torch, "save", full)
    monkeypatch.setattr(
        checkpoint_io.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 0)
    )
    with pytest.raises(
        WriteError, match=r"cannot write .*last.ckpt: No space left on device \(disk full"
    ):
        checkpoint_io.save_atomically({"epoch": 1}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no .partial left


def test_partial_files_left_by_a_kill_are_removed_and_a_negative_lr_is_one_line(tmp_path):
    from emoclip.errors import ConfigError

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    leftover = run_dir / "checkpoints" / ".last.ckpt.0123abcd.partial"
    leftover.write_bytes(b"half a checkpoint")
    train(compose_train([*TINY, "trainer.max_epochs=1"], run_dir))
    assert not leftover.exists()
    with pytest.raises(
        ConfigError, match=r"model.optimizer.lr=-1: expected a learning rate above 0"
    ):
        train(compose_train([*TINY, "model.optimizer.lr=-1"], tmp_path / "negative"))
    assert not (tmp_path / "negative").exists()


@pytest.mark.parametrize("where", ["paths.output_root", "hydra.run.dir"])
def test_a_run_folder_that_cannot_be_created_is_one_line(where, tmp_path):
    from tests.test_entrypoints import run

    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder\n")
    result = run("emoclip.train", f"{where}={blocked}/run", "debug=fdr")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"emoclip: cannot create the run folder {blocked}/")


def test_predict_refuses_a_csv_with_a_repeated_column(tmp_path):
    from emoclip.errors import DataError
    from emoclip.predict import read_input_csv

    table = tmp_path / "inputs.csv"
    table.write_text("text,label,text\nhello,joy,goodbye\n")
    with pytest.raises(
        DataError, match=r"inputs.csv:1: the input csv names the column 'text' more"
    ):
        read_input_csv(table, ["text"])


def test_a_truncated_last_ckpt_gives_way_to_the_next_whole_checkpoint(tmp_path, caplog):
    from emoclip.study.resume import plan_resume

    run_dir = tmp_path / "run"
    train(compose_train([*TINY, "trainer.max_epochs=2"], run_dir))
    (run_dir / "metrics.json").unlink()
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    resume = plan_resume(compose_train([*TINY, "trainer.max_epochs=2", "ckpt_path=last"], run_dir))
    assert resume.checkpoint == str(run_dir / "checkpoints" / "best.ckpt")
    assert "continuing from the run's next whole checkpoint" in caplog.text
