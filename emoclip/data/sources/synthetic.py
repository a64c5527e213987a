"""`data=synthetic`: the built-in demo set, generated on the fly (emoclip/demo/synthetic.py draws
its faces and writes its sentences); no files, its own train/val/test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from emoclip.data.labels import canonical_label
from emoclip.data.readers import TextDecoder
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.data.sources.base import Source
from emoclip.demo.synthetic import DEFAULT_CLASSES, SUPPORTED_CLASSES, draw_face, noisy_texts
from emoclip.errors import ConfigError, DataError


class SyntheticEmotions(Source):
    """A procedurally generated face + sentence data set (synthetic: see emoclip/demo/synthetic.py)."""

    modalities = ("text", "image")
    location = ""  # generated: reads no files
    label_space = "emotion"
    gives_splits = True
    joins_duplicates = False  # its texts are template fills: repeats are by design

    def __init__(
        self,
        classes: Sequence[str] | None = DEFAULT_CLASSES,
        train_size: int = 1400,
        val_size: int = 300,
        test_size: int = 300,
        image_size: int = 64,
        text_noise: float = 0.1,
        seed: int = 0,
        name: str = "synthetic",
    ):
        super().__init__(name)
        canonical = []
        for label_name in classes or DEFAULT_CLASSES:
            try:
                label = canonical_label(label_name, origin="data.classes")
            except DataError as err:
                raise ConfigError(
                    f"the synthetic dataset cannot draw class {label_name!r}: {err} "
                    f"It draws: {', '.join(SUPPORTED_CLASSES)}."
                ) from None
            if label not in SUPPORTED_CLASSES:
                raise ConfigError(
                    f"the synthetic dataset cannot draw class {label_name!r}; "
                    f"it draws: {', '.join(SUPPORTED_CLASSES)}."
                )
            canonical.append(label)
        if len(set(canonical)) != len(canonical):
            raise ConfigError(f"data.classes names a class twice (after synonyms): {canonical}")
        if len(canonical) < 2:
            raise ConfigError(f"the synthetic dataset needs at least two classes, got {canonical}")
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        for split, n in sizes.items():
            if int(n) != n or n < 0:
                raise ConfigError(f"{split}_size must be a whole number >= 0, got {n!r}")
        if int(image_size) != image_size or image_size < 16:
            raise ConfigError(f"image_size must be a whole number >= 16, got {image_size!r}")
        if not 0.0 <= text_noise <= 1.0:
            raise ConfigError(f"text_noise must lie in [0, 1], got {text_noise!r}")
        if int(seed) != seed or seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {seed!r}")
        self.classes = tuple(canonical)  # the classes it draws: its usual classes
        self.sizes = {split: int(n) for split, n in sizes.items()}
        self.image_size = int(image_size)
        self.text_noise = float(text_noise)
        self.seed = int(seed)

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        """No files: generated; a small set instead."""
        sizes = {"train_size": 70, "val_size": 35, "test_size": 35, "image_size": 32}
        return {f"dataset.{key}": value for key, value in sizes.items()}

    def read(self, root: Path | None, decoder: TextDecoder) -> Splits:
        return self.splits()

    @classmethod
    def split_protocol(cls, data, source, folds=()) -> str:
        return "generated (synthetic)"

    def splits(self) -> Splits:
        """The three generated splits."""
        return {split: self._split(split, i) for i, split in enumerate(SPLITS)}

    def _split(self, split: str, index: int) -> list[Record]:
        n = self.sizes[split]
        # Separate streams for order, faces and texts, so that changing text_noise leaves the
        # faces as they were.
        order_rng, face_rng, text_rng = (
            np.random.default_rng(child)
            for child in np.random.SeedSequence([self.seed, index]).spawn(3)
        )
        k = len(self.classes)
        labels = [self.classes[i % k] for i in order_rng.permutation(n)]
        texts = noisy_texts(labels, self.classes, self.text_noise, text_rng)
        return [
            Record(
                id=f"synthetic/{split}/{i:06d}",
                label=label,
                text=text,
                image=draw_face(label, face_rng, self.image_size),
                group=None,
                origin=f"synthetic/{split}#{i}",
            )
            for i, (label, (text, _)) in enumerate(zip(labels, texts, strict=True))
        ]
