"""Pairs of sources: an image source and an unpaired text source, paired by label.

A paired config composes two source configs (conf/data/ckplus_dair.yaml: ckplus as
`dataset.image`, dair_emotion as `dataset.text`) and one location each: data.root.image and
data.root.text (null: each source's usual folder under paths.data_dir).

Val and test images each get one text of their class from the text source's own val and
test split, fixed by seed (drawn without replacement while the pool lasts). Training images
get a fresh text of their class every epoch from the training texts (`train_text_pool`, used
by the DataModule). Classes missing from either source are dropped, with a logged count.
Pairing by label means either modality alone carries the label: report per-modality
ablations beside fused numbers.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoclip.data.labels import LabelSpace
from emoclip.data.readers import TextDecoder
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.data.sources.base import Loaded, Source, source_class
from emoclip.data.splits import GroupedSplit
from emoclip.errors import ConfigError

log = logging.getLogger(__name__)
PARTS = ("image", "text")


def by_label(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        grouped[r.label].append(r)
    return dict(grouped)


class PairedByLabel(Source):
    """An image source and a text source, paired by label (see the module docstring)."""

    modalities = ("text", "image")
    location = "one location per part: data.root.image and data.root.text"

    def __init__(self, image: Source, text: Source, seed: int = 0, name: str = "paired"):
        super().__init__(name)
        for part, source in (("image", image), ("text", text)):
            if part not in source.modalities:
                raise ConfigError(
                    f"data.dataset.{part} is data={source.name}, which has no {part}s"
                )
        self.image, self.text, self.seed = image, text, seed
        self.label_space = image.label_space
        if text.label_space != image.label_space:
            raise ConfigError(
                f"data={image.name} is labelled in the {image.label_space} label space and "
                f"data={text.name} in the {text.label_space} one; a pair needs one label space"
            )
        self._text_splits: Splits | None = None

    def read(self, root: Path | None, decoder: TextDecoder) -> Splits:
        raise NotImplementedError("a pair reads through its parts (see load)")

    def locate(self, root: Any, data_dir: str | None) -> dict[str, Any]:
        if not isinstance(root, Mapping):
            raise ConfigError(
                f"data={self.name} reads two locations: set data.root.image=... and "
                f"data.root.text=... (each null: the source's usual folder), not data.root={root}"
            )
        unknown = set(root) - set(PARTS)
        if unknown:
            raise ConfigError(
                f"data.root.{sorted(unknown)[0]}: data={self.name} reads only data.root.image "
                "and data.root.text"
            )
        return {
            "image": self.image.locate(root.get("image"), data_dir),
            "text": self.text.locate(root.get("text"), data_dir),
        }

    def load(
        self, root: Any, labels: LabelSpace, encoding: str | None, split: GroupedSplit
    ) -> Loaded:
        images = self.image.load(root["image"], labels, encoding, split)
        texts = self.text.load(root["text"], labels, encoding, split)
        self._text_splits = texts.splits
        notes = {"image": images.notes, "text": texts.notes, "pairing": "by label"}
        return Loaded(
            self._pair(images.splits, texts.splits), notes, images.split_here or texts.split_here
        )

    def train_text_pool(self) -> tuple[dict[str, list[Record]], int]:
        if self._text_splits is None:
            raise RuntimeError("load the pair before asking for its training texts")
        return by_label(self._text_splits["train"]), self.seed

    def _pair(self, images: Splits, texts: Splits) -> Splits:
        paired: Splits = {}
        for index, split in enumerate(SPLITS):
            pool = by_label(texts[split])
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

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        """Each part's own example files (its class writes them), one location each."""
        values: dict[str, Any] = {}
        for part in PARTS:
            kind = source_class(source.get(part))
            if kind is None:
                raise ValueError(f"data.dataset.{part}: names no source class of emoclip")
            for key, value in kind.write_examples(folder / part, source[part]).items():
                if key == "root":
                    values[f"root.{part}"] = value
                elif key.startswith("dataset."):
                    values[f"dataset.{part}.{key.removeprefix('dataset.')}"] = value
                else:
                    values[key] = value
        return values

    @classmethod
    def split_protocol(cls, data: Mapping, source: Mapping, folds: Sequence[int] = ()) -> str:
        described = []
        for part in PARTS:
            node = source.get(part)
            kind = source_class(node)
            what = kind.split_protocol(data, node, folds) if kind else "unknown"
            described.append(f"{part}s: {what}")
        return "; ".join(described)
