"""Canonical emotion names, their synonyms, and the list of classes a study keeps."""

from __future__ import annotations

from collections.abc import Sequence

from emoclip.errors import DataError

# The canonical names, in a fixed order. Datasets use many spellings of the same emotion.
CANONICAL = (
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
    "love",
    "neutral",
)

SYNONYMS = {
    "angry": "anger",
    "mad": "anger",
    "contemptuous": "contempt",
    "disgusted": "disgust",
    "afraid": "fear",
    "scared": "fear",
    "fearful": "fear",
    "happy": "happiness",
    "joy": "happiness",
    "joyful": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
    "calm": "neutral",
}


def canonical_label(name: str, origin: str = "") -> str:
    """The canonical name for a label spelling; an unknown label stops with the known ones."""
    key = str(name).strip().lower()
    if key in CANONICAL:
        return key
    if key in SYNONYMS:
        return SYNONYMS[key]
    where = f" in {origin}" if origin else ""
    known = ", ".join(CANONICAL)
    synonyms = ", ".join(f"{k}={v}" for k, v in SYNONYMS.items())
    raise DataError(
        f"unknown emotion label {name!r}{where}. Known labels: {known} (synonyms: {synonyms})."
    )


class LabelSpace:
    """The classes a study keeps, in order; class index i is classes[i]."""

    def __init__(self, classes: Sequence[str]):
        if not classes:
            raise DataError("a study needs at least two classes; data.classes is empty")
        canonical = [canonical_label(c, origin="data.classes") for c in classes]
        if len(set(canonical)) != len(canonical):
            raise DataError(f"data.classes names a class twice (after synonyms): {canonical}")
        if len(canonical) < 2:
            raise DataError(f"a study needs at least two classes; data.classes is {canonical}")
        self.classes = tuple(canonical)
        self._index = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.classes)

    def __contains__(self, label: str) -> bool:
        return label in self._index

    def index(self, label: str) -> int:
        return self._index[label]
