"""The synthetic demo set written to disk in every layout emoclip reads, to try each source on:

    python -m emoclip.demo.examples examples/   # then e.g. emoclip-train data=mvsa_single data.root=examples/mvsa_single

Each folder holds drawn faces and template sentences (emoclip/demo/synthetic.py: nothing
real) in one data set's own format: ckplus/ (CK+48 class folders), ckplus_tree/ (the
distributed CK+ tree), fer2013/fer2013.csv, dair_emotion/ (text;label files), mvsa_single/
(data/<guid>.jpg + .txt, some texts in GB18030, label/train.txt), text_table/posts.csv,
reviews/ (train.tsv, val.tsv, test.tsv with integer labels),
image_folders/ (one folder per class, a person id in each file name) and manifest/. The
sentiment sets map the drawn emotion to a sentiment (happiness and love: positive; neutral:
neutral; the others: negative). The tests train on these files, so the README's examples run.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from emoclip.demo.synthetic import draw_face, write_text

EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
CKPLUS_CODES = {"anger": 1, "contempt": 2, "disgust": 3, "fear": 4, "happiness": 5}
CKPLUS_CODES |= {"sadness": 6, "surprise": 7}
CKPLUS_FOLDERS = {"happiness": "happy"}  # CK+48 names its folders by its own spellings
FER_CODES = {name: i for i, name in enumerate(EMOTIONS)}  # angry, disgust, ..., neutral
DAIR_NAMES = {"anger": "anger", "fear": "fear", "happiness": "joy", "love": "love"}
DAIR_NAMES |= {"sadness": "sadness", "surprise": "surprise"}
SENTIMENT = {"happiness": "positive", "love": "positive", "neutral": "neutral"}
SENTIMENT_CLASSES = ("anger", "sadness", "fear", "happiness", "love", "neutral")
# The spellings the text table uses, to show the sentiment label space's synonyms.
SHORT = {"positive": "pos", "negative": "neg", "neutral": "neu"}


def sentiment(emotion: str) -> str:
    return SENTIMENT.get(emotion, "negative")


class _Drawer:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def face(self, label: str, size: int = 48) -> np.ndarray:
        return draw_face(label, self.rng, size)

    def text(self, label: str) -> str:
        return write_text(label, self.rng)

    def labels(self, classes, per_class: int) -> Iterator[tuple[int, str]]:
        for i in range(per_class):
            for label in classes:
                yield i, label


def drawer(seed: int = 0) -> _Drawer:
    """Faces and texts drawn from this seed, for the writers below."""
    return _Drawer(seed)


def _save(pixels: np.ndarray, path: Path, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image.convert("RGB") if rgb else image).save(path)


def write_ckplus(root: Path, subjects: int, drawer: _Drawer) -> Path:
    """CK+48: <class>/S<subject>_<sequence>_<frame>.png, the last 3 frames of each sequence."""
    for s in range(subjects):
        for seq, label in enumerate(CKPLUS_CODES, start=1):
            folder = root / CKPLUS_FOLDERS.get(label, label)
            for frame in (8, 9, 10):
                _save(drawer.face(label), folder / f"S{s + 100:03d}_{seq:03d}_{frame:08d}.png")
    return root


def write_ckplus_tree(root: Path, subjects: int, drawer: _Drawer) -> Path:
    """The distributed tree: a neutral onset and 3 peak frames per sequence, its emotion code."""
    for s in range(subjects):
        subject = f"S{s + 100:03d}"
        for seq, (label, code) in enumerate(CKPLUS_CODES.items(), start=1):
            name = f"{subject}_{seq:03d}"
            frames = root / "cohn-kanade-images" / subject / f"{seq:03d}"
            for frame in range(1, 5):
                face = drawer.face("neutral" if frame == 1 else label)
                _save(face, frames / f"{name}_{frame:08d}.png")
            labels = root / "Emotion" / subject / f"{seq:03d}"
            labels.mkdir(parents=True, exist_ok=True)
            (labels / f"{name}_00000004_emotion.txt").write_text(f"   {code:.7e}\n")
    return root


def write_fer2013(root: Path, per_class: int, drawer: _Drawer) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    usages = ["Training"] * (per_class - 2 * max(1, per_class // 5))
    usages += ["PublicTest", "PrivateTest"] * max(1, per_class // 5)
    with open(root / "fer2013.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for i, label in drawer.labels(EMOTIONS, per_class):
            pixels = " ".join(str(v) for v in drawer.face(label).ravel())
            writer.writerow([FER_CODES[label], pixels, usages[i]])
    return root / "fer2013.csv"


def write_dair(root: Path, per_class: int, drawer: _Drawer) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (
        ("train", per_class),
        ("val", max(2, per_class // 4)),
        ("test", max(2, per_class // 4)),
    ):
        lines = [
            f"{drawer.text(label)};{DAIR_NAMES[label]}" for _, label in drawer.labels(DAIR_NAMES, n)
        ]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_mvsa(root: Path, per_class: int, drawer: _Drawer) -> Path:
    """data/<guid>.jpg + data/<guid>.txt (every fifth text in GB18030, with curly quotes and
    Chinese words), label/train.txt; one image and one text repeated under another guid."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "label").mkdir(parents=True, exist_ok=True)
    rows = ["guid,tag"]
    for guid, (_, label) in enumerate(drawer.labels(SENTIMENT_CLASSES, per_class), start=1):
        text = drawer.text(label)
        if guid % 5 == 0:
            data = f"\u201c{text}\u201d \u2026 #\u5f00\u5fc3".encode("gb18030")
        else:
            data = f"{text} #tweet{guid}".encode()
        (root / "data" / f"{guid}.txt").write_bytes(data)
        _save(drawer.face(label, 64), root / "data" / f"{guid}.jpg", rgb=True)
        rows.append(f"{guid},{sentiment(label)}")
    # Reposts: guid 1's image again with another text, guid 2's text again with another image.
    data, tag = root / "data", {row.split(",")[0]: row.split(",")[1] for row in rows[1:]}
    first, second = len(rows), len(rows) + 1
    (data / f"{first}.jpg").write_bytes((data / "1.jpg").read_bytes())
    (data / f"{first}.txt").write_text(f"reposting this one #{first}")
    (data / f"{second}.txt").write_bytes((data / "2.txt").read_bytes())
    _save(drawer.face("neutral", 64), data / f"{second}.jpg", rgb=True)
    rows += [f"{first},{tag['1']}", f"{second},{tag['2']}"]
    (root / "label" / "train.txt").write_text("\n".join(rows) + "\n")
    return root


def write_text_table(root: Path, per_class: int, drawer: _Drawer) -> Path:
    """posts.csv: post, feeling (pos / neg / neu), author."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "posts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["post", "feeling", "author"])
        for i, label in drawer.labels(SENTIMENT_CLASSES, per_class):
            writer.writerow([drawer.text(label), SHORT[sentiment(label)], f"user{i % 12}"])
    return root / "posts.csv"


def write_reviews(root: Path, per_class: int, drawer: _Drawer) -> Path:
    """train.tsv, val.tsv, test.tsv: review, stars (0 negative, 1 neutral, 2 positive)."""
    root.mkdir(parents=True, exist_ok=True)
    stars = {"negative": 0, "neutral": 1, "positive": 2}
    sizes = {"train": per_class, "val": max(2, per_class // 4), "test": max(2, per_class // 4)}
    for split, n in sizes.items():
        lines = ["review\tstars"] + [
            f"{drawer.text(label)}\t{stars[sentiment(label)]}"
            for _, label in drawer.labels(SENTIMENT_CLASSES, n)
        ]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def write_image_folders(root: Path, per_class: int, drawer: _Drawer) -> Path:
    """<class>/<person>-<n>.png: the person id is the part before the dash."""
    for i, label in drawer.labels(EMOTIONS, per_class):
        _save(drawer.face(label), root / label / f"p{i % 12:02d}-{i}.png")
    return root


def write_manifest(root: Path, per_class: int, drawer: _Drawer) -> Path:
    """manifest.csv: image, text, label, group (the person)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "text", "label", "group"])
        for n, (i, label) in enumerate(drawer.labels(EMOTIONS, per_class)):
            _save(drawer.face(label), root / "images" / f"{n:05d}.png")
            writer.writerow([f"images/{n:05d}.png", drawer.text(label), label, f"p{i % 12:02d}"])
    return root / "manifest.csv"


def write_examples(root: Path, per_class: int = 24, seed: int = 0) -> dict[str, Path]:
    """Every layout under root; what data.root is for each (a folder or a file)."""
    drawer = _Drawer(seed)
    subjects = max(8, per_class // 3)
    written = {
        "ckplus": write_ckplus(root / "ckplus", subjects, drawer),
        "ckplus_tree": write_ckplus_tree(root / "ckplus_tree", subjects, drawer),
        "fer2013": write_fer2013(root / "fer2013", per_class, drawer),
        "dair_emotion": write_dair(root / "dair_emotion", per_class, drawer),
        "mvsa_single": write_mvsa(root / "mvsa_single", per_class, drawer),
        "text_table": write_text_table(root / "text_table", per_class, drawer),
        "reviews": write_reviews(root / "reviews", per_class, drawer),
        "image_folders": write_image_folders(root / "image_folders", per_class, drawer),
        "manifest": write_manifest(root / "manifest", per_class, drawer),
    }
    (root / "README.md").write_text(
        "The synthetic demo set (drawn faces, template sentences: nothing real) in each layout "
        "emoclip reads; written by `python -m emoclip.demo.examples`.\n"
        + "".join(f"- {name}: data.root={path}\n" for name, path in written.items())
    )
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=24, help="examples of each class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    written = write_examples(args.folder, args.per_class, args.seed)
    print(json.dumps({name: str(path) for name, path in written.items()}, indent=1))


if __name__ == "__main__":
    main()
