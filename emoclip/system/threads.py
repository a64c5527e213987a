"""How many CPU threads a run uses: the CPUs this process may use, not the machine's.

torch's default (one intra-op thread per core of the machine) oversubscribes a shared machine
or a container with a CPU quota: a text LSTM on a 2-core share ran 35x slower. emoclip sets
torch's intra-op threads to, in order of precedence:

1. `trainer.threads=N` (removed from the trainer config before Lightning sees it);
2. an explicit `OMP_NUM_THREADS` in the environment;
3. the fewest CPUs among: this process's affinity mask (os.sched_getaffinity: taskset, cpusets),
   the cgroup CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, rounded up), and
   SLURM_CPUS_PER_TASK;

and says so in one log line. `data.num_workers` left null gets DataLoader workers from the same
count: none below 4 CPUs (batches are tensors already in memory; workers would compete with
the training threads), else a quarter of them, at most 4.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

CGROUP = Path("/sys/fs/cgroup")
# data.num_workers=null: worker processes only for a training split at least this large.
WORKERS_FROM = 5_000


def cgroup_quota(root: Path | None = None) -> float | None:
    """CPUs allowed by the cgroup's quota (v2, else v1), or None for no quota."""
    root = root or CGROUP
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus() -> tuple[int, str]:
    """The CPUs this process may use, and what limited them."""
    limits: dict[str, int] = {}
    if hasattr(os, "sched_getaffinity"):
        limits["affinity"] = len(os.sched_getaffinity(0))
    else:
        limits["cpu_count"] = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        limits["cgroup quota"] = max(1, math.ceil(quota))
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        limits["SLURM_CPUS_PER_TASK"] = int(slurm)
    source = min(limits, key=limits.get)
    return limits[source], source


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """The intra-op thread count and why: trainer.threads, OMP_NUM_THREADS, else the CPUs."""
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            from emoclip.errors import ConfigError

            raise ConfigError(f"trainer.threads={requested!r}: expected a whole number >= 1")
        return requested, "trainer.threads"
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    n, source = available_cpus()
    return n, f"the CPUs this process may use ({source})"


def default_workers(cpus: int | None = None, train_size: int | None = None) -> int:
    """DataLoader workers for a null data.num_workers: none for a training split under
    WORKERS_FROM examples (a batch assembles from memory or the mapped store in microseconds,
    faster than workers start) or below 4 CPUs (workers would compete with the training
    threads), else a quarter of the CPUs, at most 4."""
    if train_size is not None and train_size < WORKERS_FROM:
        return 0
    cpus = available_cpus()[0] if cpus is None else cpus
    return 0 if cpus < 4 else min(4, cpus // 4)


def take_threads_key(cfg: DictConfig) -> int | None:
    """Remove `trainer.threads` from the config (Lightning's Trainer has no such argument) and
    return it."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig) or "threads" not in trainer:
        return None
    with open_dict(trainer):
        return trainer.pop("threads")


def configure(cfg: DictConfig) -> int:
    """Set torch's intra-op threads for this run, with one log line; take `trainer.threads`
    out of the trainer config. Returns the thread count."""
    import torch

    threads, why = choose_threads(take_threads_key(cfg))
    torch.set_num_threads(threads)
    data = cfg.get("data")
    workers = data.get("num_workers") if isinstance(data, DictConfig) else None
    shown = (
        f"{default_workers(available_cpus()[0])} (from the CPUs)" if workers is None else workers
    )
    # Entries without a trainer (emoclip-predict) print their results on stdout, first.
    level = logging.INFO if cfg.get("trainer") is not None else logging.DEBUG
    log.log(level, "torch threads: %d, from %s; DataLoader workers: %s", threads, why, shown)
    return threads
