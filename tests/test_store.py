"""The decoded store (emoclip.data.store): images decoded once into a signed file, reused,
rebuilt when a source file changes or the store is tampered with; token ids in one array;
DDP ranks reading disjoint parts; a split larger than the memory a process may use trains."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from emoclip.data import shards, store
from emoclip.data.datamodule import EmotionDataModule
from emoclip.data.file_hashes import remembered_in
from emoclip.data.images import load_pixels
from emoclip.data.records import Record
from emoclip.data.shards import ShardStream, write_shards
from emoclip.data.sources.base import Source
from emoclip.data.store import Tokens, stored_images
from emoclip.errors import DataError
from tests.conftest import REPO

CLASSES = ("anger", "happiness")


def write_images(folder, count, size=40, offset=0):
    """`count` small JPEGs, each a distinct smooth pattern; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size]
    paths = []
    for i in range(offset, offset + count):
        pixels = np.stack([(x * (i + 1)) % 256, (y * 3 + i) % 256, (x + y + 7 * i) % 256], -1)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def image_records(paths):
    return [Record(p.stem, CLASSES[i % 2], image=p, origin=str(p)) for i, p in enumerate(paths)]


@pytest.fixture
def decodes(monkeypatch):
    """How many stores were written."""
    calls = []
    real = store.decode_into

    def counting(path, records, *args):
        calls.append(len(records))
        return real(path, records, *args)

    monkeypatch.setattr(store, "decode_into", counting)
    return calls


def test_a_store_is_written_once_and_reused(tmp_path, decodes):
    records = image_records(write_images(tmp_path / "images", 6))
    with remembered_in(tmp_path / "cache"):
        kept, first, file = stored_images(tmp_path / "cache", records, 24, False, "d/train")
        _, again, same_file = stored_images(tmp_path / "cache", records, 24, False, "d/train")
    assert decodes == [6] and kept == list(range(6)) and same_file == file
    expected = torch.stack([load_pixels(r.image, 24) for r in records])
    assert torch.equal(first, expected) and torch.equal(again, expected)
    assert (tmp_path / "cache" / "file_hashes.sqlite").is_file()


def test_a_changed_source_file_makes_a_new_store(tmp_path, decodes):
    paths = write_images(tmp_path / "images", 4)
    records = image_records(paths)
    with remembered_in(tmp_path / "cache"):
        _, before, old = stored_images(tmp_path / "cache", records, 24, False, "d/train")
        write_images(tmp_path / "other", 1, offset=9)[0].replace(paths[2])  # new content
        _, after, new = stored_images(tmp_path / "cache", records, 24, False, "d/train")
    assert decodes == [4, 4] and new != old
    assert torch.equal(after[2], load_pixels(paths[2], 24))
    assert not torch.equal(after[2], before[2]) and torch.equal(after[0], before[0])


@pytest.mark.parametrize("tamper", ["pixels", "metadata", "signature"])
def test_a_tampered_store_is_refused_and_rebuilt(tmp_path, decodes, caplog, tamper):
    records = image_records(write_images(tmp_path / "images", 4))
    _, _, file = stored_images(tmp_path / "cache", records, 24, False, "d/train")
    meta_file = file.with_suffix(".json")
    if tamper == "pixels":
        forged = bytearray(file.read_bytes())
        forged[100] ^= 0xFF
        file.write_bytes(bytes(forged))
    else:
        meta = json.loads(meta_file.read_text())
        if tamper == "metadata":
            meta["dropped"] = [3]  # a forger dropping an example keeps the old signature
        else:
            meta["signature"] = "0" * 64
        meta_file.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="emoclip.data.store"):
        _, pixels, _ = stored_images(tmp_path / "cache", records, 24, False, "d/train")
    assert decodes == [4, 4]
    assert "decoding again" in caplog.text
    assert torch.equal(pixels, torch.stack([load_pixels(r.image, 24) for r in records]))


@pytest.mark.parametrize("count", [100, 600])  # decoded in this process; by a pool, 2 chunks
def test_the_digest_taken_while_decoding_is_the_one_a_check_of_the_file_computes(tmp_path, count):
    paths = write_images(tmp_path / "images", count)
    records = [Record(str(p), "anger", image=p, origin=str(p)) for p in paths]
    file = tmp_path / "split.u8"
    kept, content = store.decode_into(file, records, 24, False, "train")
    assert kept == list(range(count))
    assert content == store._content_mac(file, 3 * 24 * 24)
    with open(file, "r+b") as f:  # one bit of the last chunk's last byte
        f.seek(-1, os.SEEK_END)
        last = f.read(1)[0]
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last ^ 1]))
    assert content != store._content_mac(file, 3 * 24 * 24)


def test_a_forged_file_digest_is_not_believed(tmp_path):
    paths = write_images(tmp_path / "images", 2)
    with remembered_in(tmp_path / "cache"):
        _, _, first = stored_images(tmp_path / "cache", image_records(paths), 24, False, "d")
    import sqlite3

    with sqlite3.connect(tmp_path / "cache" / "file_hashes.sqlite") as db:
        db.execute("UPDATE hashes SET digest='0' || substr(digest, 2)")
    with remembered_in(tmp_path / "cache"):
        _, _, again = stored_images(tmp_path / "cache", image_records(paths), 24, False, "d")
    assert again == first  # the files were hashed again, giving the store's own key


def test_unreadable_images_are_skipped_or_named(tmp_path):
    paths = write_images(tmp_path / "images", 3)
    paths[1].write_bytes(b"not an image")
    records = image_records(paths)
    with pytest.raises(DataError, match="00001.jpg"):
        stored_images(tmp_path / "cache", records, 24, False, "d/train")
    kept, pixels, _ = stored_images(tmp_path / "cache", records, 24, True, "d/train")
    assert kept == [0, 2]
    assert torch.equal(pixels[1], load_pixels(paths[2], 24))


def test_tokens_are_one_flat_array():
    tokens = Tokens.join([Tokens.from_lists([[1, 2, 3], [4]]), Tokens.from_lists([[], [5, 6]])])
    assert len(tokens) == 4 and tokens.lengths().tolist() == [3, 1, 0, 2]
    assert [t.tolist() for t in tokens] == [[1, 2, 3], [4], [], [5, 6]]
    assert tokens[3].dtype == torch.long and tokens.ids.dtype == np.int32


class Files(Source):
    """Image files in a folder, 2 in 5 of them validation and test."""

    modalities = ("image",)
    location = "a folder of .jpg files"
    gives_splits = True
    classes = CLASSES

    def read(self, root, decoder):
        records = image_records(sorted(root.glob("*.jpg")))
        return {
            "train": [r for i, r in enumerate(records) if i % 5 < 3],
            "val": [r for i, r in enumerate(records) if i % 5 == 3],
            "test": [r for i, r in enumerate(records) if i % 5 == 4],
        }


def files_datamodule(root, cache_dir, **settings) -> EmotionDataModule:
    settings = {"batch_size": 4, "image_size": 24, "modalities": ["image"], **settings}
    return EmotionDataModule(Files("files"), root=str(root), cache_dir=cache_dir, **settings)


def _rank(rank, root, cache_dir, out):
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
    decoded = []
    handler = logging.Handler()
    handler.emit = lambda record: decoded.append(record.getMessage())
    logging.getLogger("emoclip.data.store").addHandler(handler)
    logging.getLogger("emoclip.data.store").setLevel(logging.INFO)
    dm = files_datamodule(root, cache_dir, num_workers=0)
    dm.setup("fit")
    seen = {
        split: [i for batch in loader for i in batch["index"].tolist()]
        for split, loader in [("train", dm.train_dataloader()), ("val", dm.val_dataloader())]
    }
    writes = sum("decoding" in m and "processes" in m for m in decoded)
    (out / f"rank{rank}.json").write_text(json.dumps({"seen": seen, "writes": writes}))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ddp_ranks_read_disjoint_parts_of_one_store(tmp_path):
    root = tmp_path / "images"
    write_images(root, 40)  # train 24, val 8: even, so no rank repeats an item to pad
    mp.spawn(_rank, args=(root, tmp_path / "cache", tmp_path), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sum(r["writes"] for r in ranks) == 3  # each split's store written by one rank
    for split, size in (("train", 24), ("val", 8)):
        first, second = (set(r["seen"][split]) for r in ranks)
        assert not first & second
        assert first | second == set(range(size))


LIMITED = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    import lightning as L, torch
    from tests.test_store import files_datamodule

    root, cache = Path(sys.argv[1]), sys.argv[2]
    dm = files_datamodule(root, cache if cache != "none" else None, image_size=160,
                          num_workers=1, batch_size=16)
    dm.load_records()
    vm = dict(line.split(":") for line in open("/proc/self/status"))
    data_now = int(vm["VmData"].split()[0]) * 1024
    limit = data_now + 150 * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

        def training_step(self, batch, i):
            x = batch["pixel_values"].mean((2, 3))
            return torch.nn.functional.cross_entropy(self.layer(x), batch["labels"])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

    try:
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu", limit_val_batches=0)
        trainer.fit(Tiny(), datamodule=dm)
    except MemoryError:
        print("out of memory")
        sys.exit(3)
    pixels = dm.encoded["train"].pixels
    print("trained", trainer.global_step, "steps on", pixels.numel() >> 20, "MB of pixels")
    """
)


@pytest.mark.slow
def test_a_split_larger_than_the_memory_limit_trains_through_the_store(tmp_path):
    # 3,000 images at 160 px: 219 MiB of pixels, 131 MiB of them training, in a process that may
    # allocate 150 MB beyond what it holds after reading the records. Decoded into memory (no
    # cache folder) the same split does not fit.
    write_images(tmp_path / "images", 3000, size=48)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        # RLIMIT_DATA counts address space reserved, not used: each thread that mallocs may
        # reserve a 64 MB arena, so the headroom left would depend on thread timing. One arena
        # makes the limit measure what is allocated. A fixed mmap threshold likewise: glibc's
        # sliding one moves batch-sized blocks into the heap, whose fragmentation depends on
        # timing (under load it took the headroom in one run of three).
        "MALLOC_ARENA_MAX": "1",
        "MALLOC_MMAP_THRESHOLD_": str(4 << 20),
    }

    def run(cache):
        command = [sys.executable, "-c", LIMITED, str(tmp_path / "images"), cache]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)

    stored = run(str(tmp_path / "cache"))
    assert stored.returncode == 0, stored.stderr[-3000:]
    assert "trained 113 steps on 131 MB of pixels" in stored.stdout
    in_memory = run("none")
    assert in_memory.returncode == 3, in_memory.stderr[-3000:]


def shard_folder(tmp_path, rows=5):
    write_images(tmp_path / "images", 40)
    dm = files_datamodule(tmp_path / "images", tmp_path / "cache")
    dm.setup("fit")
    folder = tmp_path / "shards"
    write_shards(dm.encoded["train"], dm.classes, folder, rows=rows)
    return dm, folder


def test_shards_stream_every_item_once_shuffled_by_epoch(tmp_path):
    dm, folder = shard_folder(tmp_path)
    stream = ShardStream(folder, buffer=8, seed=1)
    epochs = [[item["index"] for item in stream] for _ in range(2)]
    for seen in epochs:
        assert sorted(seen) == list(range(24))
    assert epochs[0] != epochs[1] and epochs[0] != sorted(epochs[0])
    item = next(iter(ShardStream(folder)))
    assert torch.equal(item["pixels"], dm.encoded["train"].pixels[item["index"]])
    assert item["labels"] == dm.encoded["train"].labels[item["index"]]


def test_shards_are_dealt_to_ranks_and_workers_without_overlap(tmp_path, monkeypatch):
    _, folder = shard_folder(tmp_path, rows=2)  # 12 shards of 2
    seen = {}
    for rank in range(2):
        monkeypatch.setattr(shards, "rank_and_world", lambda rank=rank: (rank, 2))
        loader = torch.utils.data.DataLoader(ShardStream(folder, buffer=3), num_workers=2)
        seen[rank] = [int(item["index"]) for item in loader]
    assert len(seen[0]) == len(seen[1]) == 12  # the same steps on every rank
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 24


def test_a_changed_shard_or_an_unsigned_index_is_refused(tmp_path):
    _, folder = shard_folder(tmp_path)
    shard = folder / "shard-00001.npz"
    content = bytearray(shard.read_bytes())
    content[-200] ^= 0xFF
    shard.write_bytes(bytes(content))
    with pytest.raises(DataError, match="shard-00001.npz: its content does not match"):
        list(ShardStream(folder, buffer=1))
    index = json.loads((folder / "index.json").read_text())
    index["classes"] = list(reversed(index["classes"]))
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="not signed with this user's key"):
        ShardStream(folder)


def test_a_study_trains_from_shards(tmp_path):
    _, folder = shard_folder(tmp_path)
    dm = files_datamodule(tmp_path / "images", tmp_path / "cache", train_shards=str(folder))
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(24))
    batch = dm.on_after_batch_transfer(batches[0], 0)
    assert batch["pixel_values"].shape == (4, 3, 24, 24) and batch["labels"].shape == (4,)
    assert len(dm.encoded["val"]) == 8  # the other splits from the store
