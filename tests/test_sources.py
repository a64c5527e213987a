"""Data sources: subject-grouped splits of CK+, given DAIR splits, pairing by label, duplicates
as groups, and the warnings a split that cannot be honest gives."""

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoclip.data.datamodule import EmotionDataModule
from emoclip.data.labels import LabelSpace
from emoclip.data.readers import TextDecoder
from emoclip.data.sources.base import LOCATION_KEYS, Source, source_class, split_protocol
from emoclip.data.sources.ckplus import CkPlus
from emoclip.data.sources.dair_emotion import DairEmotion
from emoclip.data.sources.image_folders import ImageFolders
from emoclip.data.sources.manifest import Manifest
from emoclip.data.sources.paired import PairedByLabel
from emoclip.data.splits import GroupedSplit
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


def load(source: Source, root, space: str = "emotion", **split) -> dict:
    """A source's splits as a study gets them."""
    settings = {"val_fraction": 0.2, "test_fraction": 0.2, **split}
    return source.load(root, LabelSpace(space), None, GroupedSplit(**settings)).splits


def split_of(splits: dict) -> dict[str, str]:
    return {r.id: name for name, records in splits.items() for r in records}


def test_ckplus_split_keeps_subjects_apart(ckplus_root):
    splits = load(CkPlus(), ckplus_root)
    groups = {split: {r.group for r in records} for split, records in splits.items()}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sum(len(r) for r in splits.values()) == 12 * 5 * 3


def test_kfold_by_subject_covers_every_subject_once(ckplus_root):
    tested = []
    for fold in range(4):
        splits = load(CkPlus(), ckplus_root, num_folds=4, fold=fold, test_fraction=0.15)
        tested += sorted({r.group for r in splits["test"]})
    assert sorted(tested) == sorted(f"S{s:03d}" for s in range(12))


def test_too_many_folds_is_a_clear_error(ckplus_root):
    with pytest.raises(ConfigError, match="data.num_folds"):
        load(CkPlus(), ckplus_root, num_folds=50, fold=0)


def test_unset_root_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data.root is not set: point it at a folder with one"):
        EmotionDataModule(ImageFolders(), modalities=["image"], image_size=32)
    with pytest.raises(ConfigError, match=r"default location .*nothing/ckplus48 .*EMOCLIP_DATA"):
        EmotionDataModule(CkPlus(), modalities=["image"], image_size=32, data_dir="nothing")
    write_ckplus48(tmp_path / "ckplus48", subjects=2)
    found = EmotionDataModule(CkPlus(), modalities=["image"], image_size=32, data_dir=str(tmp_path))
    assert found.root == tmp_path / "ckplus48"


def test_missing_folder_explains_the_layout(tmp_path):
    with pytest.raises(DataError, match="data.root") as err:
        load(CkPlus(), tmp_path / "nope")
    assert "cohn-kanade-images" in str(err.value)


def test_a_source_without_splits_of_its_own_refuses_nothing_but_a_given_one_refuses_folds(
    dair_root,
):
    dm = EmotionDataModule(DairEmotion(), modalities=["text"], root=str(dair_root), num_folds=3)
    with pytest.raises(ConfigError, match="gives its own train/val/test, so data.num_folds"):
        dm.load_records()


def test_pairing_by_label_fixed_for_val_and_test(ckplus_root, dair_root):
    roots = {"image": ckplus_root, "text": dair_root}

    def paired(seed):
        return load(PairedByLabel(CkPlus(), DairEmotion(), seed=seed), roots)

    first, again, other = paired(0), paired(0), paired(1)
    for split in ("val", "test"):
        assert [r.text for r in first[split]] == [r.text for r in again[split]]
        for r in first[split]:
            assert r.label in r.text and r.image is not None  # the text is of the image's class
            assert f"{split} text" in r.text  # from the same split of the text source
    assert [r.text for r in first["test"]] != [r.text for r in other["test"]]
    # contempt has no DAIR text: those images are dropped
    assert all(r.label != "contempt" for rs in first.values() for r in rs)


def test_a_pair_reads_one_root_per_part(ckplus_root, dair_root):
    source = PairedByLabel(CkPlus(), DairEmotion())
    with pytest.raises(ConfigError, match="set data.root.image=... and data.root.text="):
        source.locate(str(ckplus_root), None)
    with pytest.raises(ConfigError, match="data.root.audio: data=paired reads only"):
        source.locate({"image": str(ckplus_root), "text": None, "audio": "x"}, None)
    located = source.locate({"image": str(ckplus_root), "text": str(dair_root)}, None)
    assert located == {"image": ckplus_root, "text": dair_root}


def test_training_texts_are_redrawn_each_epoch(ckplus_root, dair_root):
    source = PairedByLabel(CkPlus(), DairEmotion(), seed=0)
    classes = ["anger", "happiness", "sadness", "surprise"]
    dm = EmotionDataModule(
        source,
        classes,
        ["text", "image"],
        batch_size=8,
        image_size=32,
        root={"image": str(ckplus_root), "text": str(dair_root)},
        val_fraction=0.2,
        test_fraction=0.2,
    )
    texts = dm.train_texts()
    # The vocabulary comes from every training text the epochs can draw, not one per image.
    pool, _ = source.train_text_pool()
    assert set(texts) == {r.text for c in classes for r in pool[c]}
    dm.tokenizer = train_word_tokenizer(texts)
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
            f"data.root.image={ckplus_root}",
            f"data.root.text={dair_root}",
            "data.classes=[anger,happiness,sadness,surprise]",
            "data.test_fraction=0.25",
            "data.val_fraction=0.25",
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
    ids = {split: {i.split("+")[0] for i in splits[split]} for split in ("train", "val", "test")}
    subjects = {split: {i.split("/")[-1][:4] for i in v} for split, v in ids.items()}
    assert not subjects["train"] & subjects["test"]
    protocol = splits["protocol"]
    assert protocol["image"]["split"] == "grouped" and protocol["image"]["groups"] == "subject"
    assert protocol["text"]["split"] == "given"


def _truncate_one_image(root: Path) -> Path:
    victim = sorted((root / "anger").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    return victim


def ckplus_module(root, **kwargs) -> EmotionDataModule:
    settings = {"image_size": 32, "val_fraction": 0.2, "test_fraction": 0.2, **kwargs}
    return EmotionDataModule(
        CkPlus(), ["anger", "happiness"], ["image"], root=str(root), **settings
    )


def test_unreadable_image_names_the_file(ckplus_root):
    victim = _truncate_one_image(ckplus_root)
    with pytest.raises(DataError, match=victim.name):
        ckplus_module(ckplus_root).setup("fit")


def test_skip_bad_warns_and_counts(ckplus_root, caplog):
    victim = _truncate_one_image(ckplus_root)
    dm = ckplus_module(ckplus_root, skip_bad=True)
    dm.setup("fit")
    assert victim.name in caplog.text
    assert "skipped 1 unreadable images" in caplog.text
    kept = sum(len(split) for split in dm.encoded.values())
    assert kept == 12 * 2 * 3 - 1
    ids = dm.split_ids()
    assert all(victim.name not in i for split in ("train", "val", "test") for i in ids[split])


# ---------------------------------------------------------------- honest splits


def test_identical_images_under_two_names_stay_in_one_split(tmp_path):
    """Class folders of photos named without subject ids, where some photos are byte-identical
    copies under another name (even in another class folder)."""
    rng = np.random.default_rng(1)
    for c, label in enumerate(("happy", "sad")):
        for i in range(20):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            (tmp_path / label).mkdir(exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / label / f"photo{c}_{i}.png")
    copies = {}
    for i in range(8):
        original = tmp_path / "happy" / f"photo0_{i}.png"
        copy = tmp_path / ("sad" if i % 2 else "happy") / f"copy_{i}.png"
        shutil.copyfile(original, copy)
        copies[f"happy/{original.name}"] = copy.relative_to(tmp_path).as_posix()
    for seed in range(3):
        splits = load(ImageFolders(), tmp_path, seed=seed)
        where = split_of(splits)
        for original, copy in copies.items():
            assert where[original] == where[copy]


def test_duplicate_manifest_rows_never_straddle_splits(tmp_path, caplog):
    image = tmp_path / "images"
    image.mkdir()
    rows = ["image,text,label,group"]
    rng = np.random.default_rng(2)
    for i in range(36):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(image / f"{i}.png")
    for i in range(30):
        label = ("positive", "negative")[i % 2]
        rows.append(f"images/{i}.png,post number {i},{label},")
    # Duplicates: the same image again under another row, and the same text (other spacing
    # and case) with another image; one row shares a person with another.
    rows += [f"images/{i}.png,a repost {i},{('positive', 'negative')[i % 2]}," for i in range(6)]
    rows += [f"images/{i + 30}.png,  POST number  {i} ,positive," for i in range(6)]
    rows[1] += "anna"
    rows[2] += "anna"
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.INFO):
        splits = load(Manifest(), manifest, space="sentiment")
    where = split_of(splits)
    by_image: dict[str, set[str]] = {}
    by_text: dict[str, set[str]] = {}
    for split, records in splits.items():
        for r in records:
            by_image.setdefault(str(r.image), set()).add(split)
            by_text.setdefault(" ".join(r.text.lower().split()), set()).add(split)
    assert all(len(s) == 1 for s in by_image.values())
    assert all(len(s) == 1 for s in by_text.values())
    assert where["m.csv:2"] == where["m.csv:3"]  # the shared person
    assert "6 groups of identical images (12 records" in caplog.text
    assert "6 groups of identical texts (12 records" in caplog.text


def test_class_folders_without_subject_ids_warn_once_naming_the_fix(tmp_path, caplog):
    rng = np.random.default_rng(3)
    for label in ("happy", "sad"):
        (tmp_path / label).mkdir()
        for i in range(10):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"IMG_{i:04d}.jpg")
    with caplog.at_level(logging.WARNING):
        load(ImageFolders(), tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "carry no subject or group ids" in message and "both training and test" in message
    assert "data.dataset.group_pattern" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a pattern that names the subject: no warning
        load(ImageFolders(group_pattern=r"IMG_\d{3}(\d)"), tmp_path)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_short_ckplus_sequences_warn_with_counts(tmp_path, caplog):
    def sequence(subject, number, frames, code):
        folder = tmp_path / "cohn-kanade-images" / subject / number
        folder.mkdir(parents=True)
        for f in range(1, frames + 1):
            Image.new("L", (4, 4), f).save(folder / f"{subject}_{number}_{f:08d}.png")
        labels = tmp_path / "Emotion" / subject / number
        labels.mkdir(parents=True)
        (labels / f"{subject}_{number}_{frames:08d}_emotion.txt").write_text(f"{code}.0\n")

    sequence("S001", "001", 6, 1)
    sequence("S002", "001", 2, 5)
    sequence("S003", "001", 3, 5)
    with caplog.at_level(logging.WARNING):
        CkPlus(peak_frames=3).read(tmp_path, TextDecoder())
    assert "2 labelled sequence(s) have peak_frames=3 frames or fewer (the shortest 2)" in (
        caplog.text
    )
    assert "neutral onset" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        CkPlus(peak_frames=1).read(tmp_path, TextDecoder())
    assert "sequence(s)" not in caplog.text


# ---------------------------------------------------------------- what others ask of a source


@pytest.mark.parametrize(
    ("overrides", "protocol"),
    [
        (["data=image_folders"], "grouped by duplicates only (no subject ids)"),
        (
            ["data=image_folders", "data.dataset.group_pattern='^(S\\d+)_'"],
            "grouped by file-name pattern",
        ),
        (["data=image_folders", "data.num_folds=5"], "5 folds grouped by duplicates only"),
        (["data=text_table"], "given split if its files have one, else grouped by duplicates"),
        (["data=text_table", "data.dataset.group_column=author"], "given split if its files"),
        (["data=mvsa_single"], "grouped by duplicates only"),
        (["data=fer2013"], "given split"),
        (["data=manifest"], "given split if its files have one, else grouped by its group"),
    ],
)
def test_every_source_describes_its_split_protocol(overrides, protocol, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose_train(overrides, tmp_path)
    assert split_protocol(OmegaConf.to_container(cfg.data, resolve=False)).startswith(protocol)


def test_location_keys_come_from_the_data_config(tmp_path):
    """Every location a data config names is under data.root (a pair's too: root.image,
    root.text) or data.data_dir: no source has a location key of its own."""
    data = compose_train(["data=ckplus_dair"], tmp_path).data
    assert {"data.root", "data.data_dir"} == LOCATION_KEYS
    assert set(data.root) == {"image", "text"}
    assert not any("root" in key or "dir" in key for key in data.dataset.image)


def test_only_emoclips_own_source_classes_are_looked_up_from_a_config():
    assert source_class({"_target_": "emoclip.data.sources.ckplus.CkPlus"}) is CkPlus
    assert source_class({"_target_": "emoclip.data.sources.ckplus.nothing"}) is None
    assert source_class({"_target_": "emoclip.data.readers.TextDecoder"}) is None
    assert source_class({"_target_": "os.system"}) is None
    assert source_class({"_target_": "tests.test_sources.CkPlus"}) is None


def test_dropped_classes_are_counted_in_the_split_notes(ckplus_root):
    dm = ckplus_module(ckplus_root)
    ids = dm.split_ids()
    assert set(ids["protocol"]["dropped"]["train"]) == {"contempt", "sadness", "surprise"}
    assert ids["protocol"]["classes"] == ["anger", "happiness"]
    assert Counter(r.label for r in dm.records["test"]).keys() == {"anger", "happiness"}


def test_a_dair_folder_without_its_files_says_what_it_expects_once(tmp_path):
    (tmp_path / "train.txt").write_text("so glad;joy\n")
    with pytest.raises(DataError) as refusal:
        DairEmotion().read(tmp_path, TextDecoder())
    message = str(refusal.value)
    assert "has no file for the train, val, test split(s)" in message
    assert "; expected either the text form ROOT/train.txt" in message
    assert "expected expected" not in message
    with pytest.raises(DataError, match=r"does not exist; expected either the text form"):
        DairEmotion().read(tmp_path / "absent", TextDecoder())
