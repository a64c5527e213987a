"""Each source's reader on small files written here in its real format.

The helpers below read through a source's `read` and map the files' labels in the emotion
label space, as a study does."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from emoclip.data import sources
from emoclip.data.labels import LABEL_SPACES, LabelSpace
from emoclip.data.readers import TextDecoder, absolute
from emoclip.data.records import Record
from emoclip.data.sources.ckplus import CkPlus
from emoclip.data.sources.dair_emotion import DairEmotion
from emoclip.data.sources.fer2013 import Fer2013
from emoclip.data.sources.image_folders import ImageFolders
from emoclip.data.sources.manifest import Manifest
from emoclip.data.sources.text_table import TextTable
from emoclip.errors import ConfigError, DataError, EmoclipError

EMOTION = LabelSpace("emotion")


def labelled(result):
    """The records with their labels mapped in the emotion label space."""
    if isinstance(result, dict):
        return {split: labelled(records) for split, records in result.items()}
    return sources.base.Source._relabel(result, EMOTION)


def read_ckplus(root, peak_frames=3, include_neutral=False):
    source = CkPlus(peak_frames=peak_frames, include_neutral=include_neutral)
    return labelled(source.read(absolute(root), TextDecoder()))


def read_image_folders(root):
    return labelled(ImageFolders().read(absolute(root), TextDecoder()))


def read_text_label_file(path, sep=";"):
    return labelled(sources.dair_emotion.read_text_label_file(path, TextDecoder(), sep))


def read_fer2013(path):
    return labelled(Fer2013().read(absolute(path), TextDecoder()))


def read_dair_emotion(root):
    return labelled(DairEmotion().read(absolute(root), TextDecoder()))


def read_table(path, text_column="text", label_column="label", label_names=None):
    table = TextTable(text_column=text_column, label_column=label_column, label_names=label_names)
    return labelled([r for _, r in table.read_table(absolute(path), TextDecoder())])


def read_manifest(path, allow_absolute=False):
    source = Manifest(allow_absolute=allow_absolute)
    return labelled(source.read(absolute(path), TextDecoder()))


def png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ckplus_sequence(
    root: Path, subject: str, sequence: str, frames: int, code: float | None
) -> None:
    for frame in range(1, frames + 1):
        png(
            root
            / "cohn-kanade-images"
            / subject
            / sequence
            / f"{subject}_{sequence}_{frame:08d}.png"
        )
    label_dir = root / "Emotion" / subject / sequence
    label_dir.mkdir(parents=True, exist_ok=True)  # unlabelled sequences have an empty folder
    if code is not None:
        write(label_dir / f"{subject}_{sequence}_{frames:08d}_emotion.txt", f"   {code:.7e}\n")


@pytest.fixture
def ckplus(tmp_path: Path) -> Path:
    root = tmp_path / "CK+"
    ckplus_sequence(root, "S005", "001", frames=5, code=3)  # disgust
    ckplus_sequence(root, "S005", "002", frames=4, code=None)
    ckplus_sequence(root, "S010", "001", frames=2, code=5)  # happiness
    (root / "cohn-kanade-images" / "S005" / ".DS_Store").write_bytes(b"\0")
    return root


# ---------------------------------------------------------------- CK+


def test_ckplus_distributed_keeps_last_frames_of_labelled_sequences(ckplus: Path) -> None:
    records = read_ckplus(ckplus, peak_frames=3)
    assert [r.id for r in records] == [
        "cohn-kanade-images/S005/001/S005_001_00000003.png",
        "cohn-kanade-images/S005/001/S005_001_00000004.png",
        "cohn-kanade-images/S005/001/S005_001_00000005.png",
        "cohn-kanade-images/S010/001/S010_001_00000001.png",
        "cohn-kanade-images/S010/001/S010_001_00000002.png",
    ]
    assert [r.label for r in records] == ["disgust"] * 3 + ["happiness"] * 2
    assert [r.group for r in records] == ["S005"] * 3 + ["S010"] * 2
    assert all(isinstance(r.image, Path) and r.image.is_file() for r in records)
    assert all(r.text is None for r in records)


def test_ckplus_distributed_neutral_is_first_frame_once(ckplus: Path) -> None:
    records = read_ckplus(ckplus, peak_frames=1, include_neutral=True)
    by_id = {Path(r.id).name: r.label for r in records}
    assert by_id == {
        "S005_001_00000001.png": "neutral",
        "S005_001_00000005.png": "disgust",
        "S010_001_00000001.png": "neutral",
        "S010_001_00000002.png": "happiness",
    }
    # With more peak frames than the sequence has, the first frame stays a peak frame.
    labels = Counter(r.label for r in read_ckplus(ckplus, peak_frames=3, include_neutral=True))
    assert labels == {"neutral": 1, "disgust": 3, "happiness": 2}


def test_ckplus_frames_sorted_by_number_not_text(tmp_path: Path) -> None:
    seq = tmp_path / "cohn-kanade-images" / "S001" / "002"
    for frame in (9, 10, 11, 2):
        png(seq / f"S001_002_{frame}.png")
    write(tmp_path / "Emotion" / "S001" / "002" / "S001_002_11_emotion.txt", "7.0\n")
    records = read_ckplus(tmp_path, peak_frames=2)
    assert [Path(r.id).name for r in records] == ["S001_002_10.png", "S001_002_11.png"]
    assert {r.label for r in records} == {"surprise"}


def test_ckplus_distributed_unpacked_one_level_down(tmp_path: Path) -> None:
    inner = tmp_path / "unpacked"
    ckplus_sequence(inner, "S005", "001", frames=3, code=1)
    (tmp_path / "extended-cohn-kanade-images").mkdir()
    (inner / "cohn-kanade-images").rename(
        tmp_path / "extended-cohn-kanade-images" / "cohn-kanade-images"
    )
    records = read_ckplus(tmp_path)
    assert len(records) == 3 and {r.label for r in records} == {"anger"}


def test_ckplus_bad_emotion_file_names_file(ckplus: Path) -> None:
    bad = ckplus / "Emotion" / "S010" / "001" / "S010_001_00000002_emotion.txt"
    write(bad, "9.0000000e+00\n")
    with pytest.raises(DataError, match="S010_001_00000002_emotion.txt:1") as error:
        read_ckplus(ckplus)
    assert "2=contempt" in str(error.value)


def test_ckplus_without_any_label_says_so(tmp_path: Path) -> None:
    ckplus_sequence(tmp_path, "S005", "001", frames=3, code=None)
    with pytest.raises(DataError, match="none of the 1 sequences"):
        read_ckplus(tmp_path)


def test_ckplus_images_without_emotion_folder(tmp_path: Path) -> None:
    png(tmp_path / "cohn-kanade-images" / "S005" / "001" / "S005_001_00000001.png")
    with pytest.raises(DataError, match="no Emotion/"):
        read_ckplus(tmp_path)


@pytest.mark.parametrize("make", ["missing", "empty", "unrelated"])
def test_ckplus_missing_or_empty_root_explains_layouts(tmp_path: Path, make: str) -> None:
    root = tmp_path / "ckplus"
    if make != "missing":
        root.mkdir()
    if make == "unrelated":
        write(root / "notes.txt", "hello")
    with pytest.raises(DataError) as error:
        read_ckplus(root)
    message = str(error.value)
    for needle in (
        str(root),
        "cohn-kanade-images/S005/001/S005_001_00000011.png",
        "Emotion/S005/001/S005_001_00000011_emotion.txt",
        "ROOT/anger/S010_004_00000017.png",
        "licensed",
        "request it from the dataset's authors (Lucey et al., 2010)",
        "data.root=PATH",
    ):
        assert needle in message


def ckplus48(root: Path) -> Path:
    for frame in (17, 18, 19):
        png(root / "anger" / f"S010_004_{frame:08d}.png")
    for frame in (5, 6, 7):
        png(root / "happy" / f"S011_001_{frame:08d}.png")
    png(root / "happy" / "S010_002_00000009.png")
    png(root / "neutral" / "S011_001_00000001.png")
    write(root / "happy" / "Thumbs.txt", "not an image")
    write(root / "README.md", "CK+48")
    return root


def test_ckplus_class_folders_with_synonyms_and_subject_groups(tmp_path: Path) -> None:
    records = read_ckplus(ckplus48(tmp_path))
    assert Counter(r.label for r in records) == {"anger": 3, "happiness": 4}
    assert {r.id: r.group for r in records}["happy/S010_002_00000009.png"] == "S010"
    assert {r.group for r in records} == {"S010", "S011"}
    assert all(isinstance(r.image, Path) for r in records)


def test_ckplus_class_folders_peak_frames_and_neutral(tmp_path: Path) -> None:
    root = ckplus48(tmp_path)
    last = read_ckplus(root, peak_frames=1, include_neutral=True)
    assert sorted(r.id for r in last) == [
        "anger/S010_004_00000019.png",
        "happy/S010_002_00000009.png",
        "happy/S011_001_00000007.png",
        "neutral/S011_001_00000001.png",
    ]
    assert Counter(r.label for r in last)["neutral"] == 1


def test_ckplus_class_folders_neutral_requested_but_absent(tmp_path: Path) -> None:
    root = ckplus48(tmp_path)
    for file in (root / "neutral").iterdir():
        file.unlink()
    (root / "neutral").rmdir()
    with pytest.raises(DataError, match="no neutral/ folder"):
        read_ckplus(root, include_neutral=True)


def test_ckplus_peak_frames_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="peak_frames"):
        read_ckplus(ckplus48(tmp_path), peak_frames=0)


def test_image_folders_without_a_pattern_have_no_groups(tmp_path: Path) -> None:
    png(tmp_path / "sad" / "0001.jpg")
    png(tmp_path / "angry" / "0001.bmp")
    png(tmp_path / "angry" / "x.TIFF")
    records = read_image_folders(tmp_path)
    assert {(r.id, r.label, r.group) for r in records} == {
        ("sad/0001.jpg", "sadness", None),
        ("angry/0001.bmp", "anger", None),
        ("angry/x.TIFF", "anger", None),
    }


def test_image_folders_group_pattern_names_the_subject(tmp_path: Path) -> None:
    png(tmp_path / "sad" / "anna-1.jpg")
    png(tmp_path / "angry" / "anna-2.png")
    png(tmp_path / "angry" / "ben-1.png")
    source = ImageFolders(group_pattern=r"^([a-z]+)-")
    records = source.read(tmp_path, TextDecoder())
    assert {r.id: r.group for r in records} == {
        "sad/anna-1.jpg": "anna",
        "angry/anna-2.png": "anna",
        "angry/ben-1.png": "ben",
    }
    png(tmp_path / "angry" / "nobody.png")
    with pytest.raises(DataError, match=r"nobody.png: its name does not match .*group_pattern"):
        source.read(tmp_path, TextDecoder())
    with pytest.raises(ConfigError, match="group_pattern='\\(' is not a regular expression"):
        ImageFolders(group_pattern="(")


def test_image_folders_unknown_label_names_folder_and_known_labels(tmp_path: Path) -> None:
    png(tmp_path / "bored" / "a.png")
    with pytest.raises(DataError) as error:
        read_image_folders(tmp_path)
    message = str(error.value)
    assert "'bored'" in message and str(tmp_path / "bored") in message
    assert "The emotion label space knows" in message and "happiness" in message


def test_image_folders_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*data.root=PATH"):
        read_image_folders(tmp_path / "nope")


# ---------------------------------------------------------------- text files


def test_text_label_file_splits_on_last_separator(tmp_path: Path, caplog) -> None:
    path = write(
        tmp_path / "train.txt",
        "i felt quite small today;sadness\n\n  \nsee; this; has semicolons ;joy\r\nok;Love\n",
    )
    with caplog.at_level(logging.WARNING):
        records = read_text_label_file(path)
    assert [(r.id, r.text, r.label) for r in records] == [
        ("train.txt:1", "i felt quite small today", "sadness"),
        ("train.txt:4", "see; this; has semicolons", "happiness"),
        ("train.txt:5", "ok", "love"),
    ]
    assert records[1].origin == f"{path}:4"
    assert "skipped 2 blank line(s)" in caplog.text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("no separator here", "expected 'text;label'"),
        ("text;", "non-empty"),
        (" ;joy", "non-empty"),
    ],
)
def test_text_label_file_malformed_line_names_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = write(tmp_path / "val.txt", f"fine;joy\n\n{line}\n")
    with pytest.raises(DataError, match=expected) as error:
        read_text_label_file(path)
    assert f"{path}:3" in str(error.value)


def test_text_label_file_unknown_label(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "fine;joy\nhmm;bored\n")
    with pytest.raises(DataError, match="unknown emotion label 'bored'") as error:
        read_text_label_file(path)
    assert f"{path}:2" in str(error.value) and "label space knows" in str(error.value)


def test_text_label_file_not_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"fine;joy\nstill fine;joy\ncaf\xe9;joy\n")
    with pytest.raises(DataError, match="UTF-8") as error:
        read_text_label_file(path)
    assert f"{path}:3" in str(error.value)


def test_text_label_file_other_separator_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "a;b\tfear\n")
    assert read_text_label_file(path, sep="\t")[0].text == "a;b"
    with pytest.raises(DataError, match="does not exist"):
        read_text_label_file(tmp_path / "missing.txt")


# ---------------------------------------------------------------- text encodings

TWEET = "\u201cso good\u201d \u2026 caf\u00e9 \u4e2d\u6587"  # curly quotes, ellipsis, accents, CJK


def test_utf8_is_the_default_and_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf" + TWEET.encode("utf-8"))
    decoder = TextDecoder()
    assert decoder.read(path) == TWEET and decoder.summary() is None


def test_a_file_in_another_encoding_names_the_line_and_the_options(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"fine\n" + TWEET.encode("gb18030"))
    with pytest.raises(DataError) as error:
        TextDecoder().read(path)
    message = str(error.value)
    assert f"{path}:2: expected utf-8 text" in message
    assert "data.encoding=..." in message and "data.encoding=auto" in message


def test_one_named_encoding_for_every_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(TWEET.encode("gb18030"))
    assert TextDecoder("gb18030").read(path) == TWEET
    with pytest.raises(ConfigError, match="data.encoding='klingon' is not an encoding"):
        TextDecoder("klingon")


def test_auto_detects_the_encoding_of_a_mixed_set_and_counts_every_fallback(
    tmp_path: Path,
) -> None:
    texts = [
        f"RT @user{i}: \u201c\u6211\u4eec\u4eca\u5929\u5f88\u5f00\u5fc3\u201d \u2026 #day{i} "
        "\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5 \u2014 ok"
        for i in range(12)
    ]
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"{i}.txt"
        path.write_bytes(text.encode("gb18030" if i % 3 == 0 else "utf-8"))
        paths.append(path)
    decoder = TextDecoder("auto")
    assert decoder.read_many(paths) == texts
    assert decoder.fallbacks == {"gb18030": 4}
    assert decoder.summary() == (
        "4 of 12 text files are not UTF-8 and were decoded as gb18030 (4) "
        "(data.encoding=auto, detected by charset-normalizer)"
    )


# ---------------------------------------------------------------- FER2013


def fer_row(code: int, usage: str, value: int = 7) -> str:
    return f"{code},{' '.join([str(value)] * 2304)},{usage}"


def test_fer2013_splits_and_pixels(tmp_path: Path) -> None:
    rows = [fer_row(0, "Training", 0), fer_row(3, "PublicTest", 200), fer_row(6, "PrivateTest")]
    path = write(tmp_path / "fer2013.csv", "emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    splits = read_fer2013(path)
    assert {k: [(r.id, r.label) for r in v] for k, v in splits.items()} == {
        "train": [("fer2013.csv:2", "anger")],
        "val": [("fer2013.csv:3", "happiness")],
        "test": [("fer2013.csv:4", "neutral")],
    }
    image = splits["val"][0].image
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (48, 48)
    assert int(image.min()) == int(image.max()) == 200


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("7," + " ".join(["1"] * 2304) + ",Training", "emotion code"),
        ("1,1 2 3,Training", "expected 2304 grey values"),
        ("1," + " ".join(["256"] * 2304) + ",Training", "0..255"),
        (fer_row(1, "Other"), "Usage"),
        ("1,2", "expected 3 fields"),
    ],
)
def test_fer2013_malformed_row_names_line(tmp_path: Path, row: str, expected: str) -> None:
    path = write(tmp_path / "fer.csv", f"emotion,pixels,Usage\n{fer_row(0, 'Training')}\n{row}\n")
    with pytest.raises(DataError, match=expected) as error:
        read_fer2013(path)
    assert f"{path}:3" in str(error.value)


def test_fer2013_missing_column_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "fer.csv", "emotion,pixels\n0,1 2\n")
    with pytest.raises(DataError, match="no column 'Usage'.*'emotion', 'pixels'"):
        read_fer2013(path)


# ---------------------------------------------------------------- DAIR-AI and tables

HF_ROWS = [("im feeling rather rotten", 0), ("so happy today", 1), ("i adore you", 2)]


def write_hf(path: Path, rows: list[tuple[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    if path.suffix == ".parquet":
        pq.write_table(pa.table({"text": texts, "label": labels}), path)
    elif path.suffix == ".csv":
        lines = ["text,label"] + [f'"{t}",{label}' for t, label in rows]
        write(path, "\n".join(lines) + "\n")
    else:
        write(path, "".join(json.dumps({"text": t, "label": lb}) + "\n" for t, lb in rows))


def test_dair_text_form(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        write(tmp_path / f"{split}.txt", f"i felt quite small today;sadness\n{split} ok;joy\n")
    splits = read_dair_emotion(tmp_path)
    assert [r.label for r in splits["val"]] == ["sadness", "happiness"]
    assert splits["test"][1].id == "test.txt:2"


@pytest.mark.parametrize("ext", [".jsonl", ".json", ".csv", ".parquet"])
def test_dair_hugging_face_form_integer_labels(tmp_path: Path, ext: str) -> None:
    for split in ("train", "validation", "test"):
        write_hf(tmp_path / f"{split}{ext}", HF_ROWS)
    splits = read_dair_emotion(tmp_path)
    assert set(splits) == {"train", "val", "test"}
    assert [(r.text, r.label) for r in splits["val"]] == [
        ("im feeling rather rotten", "sadness"),
        ("so happy today", "happiness"),
        ("i adore you", "love"),
    ]


def test_dair_hugging_face_form_string_labels(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        write_hf(tmp_path / f"{split}.jsonl", [("grr", "anger"), ("eek", "fear")])
    assert [r.label for r in read_dair_emotion(tmp_path)["train"]] == ["anger", "fear"]


def test_dair_missing_folder_explains(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        read_dair_emotion(tmp_path / "emotion")
    message = str(error.value)
    for needle in (
        "train.txt",
        "data.root=PATH",
        'load_dataset("dair-ai/emotion")',
        "to_parquet",
    ):
        assert needle in message


def test_dair_missing_split_and_ambiguous_split(tmp_path: Path) -> None:
    write_hf(tmp_path / "train.jsonl", HF_ROWS)
    write_hf(tmp_path / "test.jsonl", HF_ROWS)
    with pytest.raises(DataError, match="no file for the val split"):
        read_dair_emotion(tmp_path)
    write_hf(tmp_path / "validation.parquet", HF_ROWS)
    write_hf(tmp_path / "val.csv", HF_ROWS)
    with pytest.raises(DataError, match="several files for the val split"):
        read_dair_emotion(tmp_path)


def test_dair_label_out_of_range(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        write_hf(tmp_path / f"{split}.parquet", [("x", 6)])
    with pytest.raises(DataError, match=r"train.parquet row 1: integer label 6 .*5=surprise"):
        read_dair_emotion(tmp_path)


def test_table_named_columns_and_label_names(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", 'id,sentence,y\n1,hello there,1\n2,"oh, no",0\n')
    records = read_table(
        path, text_column="sentence", label_column="y", label_names=["sad", "happy"]
    )
    assert [(r.id, r.text, r.label) for r in records] == [
        ("t.csv:2", "hello there", "happiness"),
        ("t.csv:3", "oh, no", "sadness"),
    ]
    mapped = read_table(path, "sentence", "y", label_names={0: "fear", 1: "surprise"})
    assert [r.label for r in mapped] == ["surprise", "fear"]
    with pytest.raises(DataError, match="no names for integer labels"):
        read_table(path, "sentence", "y")


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_table_missing_column_names_columns_found(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"t{ext}"
    write_hf(path, HF_ROWS)
    with pytest.raises(
        DataError, match=r"no column 'sentence'; found columns 'text', 'label'"
    ) as e:
        read_table(path, text_column="sentence")
    assert str(path) in str(e.value)


def test_table_rejects_bad_json_and_non_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"text": "a", "label": "joy"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"t.jsonl:2: expected a JSON object"):
        read_table(path)
    fake = write(tmp_path / "t.parquet", "not parquet")
    with pytest.raises(DataError, match="expected a parquet file"):
        read_table(fake)


# ---------------------------------------------------------------- manifests


def test_manifest_csv_with_splits(tmp_path: Path) -> None:
    png(tmp_path / "img" / "a.png")
    png(tmp_path / "img" / "b.png")
    path = write(
        tmp_path / "manifest.csv",
        "image,text,label,group,split\n"
        "img/a.png,a smile,happy,s1,train\n"
        "img/b.png,,sad,s2,validation\n"
        ",just words,fear,,test\n",
    )
    splits = read_manifest(path)
    assert isinstance(splits, dict)
    (a,), (b,), (c,) = splits["train"], splits["val"], splits["test"]
    assert (a.id, a.label, a.text, a.group, a.image) == (
        "manifest.csv:2",
        "happiness",
        "a smile",
        "s1",
        tmp_path / "img" / "a.png",
    )
    assert (b.text, b.label) == (None, "sadness")
    assert (c.image, c.group, c.text) == (None, None, "just words")


def test_manifest_jsonl_without_splits(tmp_path: Path) -> None:
    png(tmp_path / "x.png")
    path = write(
        tmp_path / "m.jsonl",
        json.dumps({"image": "x.png", "label": "anger", "group": 3, "id": "first"})
        + "\n\n"
        + json.dumps({"text": "hi", "label": "joy"})
        + "\n",
    )
    records = read_manifest(path)
    assert isinstance(records, list)
    assert [(r.id, r.group) for r in records] == [("first", "3"), ("m.jsonl:3", None)]


@pytest.mark.parametrize(
    "image", ["../outside.png", "/abs/outside.png", "sub\\..\\..\\outside.png"]
)
def test_manifest_refuses_paths_leaving_its_folder(tmp_path: Path, image: str) -> None:
    png(tmp_path / "outside.png")
    folder = tmp_path / "data"
    path = write(folder / "m.csv", f"image,label\n{json.dumps(image)},joy\n")
    with pytest.raises(DataError, match="leaves the manifest's folder") as error:
        read_manifest(path)
    assert f"{path}:2" in str(error.value)


def test_manifest_refuses_a_symbolic_link_leading_outside_its_folder(tmp_path: Path) -> None:
    secret = png(tmp_path / "private" / "secret.png")
    folder = tmp_path / "data"
    png(folder / "images" / "inside.png")
    (folder / "images" / "face.png").symlink_to(secret)  # the name looks inside
    (folder / "linked").symlink_to(tmp_path / "private", target_is_directory=True)
    (folder / "images" / "alias.png").symlink_to(folder / "images" / "inside.png")
    for image in ("images/face.png", "linked/secret.png"):
        path = write(folder / "m.csv", f"image,label\n{image},joy\n")
        with pytest.raises(DataError, match="through a symbolic link, outside") as error:
            read_manifest(path)
        assert f"{path}:2" in str(error.value) and str(secret.resolve()) in str(error.value)
        assert len(read_manifest(path, allow_absolute=True)) == 1  # the explicit way out
    path = write(folder / "m.csv", "image,label\nimages/alias.png,joy\n")  # a link inside
    assert [r.image.name for r in read_manifest(path)] == ["alias.png"]  # type: ignore[union-attr]


def test_manifest_allow_absolute(tmp_path: Path) -> None:
    outside = png(tmp_path / "outside.png")
    path = write(tmp_path / "data" / "m.csv", f"image,label\n{outside},joy\n../outside.png,joy\n")
    records = read_manifest(path, allow_absolute=True)
    assert isinstance(records, list)
    assert [r.image.resolve() for r in records] == [outside.resolve()] * 2  # type: ignore[union-attr]


def test_manifest_missing_image_names_line_and_path(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    path = write(tmp_path / "m.csv", "image,label\na.png,joy\nb.png,joy\n")
    with pytest.raises(DataError, match=r"m.csv:3: image file 'b.png' not found"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("text,label,split\nhi,joy,holdout\n", "expected column .split. to be one of"),
        ("text,label\nhi,joy\nhi,\n", "expected a label"),
        ("name,label\nhi,joy\n", "expected a column 'image' and/or 'text'"),
        ("text,label\n", "no rows"),
    ],
)
def test_manifest_bad_rows(tmp_path: Path, content: str, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        read_manifest(write(tmp_path / "m.csv", content))


def test_manifest_columns_named_by_keys(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from tests.conftest import compose_train

    png(tmp_path / "a.png")
    path = write(tmp_path / "m.csv", "img_path,caption,emotion\na.png,a smile,happy\n,so sad,sad\n")
    named = ["image=img_path", "text=caption", "label=emotion"]
    cfg = compose_train(
        ["data=manifest", f"data.root={path}", *(f"data.dataset.columns.{n}" for n in named)],
        tmp_path / "run",
    )
    source = instantiate(cfg.data.dataset)
    records = labelled(source.read(absolute(path), TextDecoder()))
    assert [(r.image, r.text, r.label) for r in records] == [
        (tmp_path / "a.png", "a smile", "happiness"),
        (None, "so sad", "sadness"),
    ]
    # The defaults' names are not read any more: a table without the named column says so.
    with pytest.raises(DataError, match=r"expected a column 'img_path' and/or 'caption'"):
        source.read(
            absolute(write(tmp_path / "n.csv", "image,emotion\na.png,joy\n")), TextDecoder()
        )
    with pytest.raises(ConfigError, match=r"data.dataset.columns.picture: not a column"):
        Manifest(columns={"picture": "img"})


# ---------------------------------------------------------------- any input


VALID_LINES = [
    "i felt quite small today;sadness",
    "a;b;c;joy",
    "emotion,pixels,Usage",
    fer_row(3, "Training"),
    "image,text,label,split",
    "a.png,hi,joy,train",
    "../a.png,,fear,test",
    ",words,anger,val",
    '{"image": "a.png", "label": "joy"}',
    '{"text": "hi", "label": 3, "group": [1]}',
    "text,label",
    "so glad,2",
    "   3.0000000e+00",
]
FILE_BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(st.sampled_from(VALID_LINES), st.text(max_size=30)), max_size=6).map(
        lambda lines: "\n".join(lines).encode("utf-8")
    ),
)
READERS = [
    ("t.txt", read_text_label_file),
    ("fer.csv", read_fer2013),
    ("m.csv", read_manifest),
    ("m.jsonl", read_manifest),
    ("t.csv", read_table),
    ("t.jsonl", read_table),
    ("t.json", read_table),
    ("t.parquet", read_table),
]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=FILE_BYTES, reader=st.sampled_from(READERS))
def test_any_file_gives_records_or_data_error(tmp_path: Path, data: bytes, reader) -> None:
    name, read = reader
    png(tmp_path / "a.png")
    path = tmp_path / name
    path.write_bytes(data)
    try:
        result = read(path)
    except DataError:
        return
    check_records(result)


def check_records(result: list[Record] | dict[str, list[Record]]) -> None:
    records = result if isinstance(result, list) else [r for rs in result.values() for r in rs]
    assert records
    for record in records:
        assert (
            isinstance(record, Record)
            and record.label in LABEL_SPACES["emotion"].names
            and record.id
        )
        assert record.text is None or record.text.strip()
        assert not isinstance(record.image, Path) or record.image.is_file()


TEXTS = st.one_of(st.none(), st.text(max_size=20))
LABELS = st.one_of(
    st.lists(st.one_of(st.integers(-2, 8), st.none()), min_size=1, max_size=6),
    st.lists(
        st.one_of(st.sampled_from(["joy", "sad", "bored", " ", "3"]), st.text(max_size=8)),
        min_size=1,
        max_size=6,
    ),
)


@settings(max_examples=60, deadline=None)
@given(labels=LABELS, texts=st.lists(TEXTS, min_size=6, max_size=6))
def test_any_parquet_table_gives_records_or_data_error(labels, texts) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.parquet"
        pq.write_table(pa.table({"text": texts[: len(labels)], "label": labels}), path)
        try:
            result = read_table(path, label_names=["anger", "joy", "sadness"])
        except DataError:
            return
        check_records(result)


FOLDERS = ["anger", "happy", "bored", "neutral", "__MACOSX", "cohn-kanade-images", "Emotion"]
FOLDERS += ["S005", "001"]
FILES = ["S005_001_00000001.png", "S005_001_00000002.png", "S005_001_00000002_emotion.txt"]
FILES += ["x.png", "a.JPG", ".hidden.png", "notes.txt", "train.txt", "val.txt", "test.txt"]
FILES += ["validation.jsonl", "test.csv", "train.parquet"]
FOLDER_READERS = [read_ckplus, read_image_folders, read_dair_emotion]


@settings(max_examples=120, deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.lists(st.sampled_from(FOLDERS), max_size=3), st.sampled_from(FILES), FILE_BYTES
        ),
        max_size=8,
    ),
    read=st.sampled_from(FOLDER_READERS),
)
def test_any_folder_gives_records_or_emoclip_error(entries, read) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for parts, name, data in entries:
            (root.joinpath(*parts)).mkdir(parents=True, exist_ok=True)
            root.joinpath(*parts, name).write_bytes(data)
        try:
            result = read(root)
        except EmoclipError:
            return
        check_records(result)


# ---------------------------------------------------------------- the real data, if present

SHARED = Path(
    os.environ.get(
        "EMOCLIP_SHARED_DATASETS", Path(__file__).parents[1] / ".." / "shared" / "datasets"
    )
)


@pytest.mark.shared_data
def test_shared_datasets_counts() -> None:
    if not (SHARED / "ckplus48").is_dir() or not (SHARED / "dair_emotion").is_dir():
        pytest.skip(f"no shared datasets at {SHARED} (set EMOCLIP_SHARED_DATASETS)")
    ck = read_ckplus(SHARED / "ckplus48")
    assert len(ck) == 981
    assert len({r.label for r in ck}) == 7
    assert len({r.group for r in ck}) == 118
    dair = read_dair_emotion(SHARED / "dair_emotion")
    assert {split: len(rs) for split, rs in dair.items()} == {
        "train": 16000,
        "val": 2000,
        "test": 2000,
    }
    assert dair["train"][0].label == "sadness" and dair["train"][0].text.strip()


@pytest.mark.shared_data
def test_shared_mvsa_single_as_its_readme_describes_it() -> None:
    from emoclip.data.duplicates import join_duplicates
    from emoclip.data.sources.mvsa_single import MvsaSingle

    if not (SHARED / "mvsa_single").is_dir():
        pytest.skip(f"no MVSA-Single at {SHARED} (set EMOCLIP_SHARED_DATASETS)")
    decoder = TextDecoder("auto")
    records = MvsaSingle().read(absolute(SHARED / "mvsa_single"), decoder)
    assert Counter(r.label for r in records) == {"positive": 2388, "negative": 1193, "neutral": 419}
    assert decoder.fallbacks == {"gb18030": 943}
    _, counts = join_duplicates(records)
    assert counts["identical_images"]["groups"] == 31
    assert counts["identical_images"]["with_conflicting_labels"] == 6
    assert counts["identical_texts"]["groups"] == 122
    assert counts["identical_texts"]["with_conflicting_labels"] == 34
