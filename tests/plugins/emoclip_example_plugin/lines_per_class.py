"""`data=lines_per_class`: one text file per class, one example a line: ROOT/<label>.txt."""

from collections.abc import Mapping
from pathlib import Path

from emoclip.data.readers import TextDecoder, lines
from emoclip.data.records import Record
from emoclip.data.sources.base import Source
from emoclip.errors import DataError


class LinesPerClass(Source):
    modalities = ("text",)
    location = "a folder of <label>.txt files, one text a line"

    def __init__(self, name: str = "lines_per_class"):
        super().__init__(name)

    def read(self, root: Path, decoder: TextDecoder) -> list[Record]:
        files = sorted(root.glob("*.txt")) if root.is_dir() else []
        if not files:
            raise DataError(f"{root}: no <label>.txt files; expected {self.location}")
        return [
            Record(id=f"{f.name}:{n}", label=f.stem, text=line.strip(), origin=f"{f}:{n}")
            for f in files
            for n, line in enumerate(lines(decoder.read(f)), start=1)
            if line.strip()
        ]

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        """A few files of this format, for the tests; returns the data keys that read them."""
        folder.mkdir(parents=True, exist_ok=True)
        for label, word in (("joy", "glad"), ("sadness", "blue"), ("anger", "mad")):
            texts = [f"i am so {word} today, number {i}" for i in range(20)]
            (folder / f"{label}.txt").write_text("\n".join(texts) + "\n")
        return {"root": folder}
