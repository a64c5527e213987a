"""`data=fer2013`: FER2013 (Goodfellow et al., 2013), fer2013.csv with its own splits.

Columns emotion (0..6), pixels (2304 grey values: a 48x48 image) and Usage (Training,
PublicTest, PrivateTest -> train, val, test). data.root is the csv, or a folder holding
fer2013.csv. The images are kept in memory as uint8 arrays; ids are "fer2013.csv:LINE".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from emoclip.data.readers import TextDecoder, csv_rows
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.data.sources.base import Source
from emoclip.errors import DataError

# The emotion codes 0..6, by the names of FER2013's own description.
FER2013_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48
_PIXELS = re.compile(r"[0-9]{1,3}(?: +[0-9]{1,3})*")


class Fer2013(Source):
    """FER2013 faces from its csv, with its given train / public test / private test."""

    modalities = ("image",)
    location = "fer2013.csv, or a folder that holds it"
    folder = "fer2013"
    classes = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    gives_splits = True

    def __init__(self, name: str = "fer2013"):
        super().__init__(name)

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        from emoclip.demo.examples import drawer, write_fer2013

        return {"root": write_fer2013(folder, per_class=12, drawer=drawer())}

    def read(self, root: Path, decoder: TextDecoder) -> Splits:
        path = root / "fer2013.csv" if root.is_dir() else root
        codes = ", ".join(f"{i}={name}" for i, name in enumerate(FER2013_CODES))
        usages = ", ".join(FER2013_USAGE)
        rows = csv_rows(path, ("emotion", "pixels", "Usage"), decoder, what="FER2013 csv")
        splits: Splits = {name: [] for name in SPLITS}
        size = SIDE * SIDE
        for line, row in rows:
            where = f"{path}:{line}"
            code = row["emotion"].strip()
            if not (code.isascii() and code.isdigit() and int(code) < len(FER2013_CODES)):
                raise DataError(f"{where}: expected an emotion code ({codes}), found {code[:40]!r}")
            pixels = row["pixels"].strip()
            values = None
            if _PIXELS.fullmatch(pixels):
                values = np.array(pixels.split(), dtype=np.int32)
            if values is None or values.size != size or values.max() > 255:
                count = len(pixels.split())
                raise DataError(
                    f"{where}: expected {size} grey values 0..255 separated by spaces "
                    f"(a {SIDE}x{SIDE} image), found {count} fields starting {pixels[:40]!r}"
                )
            usage = row["Usage"].strip()
            if usage not in FER2013_USAGE:
                raise DataError(f"{where}: expected Usage to be one of {usages}, found {usage!r}")
            image = values.astype(np.uint8).reshape(SIDE, SIDE)
            record = Record(
                id=f"{path.name}:{line}", label=FER2013_CODES[int(code)], image=image, origin=where
            )
            splits[FER2013_USAGE[usage]].append(record)
        if not any(splits.values()):
            raise DataError(f"{path} has a header but no images; expected one image a row")
        return splits
