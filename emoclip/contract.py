"""The contract between data/ and models/: the one module both import (they never import each
other; the study wing joins them).

- Modalities, and the keys of a batch: a dict with `labels` and, per modality, its inputs
  (`input_ids` and `attention_mask`, padded per batch; `pixel_values`, normalised) or its cached
  features (`text_features`, `image_features`, for frozen towers).
- Image preprocessing: what an image tower expects (size, per-channel mean and std), from the
  named normalisations.
- The tokenizer a text tower declares (TokenizerSpec): its kind and settings; the data side
  builds it (emoclip.data.tokenizer.build_tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from emoclip.errors import ConfigError

MODALITIES = ("text", "image")

# The keys of a batch, per modality.
INPUT_IDS, ATTENTION_MASK = "input_ids", "attention_mask"
PIXEL_VALUES = "pixel_values"  # normalised images, float (n, 3, size, size)
PIXELS = "pixels"  # decoded images before normalisation, uint8: the data module's alone
EPOCH = "epoch"  # a training item's epoch, which with its index seeds its augmentation
TEXT_FEATURES, IMAGE_FEATURES = "text_features", "image_features"
# The keys a network reads: raw inputs, and cached features.
INPUT_KEYS = {"text": (INPUT_IDS, ATTENTION_MASK), "image": (PIXEL_VALUES,)}
FEATURE_KEYS = {"text": TEXT_FEATURES, "image": IMAGE_FEATURES}
# Every key that carries a modality, in whatever form a batch holds it.
MODALITY_KEYS = {
    "text": (INPUT_IDS, ATTENTION_MASK, TEXT_FEATURES),
    "image": (PIXELS, PIXEL_VALUES, IMAGE_FEATURES),
}

# Per-channel (mean, std) of the image normalisations a tower or `data.normalization` names.
NORMALIZATIONS = {
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # the report's choice
    # CLIP's pretraining statistics (transformers' OPENAI_CLIP_MEAN and OPENAI_CLIP_STD).
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def normalization_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name not in NORMALIZATIONS:
        raise ConfigError(
            f"data.normalization={name!r} is not known; expected one of {sorted(NORMALIZATIONS)}"
        )
    return NORMALIZATIONS[name]


@dataclass(frozen=True)
class ImagePreprocessing:
    """What an image tower expects: square images of `size` px, normalised per channel."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


TOKENIZER_KINDS = ("trained", "pretrained", "clip_bpe")


@dataclass(frozen=True)
class TokenizerSpec:
    """The tokenizer a text tower declares (emoclip.models.base.TextTower.tokenizer_spec).

    - `trained`: word-level, its vocabulary the training texts' words (`vocab_size`,
      `min_frequency`); its JSON travels in the checkpoints;
    - `pretrained`: the one saved with a model, a hub id or a folder (`name_or_path`);
    - `clip_bpe`: CLIP's BPE from open_clip's vocabulary file (`bpe_vocab`).
    Texts are cut at `max_length` tokens.
    """

    kind: str
    max_length: int = 77
    name_or_path: str | None = None
    vocab_size: int = 8000
    min_frequency: int = 1
    bpe_vocab: str | None = None

    def __post_init__(self):
        if self.kind not in TOKENIZER_KINDS:
            raise ConfigError(f"tokenizer kind {self.kind!r}; expected one of {TOKENIZER_KINDS}")
        needed = {"pretrained": "name_or_path", "clip_bpe": "bpe_vocab"}.get(self.kind)
        if needed and not getattr(self, needed):
            raise ConfigError(f"a {self.kind} tokenizer needs its {needed}")

    @classmethod
    def from_settings(cls, kind: str, settings: Mapping[str, Any] | None, **given) -> TokenizerSpec:
        """A spec of this kind from a tower's `tokenizer` config node (the keys it knows; the
        rest, such as another kind's settings, are not this kind's) and values given here."""
        known = {f.name for f in fields(cls)} - {"kind"}
        taken = {k: v for k, v in (settings or {}).items() if k in known and v is not None}
        return cls(kind=kind, **{**taken, **given})

    @property
    def travels_in_checkpoints(self) -> bool:
        """Only a trained tokenizer exists nowhere else: its JSON is saved beside the weights."""
        return self.kind == "trained"
