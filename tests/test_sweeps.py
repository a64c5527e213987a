"""Hydra multiruns through the real entry point: sweeps over config groups, k-fold
cross-validation, Optuna searches, and relaunching an interrupted sweep."""

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUIET
from tests.test_entrypoints import run
from tests.test_run_folder import snapshot
from tests.test_sources import write_ckplus48

# debug=limit reads 3 training batches of 32: a set just that large (5 per class in val and
# test) keeps each job's drawing and evaluation as short as its training.
SWEEP_DATA = [
    "data.dataset.train_size=96",
    "data.dataset.val_size=35",
    "data.dataset.test_size=35",
]
TINY = ["debug=limit", "trainer.max_epochs=1", *SWEEP_DATA, *QUIET]


def jobs(sweep_dir: Path) -> dict[int, Path]:
    return {int(d.name): d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()}


def overrides(run_dir: Path) -> list[str]:
    return yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def trials(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "trials.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_multirun_across_models_and_seeds(tmp_path):
    result = run(
        "emoclip.train",
        "-m",
        "model=text_lstm,image_cnn",
        "seed=1,2",
        "logger=many",
        *TINY,
        f"paths.output_root={tmp_path}",  # the default sweep folder, under tmp_path/multirun
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()  # one sweep folder for every job
    # One sweep folder, beside the decoded-image cache that the jobs share (paths.cache_dir).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache", "multirun"]
    found = jobs(sweep)
    assert sorted(found) == list(range(4))
    combos = set()
    for job in found.values():
        given = overrides(job)
        model = next(o.split("=")[1] for o in given if o.startswith("model="))
        seed = next(o.split("=")[1] for o in given if o.startswith("seed="))
        combos.add((model, seed))
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert (config["model"]["name"], str(config["seed"])) == (model, seed)
        assert metrics(job)["test/acc"] >= 0
        assert "val/f1_macro" in (job / "metrics.csv").read_text()  # csv logger, its own file
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        assert json.loads((job / "versions.json").read_text())["torch"]
    assert len(combos) == 4
    table = trials(sweep)
    assert [int(row["number"]) for row in table] == list(range(4))
    for row in table:
        assert row["state"] == "finished"
        assert float(row["val/f1_macro"]) == metrics(found[int(row["number"])])["val/f1_macro"]


@pytest.mark.slow
def test_cross_validation_multirun_covers_each_subject_once(tmp_path):
    ck = write_ckplus48(tmp_path / "ck", subjects=6)
    sweep = tmp_path / "sweep"
    result = run(
        "emoclip.train",
        "-m",
        "model=image_cnn",
        "data=ckplus",
        f"data.root={ck}",
        "data.classes=[anger,happiness,sadness,surprise]",
        "data.num_folds=3",
        "data.fold=range(3)",
        "data.batch_size=16",
        "debug=limit",
        "trainer.max_epochs=1",
        *QUIET,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = jobs(sweep)
    assert sorted(found) == [0, 1, 2]
    test_subjects = []
    for job in found.values():
        splits = json.loads((job / "splits.json").read_text())
        test_subjects.append({Path(i).name[:4] for i in splits["test"]})
        assert not test_subjects[-1] & {Path(i).name[:4] for i in splits["train"]}
    assert not (test_subjects[0] & test_subjects[1] or test_subjects[1] & test_subjects[2])
    assert set().union(*test_subjects) == {f"S{s:03d}" for s in range(6)}
    assert sorted(row["data.fold"] for row in trials(sweep)) == ["0", "1", "2"]


@pytest.mark.slow
def test_optuna_search_writes_best_parameters_and_trials(tmp_path):
    sweep = tmp_path / "search"
    result = run(
        "emoclip.train",
        "-m",
        "hparams_search=image_cnn",
        "hydra.sweeper.n_trials=3",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = jobs(sweep)
    assert sorted(found) == [0, 1, 2]
    values = {n: metrics(job)["val/f1_macro"] for n, job in found.items()}
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(values.values()))
    best_params = {f"{key}={value}" for key, value in best["best_params"].items()}
    best_jobs = [n for n, job in found.items() if best_params <= set(overrides(job))]
    assert len(best_jobs) == 1 and values[best_jobs[0]] == best["best_value"]
    table = trials(sweep)
    assert len(table) == 3
    for row in table:
        assert float(row["val/f1_macro"]) == values[int(row["number"])]
        assert float(row["model.optimizer.lr"]) > 0 and row["model.network.dropout"]


@pytest.mark.slow
def test_interrupted_sweep_relaunched_skips_finished_jobs_and_resumes_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    launch = [
        "-m",
        "model=image_cnn",
        "trainer.max_epochs=1,2",
        "debug=limit",
        *SWEEP_DATA,
        *QUIET,
        "ckpt_path=last",
        f"hydra.sweep.dir={sweep}",
    ]
    # Job 0 (one epoch) finishes; job 1 dies as its second epoch starts.
    kill = ["+callbacks.kill._target_=tests.test_resume.KillAtEpoch", "+callbacks.kill.epoch=1"]
    first = run("emoclip.train", *launch, *kill)
    assert first.returncode != 0 and "killed at the start of epoch 1" in first.stderr
    finished = metrics(sweep / "0")
    finished_at = (sweep / "0" / "metrics.json").stat().st_mtime_ns
    assert metrics(sweep / "1")["status"] == "failed"  # raised (not SIGKILLed): marked

    # Job 1's checkpoint names the test-only callback: allowed by name, as a user's own code.
    again = run("emoclip.train", *launch, "allow_targets=[tests]")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == finished_at
    assert metrics(sweep / "0") == finished
    log = (sweep / "1" / "train.log").read_text()
    assert (
        f"continuing from {sweep / '1' / 'checkpoints' / 'last.ckpt'} (after epoch 1; global step"
        in log
    )
    assert "holds a finished run" in (sweep / "0" / "train.log").read_text()
    resumed = metrics(sweep / "1")
    assert [row["state"] for row in trials(sweep)] == ["finished", "finished"]
    assert float(trials(sweep)[1]["val/f1_macro"]) == resumed["val/f1_macro"]


@pytest.mark.slow
def test_a_refused_sweep_relaunch_changes_nothing_in_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    launch = [
        "-m",
        "model=text_lstm",
        "seed=1,2",
        *TINY,
        "ckpt_path=last",
        f"hydra.sweep.dir={sweep}",
    ]
    first = run("emoclip.train", *launch)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {n: snapshot(job) for n, job in jobs(sweep).items()}
    assert ".hydra/config.yaml" in before[0] and "metrics.json" in before[1]

    refused = run("emoclip.train", *launch, "model.optimizer.lr=0.5")  # another study
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert re.search(r"\(model\.optimizer\.lr: [\d.e-]+ in the checkpoint, 0\.5 now\)", message)
    assert "The run's own overrides: model=text_lstm seed=1 " in message
    assert "Continue it with its own overrides: emoclip-train model=text_lstm seed=1 " in message
    after = {n: snapshot(job) for n, job in jobs(sweep).items()}
    for n in before:  # only train.log may grow (the console of the refused launch), never lose
        old_log, new_log = before[n].pop("train.log", (b"", 0)), after[n].pop("train.log", (b"", 0))
        assert new_log[0].startswith(old_log[0]), n
    assert after == before
