"""The LightningDataModule every study uses: records in, one batch contract out.

A batch is a dict with `labels` and whichever of `input_ids` + `attention_mask` (text) and
`pixel_values` (image) the study's modalities provide, plus `index` (position in its split).
A study whose encoders are frozen swaps its splits for `FeatureSplit`s, whose batches carry
each modality's encoder features instead (`text_features`, `image_features`).
"""

from __future__ import annotations

import gc
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from emoclip.contract import (
    ATTENTION_MASK,
    EPOCH,
    IMAGE_FEATURES,
    INPUT_IDS,
    MODALITIES,
    PIXEL_VALUES,
    PIXELS,
    TEXT_FEATURES,
    normalization_stats,
)
from emoclip.data.file_hashes import remembered_in
from emoclip.data.images import augment, normalize
from emoclip.data.labels import LabelSpace
from emoclip.data.length_batches import LengthBucketSampler
from emoclip.data.records import SPLITS, Record
from emoclip.data.resumable import (
    ResumableLoader,
    ResumableSampler,
    ShuffleSampler,
    world_size,
)
from emoclip.data.shards import ShardStream
from emoclip.data.sources.base import Source
from emoclip.data.splits import (
    GIVEN_SPLITS_HINT,
    SPLIT_SETTINGS_HINT,
    GroupedSplit,
    check_splits,
    split_ids,
)
from emoclip.data.store import (
    Tokens,
    images_in_memory,
    map_pixels,
    stored_images,
)
from emoclip.data.tokenizer import encode_texts
from emoclip.errors import ConfigError, DataError
from emoclip.system.threads import default_workers
from emoclip.system.training_state import lightning_batches_done

log = logging.getLogger(__name__)
TOKENIZE_CHUNK = 10_000  # texts tokenised at a time into the flat token array


def shown_root(root) -> str:
    """Where a source reads, for a log line: a path, `image: <path>, text: <path>` for a pair,
    or `no files` (a generated set)."""
    if root is None:
        return "no files (generated)"
    if isinstance(root, Mapping):
        return ", ".join(f"{part}: {shown_root(where)}" for part, where in root.items())
    return str(root)


class EncodedSplit(Dataset):
    """One split, preprocessed once: label indices, uint8 pixels (mapped from the decoded
    store on disk, emoclip.data.store, or in memory) and token ids (`Tokens`).

    With a `text_pool` (token ids per class index), an item's text is drawn afresh from the
    pool each epoch: the sampler passes (index, epoch) and the draw is seeded by both.
    """

    image_key, text_key = PIXELS, INPUT_IDS
    pixels_file: tuple[str, tuple[int, ...]] | None = None  # (store file, shape) when mapped

    def __init__(
        self,
        labels: torch.Tensor,
        pixels: torch.Tensor | None,
        input_ids: Sequence[torch.Tensor] | None,
        text_pool: Sequence[Sequence[torch.Tensor]] | None = None,
        seed: int = 0,
    ):
        self.labels, self.pixels, self.input_ids = labels, pixels, input_ids
        self.text_pool, self.seed = text_pool, seed

    def __getstate__(self) -> dict:
        # A worker started by spawn maps the store itself rather than receiving its pixels.
        state = dict(self.__dict__)
        if self.pixels_file is not None:
            state[PIXELS] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.pixels_file is not None:
            path, shape = self.pixels_file
            self.pixels = map_pixels(path, shape)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i, epoch = key if isinstance(key, tuple) else (key, None)
        item = {"index": i, "labels": self.labels[i]}
        if epoch is not None:
            item[EPOCH] = epoch
        if self.pixels is not None:
            item[self.image_key] = self.pixels[i]
        if self.text_pool is not None and epoch is not None:
            texts = self.text_pool[int(self.labels[i])]
            item[self.text_key] = texts[
                np.random.default_rng([self.seed, epoch, i]).integers(len(texts))
            ]
        elif self.input_ids is not None:
            item[self.text_key] = self.input_ids[i]
        return item


class FeatureSplit(EncodedSplit):
    """A split as frozen-encoder features: `pixels` holds z_I (n, embed), `input_ids` z_T and
    `text_pool` z_T of each class's texts (a tensor per class); items carry them as
    `image_features` and `text_features`, with the same per-epoch text draws."""

    image_key, text_key = IMAGE_FEATURES, TEXT_FEATURES


def _in_model_classes(data_space: LabelSpace, model: Mapping, name: str) -> LabelSpace:
    """The data's label space, keeping the model's classes in the model's order."""
    if data_space.name != model["name"]:
        raise ConfigError(
            f"the model predicts {model['name']} classes ({', '.join(model['classes'])}), but "
            f"data={name} is labelled in the {data_space.name} label space: labels can only be "
            f"matched by name within one label space (data.label_space={model['name']}, with "
            "data.label_map for other names)"
        )
    vocabulary = list(data_space.vocabulary.names)
    if data_space.name == "custom":  # its names are its classes: add the model's
        vocabulary += [c for c in model["classes"] if c not in vocabulary]
    space = LabelSpace(data_space.name, vocabulary if data_space.name == "custom" else None)
    space.label_map = data_space.label_map
    return space.keep(model["classes"], "the model's classes")


class EpochSampler(Sampler):
    """Shuffles by (seed, epoch) and yields (index, epoch). Lightning calls set_epoch."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for i in torch.randperm(self.size, generator=generator).tolist():
            yield (i, self.epoch)


class Collate:
    """Items into one batch: stacked, texts padded per batch and, for training, images augmented
    (uint8, emoclip.data.images.augment; items that carry their `epoch` only). It runs where the
    batch is made, in the DataLoader workers when there are any."""

    def __init__(
        self,
        pad_token_id: int,
        augment: Mapping | None = None,
        seed: int = 0,
        fill: Sequence[float] = (0.5, 0.5, 0.5),
    ):
        self.pad_token_id = pad_token_id
        self.augment, self.seed, self.fill = dict(augment or {}), seed, tuple(fill)

    def __call__(self, items: list[dict]) -> dict:
        batch = {"index": torch.tensor([it["index"] for it in items])}
        for key in items[0]:
            if key not in ("index", EPOCH, INPUT_IDS):
                batch[key] = torch.stack([it[key] for it in items])
        if self.augment and PIXELS in batch and EPOCH in items[0]:
            keys = [(self.seed, it[EPOCH], it["index"]) for it in items]
            batch[PIXELS] = augment(batch[PIXELS], keys, self.fill, **self.augment)
        if INPUT_IDS in items[0]:
            ids = [it[INPUT_IDS] for it in items]
            batch[INPUT_IDS] = pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id)
            lengths = torch.tensor([len(t) for t in ids])
            batch[ATTENTION_MASK] = (
                torch.arange(batch[INPUT_IDS].shape[1])[None, :] < lengths[:, None]
            ).long()
        return batch


class EmotionDataModule(L.LightningDataModule):
    """A study's data: its source (`dataset`, see emoclip/data/sources/base.py), where its files
    are, its label space and splits, and the preprocessing into the batch contract.

    The preprocessing a model needs is handed in as plain attributes: `tokenizer` (set by the
    study before setup), `image_size`, and `mean` / `std` (from `normalization`).
    """

    def __init__(
        self,
        dataset: Source | None,
        classes: Sequence[str] | None = None,
        modalities: Sequence[str] = MODALITIES,
        name: str = "data",
        root: str | Mapping | None = None,
        data_dir: str | None = None,
        label_space: str | None = None,
        label_map: Mapping[str, str] | None = None,
        encoding: str | None = None,
        num_folds: int | None = None,
        fold: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        image_size: int | None = None,
        normalization: str | None = "half",
        augment: dict | None = None,
        skip_bad: bool = False,
        model_label_space: Mapping | None = None,
        bucket_by_length: bool = False,
        cache_dir: str | None = None,
        train_shards: str | None = None,
    ):
        super().__init__()
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities:
            raise ConfigError(
                f"data.modalities={list(modalities)} is not valid; expected a non-empty subset "
                f"of {list(MODALITIES)}"
            )
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.name = name
        self.splitter = GroupedSplit(num_folds, fold, val_fraction, test_fraction, split_seed)
        self.encoding = encoding
        self.root = None  # where the source reads (a path, or a path per part of a pair)
        if dataset is not None:
            missing = [m for m in modalities if m not in dataset.modalities]
            if missing:
                raise ConfigError(
                    f"data={name} has no {' and no '.join(missing)}s, but the study uses "
                    f"{' and '.join(modalities)} (data.modalities, from the model): choose a "
                    f"model for {' and '.join(dataset.modalities)}, or data.modalities="
                    f"[{', '.join(dataset.modalities)}]"
                )
            label_space = label_space or dataset.label_space
            classes = classes or dataset.classes
            self.root = dataset.locate(root, data_dir)
        self.label_space = LabelSpace(label_space or "emotion", classes, label_map)
        # Set by `emoclip-eval ckpt_path=... data=...` (emoclip/study/cross_dataset.py): the data is
        # labelled by name in the model's classes; classes the model lacks are dropped.
        self.cross_dataset = model_label_space is not None
        if self.cross_dataset:
            self.label_space = _in_model_classes(self.label_space, model_label_space, name)
        self.modalities = tuple(modalities)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        # Image size and normalisation: these settings, or (null) the model's image tower's,
        # which the study hands over with set_preprocessing.
        self.image_size = image_size
        self.mean, self.std = normalization_stats(normalization) if normalization else (None, None)
        self.augment = dict(augment or {})
        self.skip_bad = skip_bad
        self.bucket_by_length = bucket_by_length
        # The decoded store and the remembered file digests (null: decoded into memory).
        self.store_dir = Path(cache_dir) / "decoded" if cache_dir else None
        # Training examples streamed from shards (emoclip.data.shards), a folder or URL.
        self.train_shards = train_shards
        self.tokenizer = None
        self.records: dict[str, list[Record]] | None = None
        self.notes: dict = {}  # how the splits came about, for splits.json
        self.encoded: dict[str, EncodedSplit] = {}

    @property
    def classes(self) -> tuple[str, ...]:
        if self.label_space.classes is None:
            self.load_records()  # the classes found in the data
        return self.label_space.classes  # type: ignore[return-value]

    def set_preprocessing(self, tokenizer=None, image=None) -> None:
        """What the model's towers want (emoclip.study.build calls this before setup): the text
        tower's tokenizer, and the image tower's `ImagePreprocessing` (size, mean, std). A data
        setting that says otherwise is an error rather than silently replaced."""
        self.tokenizer = tokenizer
        if image is None:
            return
        mean, std = tuple(image.mean), tuple(image.std)
        if self.image_size is not None and self.image_size != image.size:
            raise ConfigError(
                f"data.image_size={self.image_size} but the model's image tower takes "
                f"{image.size} px images: set model.image_tower.image_size (or leave "
                "data.image_size to follow it)"
            )
        if self.mean is not None and (tuple(self.mean), tuple(self.std)) != (mean, std):
            raise ConfigError(
                f"data.normalization gives mean {self.mean}, std {self.std} but the model's "
                f"image tower expects mean {mean}, std {std}: set "
                "model.image_tower.normalization (or leave data.normalization to follow it)"
            )
        self.image_size, self.mean, self.std = image.size, mean, std

    def load_records(self) -> dict[str, list[Record]]:
        """Read the source once, keep the study's classes, check every split has each class."""
        if self.records is not None:
            return self.records
        if self.dataset is None:
            raise RuntimeError("this data module has no source (built for prediction only)")
        with remembered_in(self.store_dir):
            loaded = self.dataset.load(self.root, self.label_space, self.encoding, self.splitter)
        if self.splitter.num_folds and not loaded.split_here:
            raise ConfigError(
                f"data={self.name} gives its own train/val/test, so data.num_folds does not "
                "apply; remove it"
            )
        splits = loaded.splits
        if self.label_space.classes is None:
            found = {r.label for records in splits.values() for r in records}
            self.label_space.keep(self.label_space.order(found), f"the classes of data={self.name}")
        self.records, dropped = {}, {}
        for split in SPLITS:
            kept = [r for r in splits[split] if r.label in self.label_space]
            counts = Counter(r.label for r in splits[split] if r.label not in self.label_space)
            if counts:
                dropped[split] = dict(sorted(counts.items()))
                log.info(
                    "%s/%s: dropped %s (not in data.classes)", self.name, split, dropped[split]
                )
            self.records[split] = self._check_modalities(kept, split)
        self.notes = {
            "source": self.name,
            "label_space": self.label_space.name,
            "classes": list(self.classes),
            **loaded.notes,
            "dropped": dropped,
        }
        log.info(
            "%s: %s, label space %s, classes %s, %s",
            self.name,
            shown_root(self.root),
            self.label_space.name,
            ", ".join(self.classes),
            ", ".join(f"{split} {len(rs)}" for split, rs in self.records.items()),
        )
        self._split_hint = SPLIT_SETTINGS_HINT if loaded.split_here else GIVEN_SPLITS_HINT
        self._check_records()
        self._warn_small_train()
        return self.records

    def _check_records(self) -> None:
        if not self.cross_dataset:
            check_splits(self.records, self.label_space, self._split_hint)
            return
        # Evaluating a model on other data: only the test split counts, and a class of the
        # model's that the data lacks is reported, not an error.
        check_splits({"test": self.records["test"]}, [], self._split_hint)
        if not self.records["test"]:
            raise DataError(
                f"data={self.name}'s test split has no examples of the model's classes "
                f"({', '.join(self.classes)})"
            )

    def _check_modalities(self, records: list[Record], split: str) -> list[Record]:
        """The records that have every modality the study uses; an example without one (an
        empty text, no image) stops the run naming it, or with data.skip_bad is skipped."""
        kept = []
        for r in records:
            lacks = [m for m in self.modalities if getattr(r, m) is None]
            if not lacks:
                kept.append(r)
            elif not self.skip_bad:
                raise DataError(
                    f"{r.origin or r.id} has no {lacks[0]} (empty or missing), but the study uses "
                    f"{lacks[0]}s: fix it, or data.skip_bad=true skips such examples"
                )
        if len(kept) < len(records):
            log.warning(
                "%s/%s: skipped %d examples with an empty text or no image (data.skip_bad=true)",
                self.name,
                split,
                len(records) - len(kept),
            )
        return kept

    def _warn_small_train(self) -> None:
        # Not an error: batches are not dropped, so each epoch is one smaller batch.
        size = len(self.records["train"])
        if size < self.batch_size:
            log.warning(
                "data.batch_size=%d is larger than the %d training examples: each epoch is "
                "one batch of %d",
                self.batch_size,
                size,
                size,
            )

    def class_weights(self, setting: str | Sequence[float] | None) -> list[float] | None:
        """model.class_weights as one weight per class: balanced is n / (classes x count) over
        the training split, as scikit-learn's class_weight="balanced"."""
        if setting is None or setting == "none":
            return None
        if setting == "balanced":
            counts = Counter(r.label for r in self.load_records()["train"])
            total = sum(counts.values())
            return [total / (len(self.classes) * max(counts[c], 1)) for c in self.classes]
        if isinstance(setting, str) or len(setting) != len(self.classes):
            raise ConfigError(
                f"model.class_weights={setting!r}: expected none, balanced, or one weight per "
                f"class ({', '.join(self.classes)})"
            )
        return [float(w) for w in setting]

    def train_texts(self) -> list[str]:
        """The texts training can see: with label pairing, the whole training text pool."""
        records = self.load_records()["train"]
        pool = self.dataset.train_text_pool()
        if pool is not None:
            by_class, _ = pool
            return [r.text for c in self.classes for r in by_class.get(c, [])]
        return [r.text for r in records if r.text is not None]

    def split_ids(self) -> dict:
        """What splits.json holds: the ids of each split, and under "protocol" how the splits
        came about (given or grouped, duplicates joined, classes dropped)."""
        return {**split_ids(self.load_records()), "protocol": self.notes}

    def setup(self, stage: str | None = None) -> None:
        if self.encoded:
            return
        if "text" in self.modalities and self.tokenizer is None:
            raise RuntimeError("set datamodule.tokenizer before setup for a study that uses text")
        if "image" in self.modalities and not (self.image_size and self.mean is not None):
            raise ConfigError(
                "data.image_size and data.normalization must be set for a study that uses "
                "images (a model's image tower sets them)"
            )
        skipped = 0
        for split, records in self.load_records().items():
            if split == "train" and self.train_shards:
                self.encoded[split] = self._stream_shards()
                continue
            pixels, pixels_file = None, None
            if "image" in self.modalities:
                records, pixels, pixels_file = self._decode_images(records, split)
                skipped += len(self.records[split]) - len(records)
                self.records[split] = records
            self.encoded[split] = self._encode(records, pixels, f"{self.name}/{split}")
            self.encoded[split].pixels_file = pixels_file
        if skipped:
            log.warning("%s: skipped %d unreadable images (data.skip_bad=true)", self.name, skipped)
            self._check_records()
        pool = self.dataset.train_text_pool()
        if pool is not None and "text" in self.modalities and not self.train_shards:
            by_class, seed = pool
            self.encoded["train"].text_pool = self._encode_text_pool(by_class)
            self.encoded["train"].seed = seed

    def _stream_shards(self) -> ShardStream:
        stream = ShardStream(self.train_shards, seed=torch.initial_seed() % 2**31)
        if list(stream.classes) != list(self.classes):
            raise ConfigError(
                f"data.train_shards={self.train_shards} holds the classes {stream.classes}, "
                f"but the study's are {list(self.classes)}"
            )
        return stream

    def _encode_text_pool(self, pool: dict[str, list[Record]]) -> list[Tokens]:
        return [
            self._tokenize([r.text for r in pool[label]], f"{self.name}/train text pool/{label}")
            for label in self.classes
        ]

    def _tokenize(self, texts: list[str], what: str) -> Tokens:
        return Tokens.join(
            [
                Tokens.from_lists(encode_texts(self.tokenizer, texts[s : s + TOKENIZE_CHUNK], what))
                for s in range(0, len(texts), TOKENIZE_CHUNK)
            ]
        )

    def _decode_images(self, records: list[Record], split: str):
        """Decode and resize every image once, into the decoded store when there is a cache
        folder (reused by later runs); with skip_bad, drop unreadable ones. Returns the kept
        records, their uint8 pixels and (file, shape) of the store they are mapped from."""
        what = f"{self.name}/{split}"
        if self.store_dir is None:
            kept, pixels = images_in_memory(records, self.image_size, self.skip_bad, what)
            return [records[i] for i in kept], pixels, None
        with remembered_in(self.store_dir):
            kept, pixels, path = stored_images(
                self.store_dir, records, self.image_size, self.skip_bad, what
            )
        return [records[i] for i in kept], pixels, (str(path), tuple(pixels.shape))

    def _encode(
        self, records: list[Record], pixels: torch.Tensor | None, what: str
    ) -> EncodedSplit:
        labels = torch.tensor([self.label_space.index(r.label) for r in records], dtype=torch.long)
        input_ids = None
        if "text" in self.modalities:
            input_ids = self._tokenize([r.text for r in records], what)
        return EncodedSplit(labels, pixels, input_ids)

    def encode_inputs(
        self, texts: Sequence[str] | None = None, images: Sequence[str | Path] | None = None
    ) -> dict:
        """A batch of new, unlabelled examples (labels -1), preprocessed exactly as the test
        split is: for prediction."""
        n = len(texts) if texts is not None else len(images)
        pixels = None
        if images is not None:
            records = [Record(str(p), "", image=Path(p), origin=str(p)) for p in images]
            _, pixels = images_in_memory(records, self.image_size, False, "inputs")
        input_ids = self._tokenize(list(texts), "inputs") if texts is not None else None
        split = EncodedSplit(torch.full((n,), -1, dtype=torch.long), pixels, input_ids)
        return self._batch(split, range(n))

    def batch_of(self, split: str, indices: Sequence[int]) -> dict:
        """These examples of a split as one batch, preprocessed as the test loader's are."""
        return self._batch(self.encoded[split], indices)

    def _batch(self, dataset: EncodedSplit, indices: Sequence[int]) -> dict:
        batch = self.collate()([dataset[i] for i in indices])
        return self.on_after_batch_transfer(batch, 0)

    def collate(self, train: bool = False) -> Collate:
        """The loaders' collate function; the training one augments images (data.augment),
        seeded by the run's seed (seed_everything's, the same when a run resumes)."""
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else 0
        if not (train and self.augment):
            return Collate(pad)
        return Collate(pad, self.augment, run_seed(), self.mean or (0.5,) * 3)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.encoded[split]
        if isinstance(dataset, ShardStream):  # it shuffles and divides itself
            workers = self._workers()
            return DataLoader(
                dataset,
                batch_size=self.batch_size,
                num_workers=workers,
                persistent_workers=workers > 0,  # each worker's copy counts its epochs
                pin_memory=self._pin_memory(),
                collate_fn=self.collate(train=True),
                generator=torch.Generator().manual_seed(run_seed()),
            )
        sampler = None
        if shuffle and dataset.text_pool is not None:
            sampler, shuffle = EpochSampler(len(dataset), dataset.seed), False
        elif self.bucket_by_length and self._has_token_ids(dataset):
            lengths = dataset.input_ids.lengths()
            size = self.batch_size if split == "train" else self.eval_batch_size
            sampler = LengthBucketSampler(lengths, size, shuffle, run_seed())
            shuffle = False
        workers = self._workers()
        if workers:
            # Workers are forked: objects the collector never visits again are not copied
            # into each worker when it runs (records, tokenizer, model).
            gc.freeze()
        options = {
            "batch_size": self.batch_size if split == "train" else self.eval_batch_size,
            "num_workers": workers,
            "persistent_workers": workers > 0,
            "pin_memory": self._pin_memory(),
            "collate_fn": self.collate(train=split == "train"),
            # The seed of the workers' generators is drawn from the loader's own generator, not
            # torch's global one: persistent workers draw it once a run, so a resumed run would
            # otherwise draw it at another point and its dropout would differ from then on.
            "generator": torch.Generator().manual_seed(run_seed()),
        }
        if split == "train":  # a Ctrl-C'd run continues mid-epoch exactly
            sampler, _ = shard_for_rank(dataset, sampler, True)
            sampler = ResumableSampler(sampler or ShuffleSampler(len(dataset)))
            return ResumableLoader(
                dataset, sampler=sampler, batches_done=self._batches_done, **options
            )
        if sampler is None and world_size() > 1:
            # Under DDP each rank scores its share once: a DistributedSampler would repeat
            # examples to even out the ranks, and the gathered metrics count them twice.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        else:
            sampler, shuffle = shard_for_rank(dataset, sampler, shuffle)
        return DataLoader(dataset, shuffle=shuffle, sampler=sampler, **options)

    def _batches_done(self) -> int:
        return lightning_batches_done(self.trainer)

    def _workers(self) -> int:
        """data.num_workers, or when unset (null): emoclip.system.threads.default_workers for this
        training split's size."""
        if self.num_workers is not None:
            return self.num_workers
        return default_workers(train_size=len(self.encoded.get("train", ())))

    @staticmethod
    def _has_token_ids(dataset: EncodedSplit) -> bool:
        return (
            dataset.text_key == INPUT_IDS
            and dataset.input_ids is not None
            and dataset.text_pool is None
        )

    def _pin_memory(self) -> bool:
        """data.pin_memory, or when unset (null): pin when training on a CUDA GPU."""
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if PIXELS in batch:
            batch[PIXEL_VALUES] = normalize(batch.pop(PIXELS), self.mean, self.std)
        return batch


def run_seed() -> int:
    """The run's seed (seed_everything's), the same when a run resumes: it seeds the data's
    own random draws (augmentation, length buckets, the loaders' worker seeds)."""
    return torch.initial_seed() % 2**31


def shard_for_rank(dataset: Dataset, sampler: Sampler | None, shuffle: bool):
    """Under DDP (torch.distributed initialised, several processes), each rank's part of the
    split: (sampler, shuffle) for its DataLoader. Lightning would wrap the sampler the same
    way; doing it here makes the split across ranks visible and testable without a Trainer."""
    if world_size() < 2:
        return sampler, shuffle
    if sampler is None:
        # The seed Lightning's own distributed sampler takes: the run's seed.
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return DistributedSampler(dataset, shuffle=shuffle, seed=seed), False
    from lightning.pytorch.overrides.distributed import DistributedSamplerWrapper

    return DistributedSamplerWrapper(sampler, shuffle=False), False
