"""Label spaces: the names a study's classes may have, their synonyms, and the classes it keeps.

A reader returns each file's own label names ("happy", "pos", "4"); the study's label space
maps them to its canonical class names. Three kinds:

- `emotion`: anger, contempt, disgust, fear, happiness, sadness, surprise, love, neutral, with
  the spellings data sets use (happy = joy = happiness, angry = anger, ...);
- `sentiment`: negative, neutral, positive (neg, neu, pos, ...);
- `custom`: your own class names, exactly those listed in data.classes.

Any of them takes a `label_map` from file labels to class names (`{angry: anger}`), applied
first. An unknown label stops with the label, its file and line, the label space and its names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from emoclip.errors import ConfigError, DataError


@dataclass(frozen=True)
class Vocabulary:
    """The canonical names of a built-in label space, in order, and their synonyms."""

    names: tuple[str, ...]
    synonyms: Mapping[str, str] = field(default_factory=dict)


EMOTION = Vocabulary(
    names=(
        "anger",
        "contempt",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "surprise",
        "love",
        "neutral",
    ),
    synonyms={
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
    },
)
SENTIMENT = Vocabulary(
    names=("negative", "neutral", "positive"),
    synonyms={"neg": "negative", "neu": "neutral", "pos": "positive"},
)
LABEL_SPACES = {"emotion": EMOTION, "sentiment": SENTIMENT}
CUSTOM = "custom"


def normalise_label(name: object) -> str:
    """How labels are compared: Unicode NFKC, case-folded, outer spaces removed."""
    return unicodedata.normalize("NFKC", str(name)).strip().casefold()


class LabelSpace:
    """The classes a study keeps, in order (class index i is classes[i]), in a label space.

    name:      emotion, sentiment or custom.
    classes:   the kept classes; None until `keep` is called (e.g. the classes found in the data).
               custom needs them: they are its only names.
    label_map: file label -> class name, applied before the names and synonyms.
    """

    def __init__(
        self,
        name: str = "emotion",
        classes: Sequence[str] | None = None,
        label_map: Mapping[str, str] | None = None,
    ):
        if name != CUSTOM and name not in LABEL_SPACES:
            raise ConfigError(
                f"data.label_space={name!r} is not known; expected one of "
                f"{', '.join([*LABEL_SPACES, CUSTOM])} (custom: the names in data.classes)"
            )
        self.name = name
        if name == CUSTOM:
            if not classes:
                raise ConfigError(
                    "data.label_space=custom takes its class names from data.classes, which is "
                    "not set; e.g. data.classes=[cat,dog]"
                )
            names = tuple(str(c).strip() for c in classes)
            self.vocabulary = Vocabulary(names=names)
        else:
            self.vocabulary = LABEL_SPACES[name]
        self._names = {normalise_label(n): n for n in self.vocabulary.names}
        self._synonyms = {normalise_label(k): v for k, v in self.vocabulary.synonyms.items()}
        self.label_map = {}
        for raw, target in dict(label_map or {}).items():
            self.label_map[normalise_label(raw)] = self._known(
                target, "data.label_map", ConfigError
            )
        self.classes: tuple[str, ...] | None = None
        self._index: dict[str, int] = {}
        if classes:
            self.keep(classes, "data.classes")

    def keep(self, classes: Iterable[str], origin: str = "data.classes") -> LabelSpace:
        """Set the kept classes (any spelling the space knows), in the given order."""
        canonical = [self._known(c, origin, ConfigError) for c in classes]
        if len(set(canonical)) != len(canonical):
            raise ConfigError(f"{origin} names a class twice (after synonyms): {canonical}")
        if len(canonical) < 2:
            raise ConfigError(f"a study needs at least two classes; {origin} is {canonical}")
        self.classes = tuple(canonical)
        self._index = {c: i for i, c in enumerate(self.classes)}
        return self

    def canonical(self, label: object, origin: str = "") -> str:
        """The class name for a file's label; an unknown label is a DataError naming the space."""
        return self._known(label, origin, DataError)

    def order(self, names: Iterable[str]) -> list[str]:
        """Canonical names in the label space's own order."""
        rank = {n: i for i, n in enumerate(self.vocabulary.names)}
        return sorted(set(names), key=lambda n: rank[n])

    def describe(self) -> dict:
        """What a checkpoint records: the space, its kept classes, the label map."""
        return {
            "name": self.name,
            "classes": list(self.classes or ()),
            "label_map": dict(self.label_map),
        }

    def _known(self, label: object, origin: str, error: type[Exception]) -> str:
        key = normalise_label(label)
        if key in self.label_map:
            return self.label_map[key]
        if key in self._names:
            return self._names[key]
        if key in self._synonyms:
            return self._synonyms[key]
        where = f" in {origin}" if origin else ""
        names = ", ".join(self.vocabulary.names)
        synonyms = ", ".join(f"{k}={v}" for k, v in self.vocabulary.synonyms.items())
        known = f"{names} (synonyms: {synonyms})" if synonyms else names
        raise error(
            f"unknown {self.name} label {str(label)!r}{where}. The {self.name} label space knows: "
            f"{known}. Map other labels with data.label_map (e.g. {{{str(label)}: "
            f"{self.vocabulary.names[0]}}}), or choose another data.label_space"
        )

    def __len__(self) -> int:
        return len(self.classes or ())

    def __contains__(self, label: str) -> bool:
        return label in self._index

    def index(self, label: str) -> int:
        return self._index[label]


def canonical_label(name: str, origin: str = "") -> str:
    """The canonical emotion name for a spelling; an unknown label is a DataError."""
    return LabelSpace("emotion").canonical(name, origin)
