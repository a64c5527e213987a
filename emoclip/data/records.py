"""The record: one labelled example as a reader yields it, before any preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    """One example. A reader fills what its format has; a study pairs or drops the rest.

    id:     stable and unique within a dataset (written to splits.json).
    label:  the file's own label name as a source reads it ("happy", "pos"); the class name
            once the study's label space has mapped it (see emoclip.data.labels).
    text:   the text, or None for an image-only record.
    image:  a path to an image file, an in-memory uint8 array (H, W) or (H, W, 3), or None.
    group:  what must not cross splits (the CK+ subject), or None; emoclip joins duplicates
            (identical images or texts) into groups too (emoclip.data.duplicates).
    origin: where it came from, for error messages ("train.txt:12").
    """

    id: str
    label: str
    text: str | None = None
    image: Path | np.ndarray | None = None
    group: str | None = None
    origin: str = ""


Splits = dict[str, list[Record]]  # {"train": [...], "val": [...], "test": [...]}
