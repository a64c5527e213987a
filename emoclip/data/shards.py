"""Shards: a split's decoded examples as a sequence of files, read in order, for data larger
than the local disk or kept on a shared file system or an object store.

`write_shards` cuts an `EncodedSplit` (uint8 pixels, token ids, labels) into numpy .npz files of
`rows` examples each, plus `index.json` listing them with their sizes and sha256, signed with
this user's key (emoclip.system.integrity; on a cluster, EMOCLIP_SECRET_FILE names one key for all
nodes). `ShardStream` is an IterableDataset over such a folder, local or any URL fsspec reads
(s3://, gs://, https:// with the matching fsspec plug-in installed): each epoch the shard order
is shuffled by (seed, epoch), shards are dealt to DDP ranks and, within a rank, to DataLoader
workers (shard i goes to reader i mod readers), and items are shuffled through a buffer of
`buffer` examples. A shard whose bytes do not give the sha256 in the index is refused.

Each reader holds one shard and the buffer in memory: rows x item size + buffer x item size.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from emoclip.contract import EPOCH, INPUT_IDS, PIXELS
from emoclip.data.resumable import rank_and_world
from emoclip.errors import DataError
from emoclip.system.atomic import write_atomically
from emoclip.system.integrity import keyed_digest, same_digest

INDEX = "index.json"


def write_shards(split, classes, folder: str | Path, rows: int = 1000) -> list[str]:
    """Write an EncodedSplit whose labels index `classes` as shards of `rows` examples into a
    local `folder`; their names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for number, start in enumerate(range(0, len(split), rows)):
        stop = min(start + rows, len(split))
        arrays = {
            "index": np.arange(start, stop, dtype=np.int64),
            "labels": split.labels[start:stop].numpy(),
        }
        if split.pixels is not None:
            arrays[PIXELS] = np.asarray(split.pixels[start:stop].numpy())
        if split.input_ids is not None:
            lists = [split.input_ids[i].numpy() for i in range(start, stop)]
            arrays["token_offsets"] = np.cumsum([0] + [len(t) for t in lists]).astype(np.int64)
            arrays["token_ids"] = np.concatenate(lists or [np.zeros(0)]).astype(np.int32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        content = buffer.getvalue()
        name = f"shard-{number:05d}.npz"
        write_atomically(folder / name, content)
        digest = hashlib.sha256(content).hexdigest()
        shards.append({"name": name, "rows": stop - start, "sha256": digest})
    index = {"format": 1, "classes": list(classes), "shards": shards}
    index["signature"] = _sign(index)
    write_atomically(folder / INDEX, json.dumps(index, indent=1))
    return [s["name"] for s in shards]


class ShardStream(IterableDataset):
    """Items (`index`, `labels`, `pixels`, `input_ids`) streamed from a shard folder or URL."""

    def __init__(self, location: str | Path, buffer: int = 1000, seed: int = 0):
        self.location, self.buffer, self.seed = str(location), buffer, seed
        # Counted by each reader: a persistent worker's copy keeps its count across epochs.
        self.epoch = 0
        index = read_index(self.location)
        self.classes, self.shards = index["classes"], index["shards"]

    def __len__(self) -> int:  # the examples of one rank (all its workers) in an epoch
        return sum(s["rows"] for s in self.shards) // rank_and_world()[1]

    def assigned(self) -> tuple[list[dict], int, int]:
        """This reader's shards this epoch (a shuffled order dealt across ranks x workers), its
        number, and how many examples every reader yields: the fewest any reader's shards
        hold, so that every DDP rank runs the same number of steps (the rest wait for another
        epoch's order)."""
        rank, ranks = rank_and_world()
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        reader, readers = rank * workers + worker_id, ranks * workers
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        if len(self.shards) < readers:
            raise DataError(
                f"{self.location} holds {len(self.shards)} shards, fewer than the {readers} "
                "readers (DDP processes x data.num_workers): write smaller shards"
            )
        dealt = [order[r::readers] for r in range(readers)]
        quota = min(sum(self.shards[i]["rows"] for i in part) for part in dealt)
        return [self.shards[i] for i in dealt[reader]], reader, quota

    def __iter__(self) -> Iterator[dict]:
        shards, reader, quota = self.assigned()
        epoch, rng = self.epoch, np.random.default_rng([self.seed, self.epoch, reader])
        self.epoch += 1
        buffer: list[dict] = []
        items = ({**item, EPOCH: epoch} for shard in shards for item in self._items(shard))
        for _, item in zip(range(quota), items, strict=False):
            if len(buffer) < self.buffer:
                buffer.append(item)
                continue
            slot = int(rng.integers(len(buffer)))
            yield buffer[slot]
            buffer[slot] = item
        rng.shuffle(buffer)
        yield from buffer

    def _items(self, shard: dict) -> Iterator[dict]:
        url = f"{self.location.rstrip('/')}/{shard['name']}"
        with fsspec.open(url, "rb") as f:
            content = f.read()
        if hashlib.sha256(content).hexdigest() != shard["sha256"]:
            raise DataError(f"{url}: its content does not match the sha256 in {INDEX}")
        arrays = np.load(io.BytesIO(content))
        offsets = arrays["token_offsets"] if "token_offsets" in arrays.files else None
        pixels = arrays[PIXELS] if PIXELS in arrays.files else None
        ids = arrays["token_ids"] if offsets is not None else None
        for row, (i, label) in enumerate(zip(arrays["index"], arrays["labels"], strict=True)):
            item = {"index": int(i), "labels": torch.tensor(int(label))}
            if pixels is not None:
                item[PIXELS] = torch.from_numpy(pixels[row].copy())
            if offsets is not None:
                item[INPUT_IDS] = torch.from_numpy(
                    ids[offsets[row] : offsets[row + 1]].astype(np.int64)
                )
            yield item


def read_index(location: str) -> dict:
    """A shard folder's signed index (classes, shards); a DataError naming what is wrong."""
    url = f"{location.rstrip('/')}/{INDEX}"
    try:
        with fsspec.open(url, "r") as f:
            index = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the shard index {url}: {err}") from None
    if not isinstance(index, dict) or not same_digest(
        index.get("signature"), _sign({k: v for k, v in index.items() if k != "signature"})
    ):
        raise DataError(
            f"{url} is not signed with this user's key (emoclip.system.integrity; on a cluster set "
            "EMOCLIP_SECRET_FILE to the key the shards were written with)"
        )
    return index


def _sign(index: dict) -> str:
    return keyed_digest([json.dumps(index, sort_keys=True).encode()])
