"""Data sources: subject-grouped splits of CK+, given DAIR splits, pairing by label."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoclip.data.datamodule import EmotionDataModule
from emoclip.data.sources import CkPlus, DairEmotion, PairedByLabel, SubjectSplit
from emoclip.data.tokenizer import train_word_tokenizer
from emoclip.errors import ConfigError, DataError
from emoclip.train import train
from tests.conftest import QUIET, compose_train

CK_CLASSES = ("anger", "happy", "sadness", "surprise", "contempt")
DAIR = {"anger": "anger", "joy": "happiness", "sadness": "sadness", "surprise": "surprise"}


def write_ckplus48(root: Path, subjects: int = 12) -> Path:
    """Class folders in the CK+48 layout: <class>/S<subject>_<seq>_<frame>.png, 3 peak frames."""
    rng = np.random.default_rng(0)
    for s in range(subjects):
        for c, name in enumerate(CK_CLASSES):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for frame in range(3):
                pixels = rng.integers(0, 255, (48, 48), dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels).save(folder / f"S{s:03d}_{c + 1:03d}_{frame + 10:08d}.png")
    return root


def write_dair(root: Path, per_class: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        lines = [
            f"{split} text {i} about {canonical}; really;{word}"
            for word, canonical in DAIR.items()
            for i in range(per_class)
        ]
        lines.append("i love this;love")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def ckplus_root(tmp_path):
    return write_ckplus48(tmp_path / "ck")


@pytest.fixture
def dair_root(tmp_path):
    return write_dair(tmp_path / "dair")


def test_ckplus_split_keeps_subjects_apart(ckplus_root):
    splits = CkPlus(str(ckplus_root), SubjectSplit(val_fraction=0.2, test_fraction=0.2)).splits()
    groups = {split: {r.group for r in records} for split, records in splits.items()}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sum(len(r) for r in splits.values()) == 12 * 5 * 3


def test_kfold_by_subject_covers_every_subject_once(ckplus_root):
    tested = []
    for fold in range(4):
        split = SubjectSplit(num_folds=4, fold=fold, val_fraction=0.2)
        tested += sorted({r.group for r in CkPlus(str(ckplus_root), split).splits()["test"]})
    assert sorted(tested) == sorted(f"S{s:03d}" for s in range(12))


def test_too_many_folds_is_a_clear_error(ckplus_root):
    with pytest.raises(ConfigError, match="data.num_folds"):
        CkPlus(str(ckplus_root), SubjectSplit(num_folds=50, fold=0)).splits()


def test_unset_root_names_the_override():
    with pytest.raises(ConfigError, match=r"data.image_root"):
        CkPlus(None, SubjectSplit())
    with pytest.raises(ConfigError, match=r"data.text_root"):
        DairEmotion("")


def test_missing_folder_explains_the_layout(tmp_path):
    with pytest.raises(DataError, match="data.image_root") as err:
        CkPlus(str(tmp_path / "nope"), SubjectSplit()).splits()
    assert "cohn-kanade-images" in str(err.value)


def test_pairing_by_label_fixed_for_val_and_test(ckplus_root, dair_root):
    def pair(seed):
        image = CkPlus(str(ckplus_root), SubjectSplit(val_fraction=0.2, test_fraction=0.2))
        return PairedByLabel(image, DairEmotion(str(dair_root)), seed=seed).splits()

    first, again, other = pair(0), pair(0), pair(1)
    for split in ("val", "test"):
        assert [r.text for r in first[split]] == [r.text for r in again[split]]
        for r in first[split]:
            assert r.label in r.text and r.image is not None  # the text is of the image's class
            assert f"{split} text" in r.text  # from the same split of the text source
    assert [r.text for r in first["test"]] != [r.text for r in other["test"]]
    # contempt has no DAIR text: those images are dropped
    assert all(r.label != "contempt" for rs in first.values() for r in rs)


def test_training_texts_are_redrawn_each_epoch(ckplus_root, dair_root):
    image = CkPlus(str(ckplus_root), SubjectSplit(val_fraction=0.2, test_fraction=0.2))
    source = PairedByLabel(image, DairEmotion(str(dair_root)), seed=0)
    classes = ["anger", "happiness", "sadness", "surprise"]
    dm = EmotionDataModule(source, classes, ["text", "image"], batch_size=8, image_size=32)
    # The vocabulary comes from every training text the epochs can draw, not one per image.
    pool_texts = {r.text for c in classes for r in source.train_text_pool()[c]}
    assert set(dm.train_texts()) == pool_texts
    dm.tokenizer = train_word_tokenizer(dm.train_texts())
    dm.setup("fit")
    loader = dm.train_dataloader()

    def epoch_texts(epoch):
        loader.sampler.set_epoch(epoch)
        pairs = {}
        for batch in loader:
            for i, ids, label in zip(
                batch["index"], batch["input_ids"], batch["labels"], strict=True
            ):
                words = dm.tokenizer.decode(ids, skip_special_tokens=True)
                assert classes[label] in words
                pairs[int(i)] = words
        return pairs

    e0, e0_again, e1 = epoch_texts(0), epoch_texts(0), epoch_texts(1)
    assert e0 == e0_again
    assert e0 != e1
    assert sorted(e0) == list(range(len(dm.encoded["train"])))


def test_paired_study_writes_splits_and_ablations(ckplus_root, dair_root, tmp_path):
    cfg = compose_train(
        [
            "experiment=paper_tiny",
            f"data.image_root={ckplus_root}",
            f"data.text_root={dair_root}",
            "data.classes=[anger,happiness,sadness,surprise]",
            "data.dataset.image.split.test_fraction=0.25",
            "data.dataset.image.split.val_fraction=0.25",
            "model.backbone.image_size=32",
            "debug=fdr",
            *QUIET,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    for scope in ("test", "test_text_only", "test_image_only"):
        assert 0 <= metrics[f"{scope}/acc"] <= 1
    splits = json.loads((tmp_path / "splits.json").read_text())
    ids = {split: {i.split("+")[0] for i in ids} for split, ids in splits.items()}
    subjects = {split: {i.split("/")[-1][:4] for i in v} for split, v in ids.items()}
    assert not subjects["train"] & subjects["test"]


def _truncate_one_image(root: Path) -> Path:
    victim = sorted((root / "anger").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    return victim


def test_unreadable_image_names_the_file(ckplus_root):
    victim = _truncate_one_image(ckplus_root)
    source = CkPlus(str(ckplus_root), SubjectSplit(val_fraction=0.2, test_fraction=0.2))
    dm = EmotionDataModule(source, ["anger", "happiness"], ["image"], image_size=32)
    with pytest.raises(DataError, match=victim.name):
        dm.setup("fit")


def test_skip_bad_warns_and_counts(ckplus_root, caplog):
    victim = _truncate_one_image(ckplus_root)
    source = CkPlus(str(ckplus_root), SubjectSplit(val_fraction=0.2, test_fraction=0.2))
    dm = EmotionDataModule(source, ["anger", "happiness"], ["image"], image_size=32, skip_bad=True)
    dm.setup("fit")
    assert victim.name in caplog.text
    assert "skipped 1 unreadable images" in caplog.text
    kept = sum(len(split) for split in dm.encoded.values())
    assert kept == 12 * 2 * 3 - 1
    assert all(victim.name not in i for ids in dm.split_ids().values() for i in ids)
