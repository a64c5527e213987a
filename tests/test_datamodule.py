"""One batch contract for every model, preprocessing done once, augmentation only in training."""

import logging

import pytest
import torch

from emoclip.data.datamodule import EmotionDataModule
from emoclip.data.images import augment
from emoclip.data.records import Record
from emoclip.data.sources.base import Source
from emoclip.data.sources.synthetic import SyntheticEmotions
from emoclip.data.tokenizer import train_word_tokenizer
from emoclip.errors import ConfigError, DataError

CLASSES = ["anger", "happiness", "sadness"]


def make_datamodule(modalities, **kwargs) -> EmotionDataModule:
    dataset = SyntheticEmotions(classes=CLASSES, train_size=30, val_size=9, test_size=9)
    settings = {"batch_size": 8, "eval_batch_size": 16, "image_size": 32, **kwargs}
    dm = EmotionDataModule(dataset, CLASSES, modalities=modalities, **settings)
    if "text" in modalities:
        dm.tokenizer = train_word_tokenizer(dm.train_texts())
    dm.setup("fit")
    return dm


@pytest.mark.parametrize(
    ("modalities", "keys"),
    [
        (["text", "image"], {"labels", "index", "input_ids", "attention_mask", "pixel_values"}),
        (["text"], {"labels", "index", "input_ids", "attention_mask"}),
        (["image"], {"labels", "index", "pixel_values"}),
    ],
)
def test_batch_contract(modalities, keys):
    dm = make_datamodule(modalities)
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert set(batch) == keys
    assert batch["labels"].dtype == torch.long and batch["labels"].shape == (9,)
    if "pixel_values" in batch:
        assert batch["pixel_values"].shape == (9, 3, 32, 32)
        assert batch["pixel_values"].dtype == torch.float32
    if "input_ids" in batch:
        assert batch["input_ids"].shape == batch["attention_mask"].shape


def test_text_is_padded_per_batch_not_to_a_fixed_length():
    dm = make_datamodule(["text"])
    batch = next(iter(dm.val_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == lengths.max()
    pad = dm.tokenizer.pad_token_id
    for row, n in zip(batch["input_ids"], lengths, strict=True):
        assert (row[n:] == pad).all() and (row[:n] != pad).all()


def test_normalization_half_maps_pixels_to_minus_one_one():
    dm = make_datamodule(["image"])
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    raw = dm.encoded["val"].pixels[:9].float() / 255
    assert torch.allclose(batch["pixel_values"], (raw - 0.5) / 0.5, atol=1e-6)


def test_augmentation_only_in_training_batches_and_made_in_the_workers_as_uint8():
    dm = make_datamodule(["image"], augment={"max_rotation": 20, "hflip_p": 0.5}, num_workers=0)
    train = dm.encoded["train"]
    indices = list(range(8))
    plain = dm.collate()([train[i] for i in indices])["pixels"]
    torch.testing.assert_close(plain, train.pixels[:8])  # val / test / predict: not augmented
    augmented = dm.collate(train=True)([train[(i, 0)] for i in indices])["pixels"]
    assert augmented.dtype == torch.uint8 and augmented.shape == plain.shape
    assert not torch.equal(plain, augmented)
    # The same example in the same epoch looks the same wherever it is collated (a worker,
    # a resumed run, another batch); another epoch draws afresh.
    again = dm.collate(train=True)([train[(i, 0)] for i in reversed(indices)])["pixels"]
    torch.testing.assert_close(again.flip(0), augmented)
    assert not torch.equal(
        dm.collate(train=True)([train[(i, 1)] for i in indices])["pixels"], augmented
    )


def test_the_training_loader_augments_the_same_with_and_without_workers():
    seen = {}
    for workers in (0, 2):
        torch.manual_seed(3)
        dm = make_datamodule(["image"], augment={"max_rotation": 20}, num_workers=workers)
        batch = next(iter(dm.train_dataloader()))
        seen[workers] = batch["pixels"][batch["index"].argsort()]
    torch.testing.assert_close(seen[0], seen[2])


def test_translation_shifts_the_image_content():
    x = torch.zeros(64, 1, 16, 16, dtype=torch.uint8)
    x[:, :, 6:10, 6:10] = 255
    keys = [(0, 0, i) for i in range(64)]
    shifted = augment(x, keys, (0.0,), max_rotation=0, hflip_p=0, max_translation=0.25).float()
    rows = torch.arange(16.0).view(1, 1, 16, 1)
    centre = (shifted * rows).sum((1, 2, 3)) / shifted.sum((1, 2, 3))
    assert centre.std() > 0.5  # the square moved, by different amounts per example
    assert (centre - 7.5).abs().max() <= 0.25 * 16 + 0.5
    unchanged = augment(x, keys, (0.0,), max_rotation=0, hflip_p=0, max_translation=0.0)
    torch.testing.assert_close(unchanged, x)


def test_pixels_moved_in_from_outside_take_the_fill_that_normalises_to_zero():
    x = torch.full((32, 3, 16, 16), 7, dtype=torch.uint8)
    keys = [(0, 0, i) for i in range(32)]
    fill = (0.48, 0.46, 0.41)
    moved = augment(x, keys, fill, max_rotation=45, hflip_p=0)
    corners = moved[:, :, 0, 0].float()
    expected = torch.tensor(fill) * 255
    # A corner turned fully out of the image is the fill, one partly out a blend of the two.
    assert (corners - expected).abs().sum(1).min() <= 3
    assert ((corners >= 7) & (corners <= expected.round())).all()
    assert (moved[:, :, 8, 8] == 7).all()  # the middle is the image


def test_classes_outside_the_study_are_dropped():
    dataset = SyntheticEmotions(classes=CLASSES, train_size=30, val_size=9, test_size=9)
    dm = EmotionDataModule(dataset, ["anger", "sad"], modalities=["text"], batch_size=4)
    records = dm.load_records()
    assert {r.label for r in records["train"]} == {"anger", "sadness"}
    assert dm.classes == ("anger", "sadness")


def test_unknown_class_names_the_known_ones():
    dataset = SyntheticEmotions(classes=CLASSES, train_size=30, val_size=9, test_size=9)
    with pytest.raises(ConfigError, match="unknown emotion label 'grumpy'.*happiness"):
        EmotionDataModule(dataset, ["anger", "grumpy"], modalities=["text"])


def test_a_class_missing_from_a_split_is_an_error_before_training():
    dataset = SyntheticEmotions(classes=CLASSES, train_size=30, val_size=2, test_size=9)
    dm = EmotionDataModule(dataset, CLASSES, modalities=["text"])
    with pytest.raises(DataError, match="'val' has no examples of class 'sadness'"):
        dm.load_records()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modalities": ["audio"]}, "data.modalities"),
        ({"modalities": ["text"], "batch_size": 0}, "data.batch_size"),
        ({"modalities": ["text"], "normalization": "imagenet"}, "data.normalization"),
    ],
)
def test_bad_settings_name_their_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EmotionDataModule(SyntheticEmotions(classes=CLASSES), CLASSES, **kwargs)


def test_an_image_study_needs_an_image_size_from_its_settings_or_its_model():
    dataset = SyntheticEmotions(classes=CLASSES, train_size=14, val_size=7, test_size=7)
    dm = EmotionDataModule(dataset, CLASSES, modalities=["image"], normalization=None)
    with pytest.raises(ConfigError, match="data.image_size"):
        dm.setup()


def test_batch_size_larger_than_the_training_set_is_one_smaller_batch(caplog):
    with caplog.at_level(logging.WARNING):
        dm = make_datamodule(["text"], batch_size=64)
    assert "data.batch_size=64 is larger than the 30 training examples" in caplog.text
    batches = list(dm.train_dataloader())
    assert [len(b["labels"]) for b in batches] == [30]


class LongTexts(Source):
    """Texts of 3 words, and one of 400 words in each split."""

    modalities = ("text",)
    location = ""
    gives_splits = True

    def __init__(self):
        super().__init__("long")

    def read(self, root, decoder) -> dict[str, list[Record]]:
        def records(split):
            short = [
                Record(f"{split}{i}", label, text=f"short {label} text")
                for i, label in enumerate(CLASSES * 2)
            ]
            return [*short, Record(f"{split}-long", "anger", text="very " * 399 + "angry")]

        return {split: records(split) for split in ("train", "val", "test")}


def test_long_texts_are_truncated_to_the_tokenizer_limit_and_counted(caplog):
    dm = EmotionDataModule(LongTexts(), CLASSES, modalities=["text"], batch_size=4, name="long")
    dm.tokenizer = train_word_tokenizer(dm.train_texts(), max_length=16)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    for split in ("train", "val", "test"):
        assert (
            f"long/{split}: 1 of 7 texts were longer than the tokenizer's limit of 16 tokens "
            "(the longest 402) and were truncated"
        ) in caplog.text
        ids = dm.encoded[split].input_ids[-1]
        assert len(ids) == 16 and ids[-1] == dm.tokenizer.eos_token_id
        assert len(dm.encoded[split].input_ids[0]) == 5  # <bos> short x text <eos>


def test_memory_is_pinned_only_for_a_cuda_trainer_unless_set():
    class FakeTrainer:
        def __init__(self, device):
            self.strategy = type("Strategy", (), {"root_device": torch.device(device)})()

    dm = make_datamodule(["text"])
    assert not dm.val_dataloader().pin_memory
    dm.trainer = FakeTrainer("cuda")
    assert dm._pin_memory()
    dm.trainer = FakeTrainer("cpu")
    assert not dm._pin_memory()
    assert make_datamodule(["text"], pin_memory=True)._pin_memory()
