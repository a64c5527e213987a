"""`data=mvsa_single`: MVSA-Single (Niu et al., 2016), tweets with their own image, labelled
for sentiment, in the layout it is distributed in:

    ROOT/data/<guid>.jpg    the tweet's image
    ROOT/data/<guid>.txt    its text, one line, in whatever encoding it was saved in
    ROOT/label/train.txt    "guid,tag" with a header line, tag positive / neutral / negative

It has no official split (emoclip's is stratified, grouped by duplicates: the set repeats
images and texts) and no author ids. Its texts are read with data.encoding=auto: about a
quarter of them are not UTF-8 (most are GB18030).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from emoclip.data.readers import TextDecoder, csv_rows, listing
from emoclip.data.records import Record
from emoclip.data.sources.base import Source
from emoclip.errors import DataError

LAYOUT = (
    "expected ROOT/data/<guid>.jpg and ROOT/data/<guid>.txt for each tweet and "
    "ROOT/label/train.txt of 'guid,tag' lines under a header"
)


class MvsaSingle(Source):
    """MVSA-Single image + text pairs, sentiment labels."""

    modalities = ("text", "image")
    location = "the MVSA-Single folder (data/ and label/)"
    folder = "mvsa_single"
    label_space = "sentiment"
    classes = ("negative", "neutral", "positive")
    encoding = "auto"
    group_hint = "MVSA-Single's files carry no author ids, so nothing can group by author."

    def __init__(self, name: str = "mvsa_single", labels_file: str = "label/train.txt"):
        super().__init__(name)
        self.labels_file = labels_file

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        from emoclip.demo.examples import drawer, write_mvsa

        return {
            "root": write_mvsa(folder, per_class=12, drawer=drawer()),
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        }

    def read(self, root: Path, decoder: TextDecoder) -> list[Record]:
        if not root.is_dir():
            raise DataError(f"MVSA-Single folder {root} does not exist; {LAYOUT}")
        labels = root / self.labels_file
        data = root / "data"
        if not labels.is_file() or not data.is_dir():
            raise DataError(
                f"MVSA-Single folder {root} has no {self.labels_file} or no data/ "
                f"(found: {listing(root)}); {LAYOUT}"
            )
        rows = [
            (f"{labels}:{line}", row["guid"].strip(), row["tag"].strip())
            for line, row in csv_rows(labels, ("guid", "tag"), decoder, what="label file")
        ]
        seen: dict[str, str] = {}
        for where, guid, tag in rows:
            if not guid or not tag:
                raise DataError(
                    f"{where}: expected 'guid,tag' with both set, found {guid!r},{tag!r}"
                )
            if guid in seen:
                raise DataError(f"{where}: guid {guid} is also labelled at {seen[guid]}")
            seen[guid] = where
            for suffix in (".txt", ".jpg"):
                if not (data / f"{guid}{suffix}").is_file():
                    raise DataError(f"{where}: tweet {guid} has no {data / (guid + suffix)}")
        texts = decoder.read_many([data / f"{guid}.txt" for _, guid, _ in rows])
        records = []
        for (where, guid, tag), text in zip(rows, texts, strict=True):
            records.append(
                Record(
                    id=guid,
                    label=tag,
                    # empty: none (data.skip_bad decides, in the data module)
                    text=" ".join(text.split()) or None,
                    image=data / f"{guid}.jpg",
                    origin=where,
                )
            )
        return records
