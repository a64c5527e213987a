"""Training batches that a checkpoint can continue mid-epoch, exactly (Ctrl-C, then ckpt_path=last).

A run stopped after batch k of an epoch and resumed from its checkpoint must see batches k, k+1,
... of that epoch's order, with the random generators (dropout) where they stood as batch k
started: then it ends bit-equal (on CPU) to a run that went straight through. Augmentation
draws from no shared generator: each example's is seeded by the run's seed, the epoch and its
index (emoclip.data.images.augment), which the sampler hands on as (index, epoch).

- `ResumableSampler` wraps a sampler whose order is fixed by its state (an epoch, a seed): its
  `state_dict` holds that order's state, and one loaded with `resume_at` skips the batches
  already trained on. It deals with indices (and epochs) only.
- `ShuffleSampler` is torch's RandomSampler (a seed drawn from torch's global generator as each
  epoch starts, so a run's orders are those it had before) with the drawn seed kept.
- `ResumableLoader` is the training DataLoader: Lightning saves its `state_dict` in checkpoints
  (loops.fit_loop.combined_loader) and hands it back on resume. The state says how many batches
  of the epoch Lightning counts as done and the random states as the next one started.

Not exact under DDP (Lightning's distributed sampler wraps this one): the epoch then restarts
from its first batch, as Lightning's resume of a plain DataLoader does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from emoclip.system.training_state import rng_states, set_rng_states


class ShuffleSampler(Sampler[int]):
    """A random order per epoch, from a seed drawn from torch's global generator as the epoch
    starts (as torch's RandomSampler draws it); `state_dict` keeps the seed drawn."""

    def __init__(self, size: int):
        self.size = size
        self.seed: int | None = None  # this epoch's, once drawn
        self._given_seed: int | None = None  # loaded: the next epoch uses it instead

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        seed, self._given_seed = self._given_seed, None
        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.seed = seed
        yield from torch.randperm(self.size, generator=torch.Generator().manual_seed(seed)).tolist()

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self._given_seed = state.get("seed")


class ResumableSampler(Sampler):
    """Another sampler's items, from a chosen place in a chosen epoch's order on, each as
    (index, epoch)."""

    def __init__(self, inner: Sampler):
        self.inner, self.epoch = inner, 0
        self._resume: dict | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator:
        resume, self._resume = self._resume, None
        skip = 0
        if resume is not None and resume["epoch"] == self.epoch:
            if hasattr(self.inner, "load_state_dict"):
                self.inner.load_state_dict(resume["order"])
            skip = resume["items"]
        for position, item in enumerate(self.inner):
            if position >= skip:
                # (index, epoch): the epoch seeds the example's augmentation
                yield item if isinstance(item, tuple) else (item, self.epoch)

    def state_dict(self, items_done: int) -> dict:
        order = self.inner.state_dict() if hasattr(self.inner, "state_dict") else {}
        return {"epoch": self.epoch, "items": items_done, "order": order}

    def resume_at(self, state: dict) -> None:
        """The next iteration, if it is of `state`'s epoch, continues where `state` stood."""
        self._resume = state


class ResumableLoader(DataLoader):
    """A training DataLoader (its sampler a ResumableSampler) whose checkpointed state continues
    an epoch where it stopped. `batches_done()` is how many of this epoch's batches the trainer
    counts as done (emoclip.system.training_state.lightning_batches_done)."""

    def __init__(self, *args, batches_done: Callable[[], int], **kwargs):
        super().__init__(*args, **kwargs)
        self.batches_done = batches_done
        self._handed = 0  # batches handed out in this epoch
        self._random_at_last: dict | None = None  # the random states as that batch started
        self._random_to_restore: dict | None = None

    def __iter__(self) -> Iterator:
        restore, self._random_to_restore = self._random_to_restore, None
        self._handed, self._random_at_last = 0, None
        for batch in super().__iter__():
            if restore is not None:  # the first batch after a resume: where the run stopped
                set_rng_states(restore)
                restore = None
            self._random_at_last = rng_states()
            self._handed += 1
            yield batch

    def state_dict(self) -> dict:
        if world_size() > 1 or not isinstance(self.sampler, ResumableSampler):
            return {}
        done = self.batches_done()
        if done == self._handed:  # between batches: the random states are the next one's
            random_states = rng_states()
        elif done == self._handed - 1 and self._random_at_last is not None:
            random_states = self._random_at_last  # stopped within a batch: as it started
        else:
            return {}
        return {
            "sampler": self.sampler.state_dict(done * self.batch_size),
            "batches": done,
            "random": random_states,
        }

    def load_state_dict(self, state: dict) -> None:
        if not state or world_size() > 1:
            return
        self.sampler.resume_at(state["sampler"])
        if 0 < state["batches"] < len(self):
            self._random_to_restore = state["random"]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the processes of a distributed (DDP) run; (0, 1) when alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def world_size() -> int:
    """The processes of a distributed (DDP) run; 1 when alone."""
    return rank_and_world()[1]
