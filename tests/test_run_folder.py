"""Run folders: a new run never writes into an earlier one, even started in the same second;
versions.json records what produced it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import threading
from pathlib import Path

import hydra.core.utils
import pytest
from hydra import compose, initialize_config_dir

from emoclip.run_folder import claim_new_dir, git_commit, versions, write_versions
from emoclip.study import config_dir
from tests.conftest import REPO


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
