"""Lightning DDP on CPU (gloo, two processes) through the real entry point, and the SLURM
launcher config (SLURM itself cannot run here)."""

import json
import os
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from emoclip.study.build import config_dir
from tests.conftest import QUIET, REPO, SMALL_DATA

DDP_ON_CPU = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
]


def run_in(cwd, *overrides):
    return subprocess.run(
        [sys.executable, "-m", "emoclip.train", *overrides],
        capture_output=True,
        text=True,
        cwd=cwd,
        # The processes Lightning starts run from cwd too: emoclip and the tests must import.
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
        timeout=600,
    )


@pytest.mark.slow  # starts two or more processes: kept out of make test-fast
def test_two_process_ddp_writes_one_run_folder_with_synced_metrics(tmp_path):
    result = run_in(
        tmp_path,
        *DDP_ON_CPU,
        "debug=limit",
        "trainer.max_epochs=1",
        "data.eval_batch_size=36",
        *SMALL_DATA,
        # Odd sizes: 71 and 70 examples a rank, each scored once (no repeat to even them out).
        "data.dataset.val_size=141",
        "data.dataset.test_size=141",
        *QUIET,
        "hydra.run.dir=run",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    # No second run folder; outputs/.cache (paths.cache_dir) holds the decoded store.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs", "run"]
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == [".cache"]
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Each rank saw half of each split (2 batches of at most 36): the metrics cover all 141.
    for stage in ("val", "test"):
        assert sum(map(sum, metrics[f"{stage}/confusion_matrix"])) == 141
    assert "DistributedSampler" not in result.stdout + result.stderr
    rank1 = (run_dir / "train_ddp_process_1.log").read_text()
    assert "rank 1 (rank 0 writes the run folder)" in rank1
    for stage in ("val", "test", "test_text_only", "test_image_only"):
        line = re.search(rf"^{stage}: acc (\S+)  f1_macro (\S+)  loss (\S+)$", rank1, re.M)
        keys = ("acc", "f1_macro", "loss")
        assert line, f"rank 1 logged no {stage} line"
        assert line.groups() == tuple(f"{metrics[f'{stage}/{k}']:.4f}" for k in keys)
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert json.loads((run_dir / "versions.json").read_text())["lightning"]


@pytest.mark.slow  # starts two or more processes: kept out of make test-fast
def test_ddp_in_a_local_multirun_is_refused_clearly(tmp_path):
    result = run_in(tmp_path, "-m", *DDP_ON_CPU, "seed=1,2", "debug=fdr", "hydra.sweep.dir=s")
    assert result.returncode != 0
    assert "cannot run inside a local multirun" in result.stderr
    assert "Traceback" not in result.stderr


def test_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.max_num_timeout > 0
    assert launcher.submitit_folder.startswith(cfg.hydra.sweep.dir)
    assert cfg.trainer.strategy == "ddp"
