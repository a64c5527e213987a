"""Run folders: a new run never writes into an earlier one, even started in the same second;
versions.json records what produced it; a folder never describes something else than its run
(stale checkpoints, another run's files, a refused command's config, a half-written
metrics.json, an unfinished or diverged run taken for a finished one)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import hydra.core.utils
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import emoclip.runs.run_folder
import emoclip.system.atomic
import emoclip.system.checkpoint_io
from emoclip.cli.entry import run_reporting_errors
from emoclip.errors import ConfigError, RunFolderError, WriteError
from emoclip.evaluate import evaluate
from emoclip.report import main as report_main
from emoclip.runs.run_folder import (
    claim_new_dir,
    git_commit,
    lock_folder,
    release_lock,
    run_status,
    versions,
    write_results,
    write_versions,
)
from emoclip.study.build import config_dir
from emoclip.study.resume import plan_resume
from emoclip.system.checkpoint_io import file_sha256, load_checkpoint_file
from emoclip.train import train
from tests.conftest import REPO, compose_train
from tests.test_entrypoints import run
from tests.test_faults import TINY  # 5 batches an epoch, a second or two an epoch


class FrozenClock(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5)


def run_dir_of_a_new_run(output_root: Path) -> Path:
    """hydra.run.dir as Hydra resolves it when a run starts (twice, as Hydra does)."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["model=text_lstm", f"paths.output_root={output_root}"],
            return_hydra_config=True,
        )
    first = cfg.hydra.run.dir
    assert cfg.hydra.run.dir == first  # one run, one folder
    return Path(first)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(hydra.core.utils, "datetime", FrozenClock)
    earlier = tmp_path / "2026-01-02" / "03-04-05_text_lstm_synthetic"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("{}")

    first, second = run_dir_of_a_new_run(tmp_path), run_dir_of_a_new_run(tmp_path)
    assert first == earlier.with_name(earlier.name + "_2")
    assert second == earlier.with_name(earlier.name + "_3")
    assert first.is_dir() and second.is_dir()
    assert [p.name for p in earlier.iterdir()] == ["metrics.json"]


def test_concurrent_claims_of_one_name_get_distinct_folders(tmp_path):
    claimed: list[str] = []
    base = str(tmp_path / "12-00-00_run")
    threads = [
        threading.Thread(target=lambda: claimed.append(claim_new_dir(base))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(claimed)) == 8
    assert sorted(Path(c).name for c in claimed) == sorted(
        ["12-00-00_run", *(f"12-00-00_run_{n}" for n in range(2, 9))]
    )


def test_versions_name_the_libraries_and_the_commit(tmp_path):
    write_versions(tmp_path)
    found = json.loads((tmp_path / "versions.json").read_text())
    assert found == versions()
    for package in ("python", "emoclip", "torch", "lightning", "transformers", "hydra-core"):
        assert found[package], package
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True)
    assert found["git_commit"] == head.stdout.decode().strip()
    assert isinstance(found["git_dirty"], bool)


def test_no_commit_outside_a_git_checkout(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("")
    assert git_commit(source) == {"git_commit": None, "git_dirty": None}


# ---------------------------------------------------------------- a run folder never lies

KILL = ["+callbacks.kill._target_=tests.test_resume.KillAtEpoch", "+callbacks.kill.epoch=1"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under folder: its content and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_run_resumed_before_its_first_last_ckpt_leaves_no_v1_files(tmp_path):
    """Killed after its first best.ckpt but before its first last.ckpt, then resumed: it
    continues from best.ckpt; no best-v1.ckpt, and metrics.json names the file it describes."""
    run_dir = tmp_path / "run"
    no_last = ["callbacks.last_checkpoint=null", "trainer.max_epochs=3"]
    with pytest.raises(RuntimeError, match="killed at the start of epoch 1"):
        train(compose_train([*TINY, *no_last, *KILL], run_dir))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt"]

    resume = ["trainer.max_epochs=3", "ckpt_path=last", "allow_targets=[tests]"]
    metrics = train(compose_train([*TINY, *resume], run_dir))
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]  # never best-v1.ckpt
    best = run_dir / "checkpoints" / "best.ckpt"
    saved = load_checkpoint_file(best)
    assert metrics["status"] == "finished" and metrics["fast_dev_run"] is False
    assert metrics["checkpoint"] == {
        "file": "checkpoints/best.ckpt",
        "epoch": saved["epoch"] + 1,  # counted from 1
        "global_step": saved["global_step"],
        "sha256": file_sha256(best),
    }
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert [row["epoch"] for row in saved["emoclip"]["history"]][0] == 1  # one run, continued


def test_eval_says_when_a_run_folders_metrics_describe_another_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(compose_train([*TINY, "trainer.max_epochs=2"], run_dir))
    best = run_dir / "checkpoints" / "best.ckpt"
    recorded = json.loads((run_dir / "metrics.json").read_text())["checkpoint"]

    def evaluate_best(out: str) -> str:
        with initialize_config_dir(config_dir(), version_base="1.3"):
            cfg = compose("eval", [f"ckpt_path={best}", f"paths.output_dir={tmp_path / out}"])
        evaluated = evaluate(cfg)
        assert evaluated["checkpoint"]["sha256"] == file_sha256(best)
        return capsys.readouterr().out

    assert "note:" not in evaluate_best("eval_1")  # the file metrics.json describes
    other = load_checkpoint_file(best)  # best.ckpt written over with other weights
    for tensor in other["state_dict"].values():
        tensor.add_(0.01)
    torch.save(other, best)
    note = evaluate_best("eval_2")
    assert (
        f"note: {run_dir / 'metrics.json'} describes checkpoints/best.ckpt at epoch "
        f"{recorded['epoch']} (sha256 {recorded['sha256'][:12]}), not this file "
        f"(checkpoints/best.ckpt at epoch {other['epoch'] + 1}, sha256 {file_sha256(best)[:12]})"
    ) in note


def finished_run_folder(run_dir: Path, overrides: list[str]) -> Path:
    """A run folder as a finished run leaves it (its config, overrides, checkpoint, metrics)."""
    cfg = compose_train(overrides, run_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "checkpoints").mkdir()
    hparams = OmegaConf.to_container(cfg, resolve=True)
    checkpoint = {"hyper_parameters": hparams, "emoclip": {}, "optimizer_states": []}
    torch.save({**checkpoint, "epoch": 3, "global_step": 20}, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "metrics.json").write_text(json.dumps({"status": "finished", "test/acc": 0.5}))
    return run_dir


def test_a_folder_that_holds_a_run_is_never_written_by_another(tmp_path):
    run_dir = finished_run_folder(tmp_path / "run", ["model=text_lstm"])
    before = snapshot(run_dir)
    with pytest.raises(RunFolderError, match=r"already holds a run \(finished\).*emoclip-eval"):
        train(compose_train(["model=text_lstm"], run_dir))
    assert snapshot(run_dir) == before

    (run_dir / "metrics.json").unlink()  # killed: unfinished
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["model=text_lstm", "+note=$(touch pwned) it's"])
    )
    before = snapshot(run_dir)
    with pytest.raises(RunFolderError) as refusal:
        train(compose_train(["model=text_lstm"], run_dir))
    # The overrides file is untrusted: only the study's own keys with literal values are
    # printed for the user to paste, never an addition (+), a shell substitution or trust.
    command = f"emoclip-train model=text_lstm ckpt_path={run_dir} (left out: 1 of its overrides"
    assert "already holds a run (unfinished)" in str(refusal.value)
    assert f"To continue it: {command}" in str(refusal.value)
    assert "pwned" not in str(refusal.value)
    assert snapshot(run_dir) == before


def test_a_second_run_into_a_locked_folder_is_refused_at_once(tmp_path):
    run_dir = tmp_path / "run"
    lock = lock_folder(run_dir)  # as a run that is writing the folder holds it
    try:
        start = time.monotonic()
        with pytest.raises(SystemExit) as refusal:
            run_reporting_errors(lambda: train(compose_train(TINY, run_dir)))
        assert time.monotonic() - start < 10
        message = str(refusal.value)
        assert "\n" not in message
        assert message.startswith(f"emoclip: {run_dir} is being written by another run (pid ")
        assert [p.name for p in run_dir.iterdir()] == [".lock"]
    finally:
        release_lock(lock)
    train(compose_train([*TINY, "debug=fdr"], run_dir))  # free again once released


def test_an_unreadable_metrics_json_is_an_unfinished_run(tmp_path):
    run_dir = finished_run_folder(tmp_path / "sweep" / "0", ["model=text_lstm"])
    (run_dir / "metrics.json").write_text("")  # a full disk under a plain write
    assert run_status(run_dir) == "unfinished"
    cfg = compose_train(["model=text_lstm", "ckpt_path=last"], run_dir)
    resume = plan_resume(cfg)
    assert resume.checkpoint == str(run_dir / "checkpoints" / "last.ckpt")  # continued
    finished = finished_run_folder(tmp_path / "sweep" / "1", ["model=text_lstm"])
    metrics = {"status": "finished", "classes": ["a", "b"], "test/acc": 0.5, "test/f1_macro": 0.4}
    (finished / "metrics.json").write_text(json.dumps(metrics))
    interrupted = finished_run_folder(tmp_path / "sweep" / "2", ["model=text_lstm"])
    (interrupted / "metrics.json").write_text(json.dumps({"status": "interrupted", "val/acc": 1}))
    report_main([str(tmp_path / "sweep")])  # reports the finished one, lists the others
    assert (
        str(run_dir.relative_to(tmp_path / "sweep"))
        in (tmp_path / "sweep" / "report.md").read_text()
    )


def test_metrics_json_is_written_last_and_whole(tmp_path, monkeypatch):
    written = []
    real = emoclip.runs.run_folder.write_atomically
    monkeypatch.setattr(
        emoclip.runs.run_folder,
        "write_atomically",
        lambda p, c: (written.append(p.name), real(p, c)),
    )
    results = {"test": {"test/acc": 0.5, "test/confusion_matrix": [[1, 0], [0, 1]]}}
    write_results(tmp_path, ["a", "b"], results, [{"epoch": 0, "val/acc": 0.5}], {"test": ["x"]})
    assert written[-1] == "metrics.json" and "splits.json" in written
    previous = (tmp_path / "metrics.json").read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(emoclip.system.atomic.os, "fsync", full_disk)
    with pytest.raises(WriteError, match=f"^cannot write {tmp_path / 'metrics.json'}: No space"):
        write_results(tmp_path, ["a", "b"], {"test": {"test/acc": 0.9}}, extra={"x": 1})
    assert (tmp_path / "metrics.json").read_bytes() == previous  # not 0 bytes, not half
    assert not list(tmp_path.glob(".*.partial"))


def test_a_command_that_fails_before_training_leaves_no_folder(tmp_path):
    result = run(
        "emoclip.train",
        "model=image_cnn",
        "data=ckplus",
        f"data.root={tmp_path / 'no_such_folder'}",
        f"paths.output_root={tmp_path / 'outputs'}",
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "emoclip: " in result.stderr and "no_such_folder" in result.stderr
    assert not list((tmp_path / "outputs").rglob("*_image_cnn_ckplus*"))  # claimed, then removed


def test_ckpt_path_last_without_a_run_folder_says_how_to_name_one(tmp_path):
    result = run("emoclip.train", "ckpt_path=last", f"paths.output_root={tmp_path / 'outputs'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("emoclip: ckpt_path=last continues the run in the folder")
    assert "add hydra.run.dir=<the run folder>" in last_line
    assert not list((tmp_path / "outputs").rglob("*_fusion_clip_clip_*"))


def test_max_epochs_0_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=0: nothing would be trained"):
        train(compose_train([*TINY, "trainer.max_epochs=0"], tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_an_exploding_loss_stops_the_run_as_diverged(tmp_path):
    run_dir = tmp_path / "run"
    exploding = ["model.optimizer.lr=1000", "trainer.max_epochs=3", "callbacks.early_stopping=null"]
    with pytest.raises(SystemExit) as stop:
        run_reporting_errors(lambda: train(compose_train([*TINY, *exploding], run_dir)))
    message = str(stop.value)
    assert re.match(
        r"^emoclip: the training loss became \S+(, more than 100 times the \S+ "
        r"training started from)? at epoch \d, batch \d",
        message,
    ), message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert f"at epoch {metrics['epoch']}, batch {metrics['batch']}" in message


def test_a_full_disk_ends_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real_save = torch.save

    def save_then_fill_the_disk(obj, file, *args, **kwargs):
        if obj.get("epoch", 0) >= 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(emoclip.system.checkpoint_io.torch, "save", save_then_fill_the_disk)
    cfg = compose_train([*TINY, "trainer.max_epochs=2"], run_dir)
    with pytest.raises(SystemExit) as stop:
        run_reporting_errors(lambda: train(cfg))
    message = str(stop.value)
    assert "\n" not in message
    assert re.match(
        rf"^emoclip: cannot write {run_dir}/checkpoints/\w+\.ckpt: No space left on device "
        r"\(the previous file is kept\)$",
        message,
    ), message
    assert load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 0
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"


def test_a_read_only_run_folder_ends_in_one_line(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    real_open, real_os_open = open, os.open

    def refuse(path):
        if Path(path).resolve().is_relative_to(run_dir):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wxa+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def read_only_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only_open)
    monkeypatch.setattr(os, "open", read_only_os_open)
    with pytest.raises(SystemExit) as stop:
        run_reporting_errors(lambda: train(compose_train(TINY, run_dir)))
    assert re.match(
        rf"^emoclip: cannot write {run_dir}/\S+: Read-only file system$", str(stop.value)
    )
    assert list(run_dir.iterdir()) == []
