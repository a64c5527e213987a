"""The real entry points, as a user runs them: `python -m emoclip.train` and `emoclip-eval`."""

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import QUIET, SMALL_DATA


def run(module: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.parametrize("model", ["clip_fusion", "text_lstm", "image_cnn"])
def test_fast_dev_run_each_model(model, tmp_path):
    result = run("emoclip.train", f"model={model}", "debug=fdr", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test: acc" in result.stdout
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"val/acc", "val/f1_macro", "test/acc", "test/f1_macro"} <= metrics.keys()


def test_train_then_eval_writes_the_run_folder(tmp_path):
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    result = run(
        "emoclip.train",
        "model=text_lstm",
        "trainer.max_epochs=2",
        *SMALL_DATA,
        *QUIET,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"run folder: {run_dir.resolve()}" in result.stdout
    assert "test: acc" in result.stdout and "f1_macro" in result.stdout
    for name in (
        ".hydra/config.yaml",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics.json",
        "metrics.csv",
        "splits.json",
        "plots/curves.png",
        "plots/confusion_test.png",
    ):
        assert (run_dir / name).is_file(), name
    for plot in ("curves.png", "confusion_test.png"):
        with Image.open(run_dir / "plots" / plot) as img:
            assert img.width > 300 and img.height > 200
    trained = json.loads((run_dir / "metrics.json").read_text())

    result = run(
        "emoclip.evaluate",
        f"ckpt_path={run_dir}/checkpoints/best.ckpt",
        f"hydra.run.dir={eval_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert evaluated["test/confusion_matrix"] == trained["test/confusion_matrix"]
    assert (eval_dir / "plots" / "confusion_test.png").is_file()


def test_console_scripts_are_installed():
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts")}
    for name in ("train", "eval", "report", "explain", "predict"):
        assert callable(scripts[f"emoclip-{name}"].load())
    bin_dir = Path(sys.executable).parent
    for script in ("emoclip-train", "emoclip-eval"):
        result = subprocess.run([bin_dir / script, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{script}: "), result.stdout[:200]  # emoclip's own help


def test_bad_override_fails_before_any_work(tmp_path):
    result = run("emoclip.train", "model=no_such_model", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode != 0
    assert "Could not find 'model/no_such_model'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    result = run("emoclip.evaluate", f"ckpt_path={tmp_path}/nope.ckpt", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert "nope.ckpt" in result.stderr and "Traceback" not in result.stderr
