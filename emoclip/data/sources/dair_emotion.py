"""`data=dair_emotion`: the DAIR-AI emotion texts (Saravia et al., 2018), its own splits.

data.root holds train.txt, val.txt, test.txt ("text;label" a line, split on the last ";"), or
the Hugging Face form: train.*, validation.* (or val.*), test.* as jsonl, csv or parquet with
columns "text" and "label" (integer labels 0..5 = sadness, joy, love, anger, fear, surprise,
or label names).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from emoclip.data.readers import TextDecoder, lines
from emoclip.data.records import Record, Splits
from emoclip.data.sources.base import Source
from emoclip.data.sources.text_table import TextTable, split_files
from emoclip.errors import DataError

log = logging.getLogger(__name__)

# Label order of the Hugging Face copy of dair-ai/emotion.
DAIR_HF_LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")

LAYOUT = """\
either the text form ROOT/train.txt, ROOT/val.txt, ROOT/test.txt (one "text;label" a
line), or the Hugging Face form ROOT/train.*, ROOT/validation.* (or val.*), ROOT/test.* as
.jsonl, .json (JSON lines), .csv or .parquet with columns "text" and "label" (integer labels
0..5 = sadness, joy, love, anger, fear, surprise, or label names). A copy of
datasets.load_dataset("dair-ai/emotion") saved with to_json or to_parquet per split works.
Set the folder with data.root=PATH."""


class DairEmotion(Source):
    """DAIR-AI emotion text, with its given train/val/test."""

    modalities = ("text",)
    location = "the DAIR-AI emotion folder (train.txt, val.txt, test.txt)"
    folder = "dair_emotion"
    classes = ("anger", "fear", "happiness", "love", "sadness", "surprise")
    gives_splits = True

    def __init__(self, name: str = "dair_emotion"):
        super().__init__(name)

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        from emoclip.demo.examples import drawer, write_dair

        return {"root": write_dair(folder, per_class=12, drawer=drawer())}

    def read(self, root: Path, decoder: TextDecoder) -> Splits:
        if not root.is_dir():
            raise DataError(f"DAIR-AI emotion folder {root} does not exist; expected {LAYOUT}")
        if all((root / f"{split}.txt").is_file() for split in ("train", "val", "test")):
            return {
                split: read_text_label_file(root / f"{split}.txt", decoder)
                for split in ("train", "val", "test")
            }
        table = TextTable(self.name, label_names=DAIR_HF_LABELS)
        return {
            split: [r for _, r in table.read_table(path, decoder)]
            for split, path in split_files(root, LAYOUT).items()
        }


def read_text_label_file(path: Path, decoder: TextDecoder, sep: str = ";") -> list[Record]:
    """DAIR-AI style "text;label" lines, split on the last separator; blank lines skipped."""
    records = []
    blank = 0
    for number, line in enumerate(lines(decoder.read(path)), start=1):
        if not line.strip():
            blank += 1
            continue
        where = f"{path}:{number}"
        text, found, label = line.rpartition(sep)
        text, label = text.strip(), label.strip()
        if not found or not text or not label:
            raise DataError(
                f"{where}: expected 'text{sep}label' with a non-empty text and label, "
                f"found {line[:80]!r}"
            )
        records.append(Record(id=f"{path.name}:{number}", label=label, text=text, origin=where))
    if blank:
        log.warning("%s: skipped %d blank line(s)", path, blank)
    if not records:
        raise DataError(f"{path} has no examples; expected one 'text{sep}label' a line")
    return records
