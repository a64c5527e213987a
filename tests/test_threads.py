"""emoclip's thread count follows the CPUs this process may use (emoclip/system/threads.py)."""

import logging

import pytest
import torch
from omegaconf import OmegaConf

from emoclip.errors import ConfigError
from emoclip.system import threads


@pytest.fixture
def no_limits(monkeypatch, tmp_path):
    """No OMP_NUM_THREADS, no SLURM, no cgroup quota: only what each test sets."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(threads, "CGROUP", tmp_path)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)))
    yield tmp_path
    torch.set_num_threads(1)


def test_the_thread_count_follows_the_affinity_mask(no_limits, monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert threads.choose_threads() == (3, "the CPUs this process may use (affinity)")


def test_slurm_cpus_per_task_limits_it(no_limits, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert threads.choose_threads()[0] == 2


def test_a_cgroup_quota_limits_it_rounded_up(no_limits):
    (no_limits / "cpu.max").write_text("250000 100000\n")
    assert threads.available_cpus() == (3, "cgroup quota")
    (no_limits / "cpu.max").write_text("max 100000\n")
    assert threads.available_cpus() == (16, "affinity")


def test_omp_num_threads_and_trainer_threads_win(no_limits, monkeypatch, caplog):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.choose_threads() == (5, "OMP_NUM_THREADS")
    cfg = OmegaConf.create(
        {"trainer": {"max_epochs": 1, "threads": 2}, "data": {"num_workers": None}}
    )
    OmegaConf.set_struct(cfg, True)
    with caplog.at_level(logging.INFO):
        assert threads.configure(cfg) == 2
    assert torch.get_num_threads() == 2
    assert "threads" not in cfg.trainer  # Lightning's Trainer never sees it
    lines = [r.getMessage() for r in caplog.records if r.name == "emoclip.system.threads"]
    assert lines == [
        "torch threads: 2, from trainer.threads; DataLoader workers: 4 (from the CPUs)"
    ]
    with pytest.raises(ConfigError, match="trainer.threads=0"):
        threads.choose_threads(0)


def test_dataloader_workers_default_from_the_cpus():
    assert [threads.default_workers(n) for n in (1, 2, 3, 4, 16, 64)] == [0, 0, 0, 1, 4, 4]
