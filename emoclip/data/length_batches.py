"""Batches of texts of similar length (`data.bucket_by_length`): a batch is padded to its
longest text, so mixing short and long texts makes a transformer encode mostly padding.

Training: each epoch the examples are shuffled, cut into pools of 50 batches, each pool sorted
by length and cut into batches, and the batches shuffled (the one short batch goes last, so the
data loader's fixed-size slices are these batches). Evaluation: the examples longest first.
The order depends only on (seed, epoch), so a resumed run draws the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

POOL_BATCHES = 50


class LengthBucketSampler(Sampler[int]):
    """Indices in an order whose consecutive `batch_size` slices are batches of similar
    length. Lightning calls set_epoch."""

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0):
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            yield from self._longest_first(torch.arange(len(self.lengths))).tolist()
            return
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        pool = self.batch_size * POOL_BATCHES
        batches = [
            batch
            for start in range(0, len(order), pool)
            for batch in self._longest_first(order[start : start + pool]).split(self.batch_size)
        ]
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        for batch in shuffled + short:
            yield from batch.tolist()

    def _longest_first(self, indices: torch.Tensor) -> torch.Tensor:
        # A stable sort: equal lengths keep their (shuffled or original) order.
        return indices[torch.sort(self.lengths[indices], descending=True, stable=True).indices]
