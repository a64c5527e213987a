"""Studies' data sources: a reader plus the split protocol, each with `splits()`.

A source returns {"train": [...], "val": [...], "test": [...]} of Records. Readers know file
formats; sources decide how records become splits (given, subject-grouped, k-fold by subject)
and how unpaired modalities are paired.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from emoclip.data.readers import read_ckplus, read_dair_emotion, read_manifest, read_table
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.data.splits import check_fold, grouped_kfold, grouped_split
from emoclip.errors import ConfigError

log = logging.getLogger(__name__)


def _require_root(root: str | None, key: str, what: str) -> Path:
    if not root:
        raise ConfigError(f"{key} is not set: point it at {what}, e.g. {key}=/data/path")
    return Path(root).expanduser()


def _by_label(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        grouped[r.label].append(r)
    return dict(grouped)


class SubjectSplit:
    """How records without given splits become train/val/test: grouped by subject (record
    group), stratified by label; k-fold when num_folds is set."""

    def __init__(
        self,
        num_folds: int | None = None,
        fold: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.15,
        seed: int = 0,
    ):
        if num_folds:
            check_fold(num_folds, fold)  # before any data is read
        self.num_folds, self.fold = num_folds, fold
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed

    def __call__(self, records: list[Record]) -> Splits:
        if self.num_folds:
            return grouped_kfold(
                records, self.num_folds, self.fold, self.val_fraction, seed=self.seed
            )
        return grouped_split(records, self.val_fraction, self.test_fraction, seed=self.seed)


class CkPlus:
    """CK+ images, as distributed or as class folders (CK+48); split by subject."""

    def __init__(
        self,
        root: str | None,
        split: SubjectSplit,
        peak_frames: int = 3,
        include_neutral: bool = False,
    ):
        self.root = _require_root(root, "data.image_root", "the CK+ folder (see README)")
        self.split, self.peak_frames, self.include_neutral = split, peak_frames, include_neutral

    def splits(self) -> Splits:
        return self.split(read_ckplus(self.root, self.peak_frames, self.include_neutral))


class DairEmotion:
    """DAIR-AI emotion text, with its given train/val/test."""

    def __init__(self, root: str | None):
        self.root = _require_root(root, "data.text_root", "the DAIR-AI emotion folder")

    def splits(self) -> Splits:
        return read_dair_emotion(self.root)


class TextTable:
    """Any text set in csv/jsonl/parquet, one file per split, columns named in the config."""

    def __init__(
        self,
        train: str,
        val: str,
        test: str,
        text_column: str = "text",
        label_column: str = "label",
        label_names: list[str] | None = None,
    ):
        self.files = {"train": train, "val": val, "test": test}
        self.columns = (text_column, label_column, label_names)

    def splits(self) -> Splits:
        text_column, label_column, label_names = self.columns
        return {
            split: read_table(Path(path), text_column, label_column, label_names)
            for split, path in self.files.items()
        }


class Manifest:
    """A manifest of (image and/or text, label, group[, split]); without a split column the
    records are split by group."""

    def __init__(self, path: str | None, split: SubjectSplit, allow_absolute: bool = False):
        self.path = _require_root(path, "data.manifest", "a manifest csv or jsonl")
        self.split, self.allow_absolute = split, allow_absolute

    def splits(self) -> Splits:
        records = read_manifest(self.path, self.allow_absolute)
        return records if isinstance(records, dict) else self.split(records)


class PairedByLabel:
    """Pairs an image source with an unpaired text source by label.

    Val and test images each get one text of their class from the text source's own val and
    test split, fixed by seed (drawn without replacement while the pool lasts). Training
    images get a fresh text of their class every epoch from the training texts
    (`train_text_pool`, used by the DataModule). Classes missing from either source are
    dropped, with a logged count. Warning: pairing by label means either modality alone
    carries the label; report per-modality ablations beside fused numbers.
    """

    def __init__(self, image, text, seed: int = 0):
        self.image, self.text, self.seed = image, text, seed
        self._text_splits: Splits | None = None

    def _texts(self) -> Splits:
        if self._text_splits is None:
            self._text_splits = self.text.splits()
        return self._text_splits

    def train_text_pool(self) -> dict[str, list[Record]]:
        return _by_label(self._texts()["train"])

    def splits(self) -> Splits:
        images, texts = self.image.splits(), self._texts()
        paired: Splits = {}
        for index, split in enumerate(SPLITS):
            pool = _by_label(texts[split])
            rng = np.random.default_rng([self.seed, index])
            order = {label: list(rng.permutation(len(rs))) for label, rs in pool.items()}
            unpaired = Counter(r.label for r in images[split] if r.label not in pool)
            if unpaired:
                log.info(
                    "%s: %s images have no text of their class: dropped", split, dict(unpaired)
                )
            paired[split] = []
            for img in (r for r in images[split] if r.label in pool):
                if not order[img.label]:
                    order[img.label] = list(rng.permutation(len(pool[img.label])))
                text = pool[img.label][order[img.label].pop()]
                paired[split].append(
                    Record(
                        id=f"{img.id}+{text.id}",
                        label=img.label,
                        text=text.text,
                        image=img.image,
                        group=img.group,
                        origin=img.origin,
                    )
                )
        return paired
