import re
from collections import Counter

import numpy as np
import pytest

from emoclip.data.sources.synthetic import SyntheticEmotions
from emoclip.demo.synthetic import (
    _LEXICON,
    DEFAULT_CLASSES,
    SUPPORTED_CLASSES,
    noisy_texts,
    write_text,
)
from emoclip.errors import ConfigError

SMALL = {"train_size": 42, "val_size": 14, "test_size": 14, "image_size": 32}


@pytest.fixture(scope="module")
def splits():
    return SyntheticEmotions(**SMALL, seed=3).splits()


def test_records_have_the_promised_shape(splits):
    assert set(splits) == {"train", "val", "test"}
    for split, records in splits.items():
        assert len(records) == SMALL[f"{split}_size"]
        for i, r in enumerate(records):
            assert r.id == f"synthetic/{split}/{i:06d}"
            assert r.origin == f"synthetic/{split}#{i}"
            assert r.group is None
            assert r.label in DEFAULT_CLASSES
            assert isinstance(r.text, str) and r.text
            assert isinstance(r.image, np.ndarray)
            assert r.image.dtype == np.uint8
            assert r.image.shape == (32, 32)


def test_same_seed_gives_identical_data(splits):
    again = SyntheticEmotions(**SMALL, seed=3).splits()
    for split in splits:
        for a, b in zip(splits[split], again[split], strict=True):
            assert a.label == b.label and a.text == b.text
            assert np.array_equal(a.image, b.image)


def test_another_seed_gives_other_data(splits):
    other = SyntheticEmotions(**SMALL, seed=4).splits()
    for split in splits:
        pairs = zip(splits[split], other[split], strict=True)
        assert not any(np.array_equal(a.image, b.image) for a, b in pairs)
        assert [r.text for r in splits[split]] != [r.text for r in other[split]]


def test_splits_share_no_image(splits):
    seen = {}
    for records in splits.values():
        for r in records:
            key = r.image.tobytes()
            assert key not in seen, f"{r.id} repeats {seen[key]}"
            seen[key] = r.id


def test_classes_are_balanced(splits):
    for split, records in splits.items():
        counts = Counter(r.label for r in records)
        assert set(counts) == set(DEFAULT_CLASSES)
        assert max(counts.values()) - min(counts.values()) <= 1, split


def test_uneven_sizes_stay_balanced_within_one():
    records = SyntheticEmotions(["happy", "sad", "calm"], 10, 0, 0, image_size=16).splits()
    counts = Counter(r.label for r in records["train"])
    assert sorted(counts.values()) == [3, 3, 4]
    assert set(counts) == {"happiness", "sadness", "neutral"}


def test_images_of_a_class_vary(splits):
    by_class: dict[str, list[np.ndarray]] = {}
    for r in splits["train"]:
        by_class.setdefault(r.label, []).append(r.image.astype(np.float32))
    for label, images in by_class.items():
        stack = np.stack(images)
        assert stack.std(axis=0).mean() > 5, label


def test_every_supported_class_is_drawn_and_written():
    data = SyntheticEmotions(SUPPORTED_CLASSES, len(SUPPORTED_CLASSES), 0, 0, 16, seed=1)
    records = data.splits()["train"]
    assert sorted(r.label for r in records) == sorted(SUPPORTED_CLASSES)
    assert {"neutral", "love"} <= set(SUPPORTED_CLASSES)


@pytest.mark.parametrize("label", SUPPORTED_CLASSES)
def test_text_carries_its_class(label):
    rng = np.random.default_rng(0)
    phrases = [phrase for kind in _LEXICON[label].values() for phrase in kind]
    cue = re.compile("|".join(re.escape(p).replace(r"\{poss\}", r"\w+") for p in phrases))
    texts = [write_text(label, rng) for _ in range(40)]
    assert all(cue.search(t) for t in texts)
    assert len(set(texts)) > 30


def test_label_noise_rate_matches_text_noise():
    rng = np.random.default_rng(0)
    labels = [DEFAULT_CLASSES[i % len(DEFAULT_CLASSES)] for i in range(4000)]
    written = noisy_texts(labels, DEFAULT_CLASSES, 0.2, rng)
    swapped = [source != label for label, (_, source) in zip(labels, written, strict=True)]
    assert abs(np.mean(swapped) - 0.2) < 0.03
    assert all(source in DEFAULT_CLASSES for _, source in written)
    clean = noisy_texts(labels[:200], DEFAULT_CLASSES, 0.0, rng)
    assert [source for _, source in clean] == labels[:200]


def test_text_noise_leaves_the_faces_alone(splits):
    noisy = SyntheticEmotions(**SMALL, seed=3, text_noise=0.5).splits()
    for a, b in zip(splits["val"], noisy["val"], strict=True):
        assert a.label == b.label
        assert np.array_equal(a.image, b.image)


@pytest.mark.parametrize("classes", [["anger", "pride"], ["anger", "bogus"]])
def test_unknown_class_is_a_config_error_naming_it(classes):
    with pytest.raises(ConfigError, match=classes[1]):
        SyntheticEmotions(classes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": ["anger", "angry"]},
        {"classes": ["anger"]},
        {"train_size": -1},
        {"image_size": 8},
        {"text_noise": 1.5},
        {"seed": -1},
    ],
)
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        SyntheticEmotions(**kwargs)
