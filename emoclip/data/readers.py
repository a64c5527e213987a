"""Readers for the on-disk formats emoclip understands; each knows its format and nothing else.

A reader returns ``list[Record]``, or ``{"train": [...], "val": [...], "test": [...]}`` for
formats that ship their own splits. Labels come out canonical (see emoclip.data.labels).
Images stay on disk as paths for someone else to decode, except FER2013 whose pixels live in
the csv. Every problem is a DataError naming the file (and line) and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from emoclip.data.labels import canonical_label
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.errors import ConfigError, DataError

log = logging.getLogger(__name__)


IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm"})
CKPLUS_EMOTIONS = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
FER2013_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FER2013_SIDE = 48
# Label order of the Hugging Face copy of dair-ai/emotion.
DAIR_HF_LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")
TABLE_EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
MANIFEST_SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}

_CKPLUS_NAME = re.compile(r"(S\d+)_(\d+)_(\d+)")
_PIXELS = re.compile(r"[0-9]{1,3}(?: +[0-9]{1,3})*")

_CKPLUS_LAYOUTS = """\
expected one of two layouts:
  a) CK+ as distributed: ROOT/cohn-kanade-images/S005/001/S005_001_00000011.png with labels in
     ROOT/Emotion/S005/001/S005_001_00000011_emotion.txt
  b) one folder per class (e.g. the 48x48 crop "CK+48"): ROOT/anger/S010_004_00000017.png,
     ROOT/happy/..., ... (png, jpg, jpeg, bmp, tif, tiff, webp or pgm)
CK+ is licensed for non-commercial research and is not downloaded by emoclip:
request it from the dataset's authors (Lucey et al., 2010), unpack it, and point emoclip at it
with data.image_root=PATH."""

_DAIR_LAYOUT = """\
expected either the text form ROOT/train.txt, ROOT/val.txt, ROOT/test.txt (one "text;label" a
line), or the Hugging Face form ROOT/train.*, ROOT/validation.* (or val.*), ROOT/test.* as
.jsonl, .json (JSON lines), .csv or .parquet with columns "text" and "label" (integer labels
0..5 = sadness, joy, love, anger, fear, surprise, or label names). A copy of
datasets.load_dataset("dair-ai/emotion") saved with to_json or to_parquet per split works.
Set the folder with data.text_root=PATH."""


# ---------------------------------------------------------------- CK+ and image folders


def read_ckplus(
    root: str | Path, peak_frames: int = 3, include_neutral: bool = False
) -> list[Record]:
    """CK+ in its distributed layout or as class folders; the layout is detected.

    Distributed layout: only labelled sequences are kept; their last ``peak_frames`` frames
    carry the sequence's label and, with ``include_neutral``, the first frame is "neutral".
    Class folders: for CK+-style names (S010_004_00000017) the last ``peak_frames`` frames of
    each sequence in a class folder are kept (the common crop already holds 3), and a
    "neutral" folder is read only with ``include_neutral``. group is the subject ("S010").
    """
    if peak_frames < 1:
        raise ConfigError(
            f"peak_frames must be at least 1 (the last frames of a sequence), got {peak_frames}"
        )
    root = _absolute(root)
    if not root.is_dir():
        raise DataError(f"CK+ folder {root} does not exist; {_CKPLUS_LAYOUTS}")
    distributed = _find_ckplus_distributed(root)
    if distributed is not None:
        images, labels = distributed
        return _read_ckplus_distributed(root, images, labels, peak_frames, include_neutral)
    if not _class_folders(root):
        found = sorted(p.name for p in root.iterdir())
        shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") or "nothing"
        raise DataError(
            f"CK+ folder {root} holds no CK+ images (found: {shown}); {_CKPLUS_LAYOUTS}"
        )
    records = read_image_folders(root)
    return _select_ckplus_folders(root, records, peak_frames, include_neutral)


def read_image_folders(root: str | Path) -> list[Record]:
    """One folder per class, named by its label (synonyms allowed): ROOT/<label>/<image>.

    group is the subject for CK+-style names ("S010" for S010_004_00000017.png); any other
    image is its own group, named by its relative path (a stem can repeat across class
    folders, so the stem alone could tie unrelated images together).
    """
    root = _absolute(root)
    expected = (
        "expected one folder per class, ROOT/<label>/<image> (e.g. ROOT/anger/0001.png), "
        f"with images ending in {', '.join(sorted(IMAGE_EXTENSIONS))}; "
        "set the folder with data.image_root=PATH"
    )
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; {expected}")
    folders = _class_folders(root)
    if not folders:
        raise DataError(f"image folder {root} has no class folders with images; {expected}")
    records = []
    for folder, files in folders:
        label = canonical_label(folder.name, origin=f"{folder} (class folder name)")
        for file in files:
            rel = file.relative_to(root).as_posix()
            match = _CKPLUS_NAME.fullmatch(file.stem)
            group = match.group(1) if match else rel
            records.append(Record(id=rel, label=label, image=file, group=group, origin=str(file)))
    return records


def _find_ckplus_distributed(root: Path) -> tuple[Path, Path] | None:
    # The archives unpack either straight into ROOT or into one folder each below it.
    images = _find_child(root, "cohn-kanade-images")
    labels = _find_child(root, "Emotion")
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        have, missing = (
            ("cohn-kanade-images", "Emotion")
            if labels is None
            else ("Emotion", "cohn-kanade-images")
        )
        raise DataError(
            f"CK+ folder {root} has {have}/ but no {missing}/ next to it; both are needed "
            f"(the images and the emotion labels are separate downloads); {_CKPLUS_LAYOUTS}"
        )
    return images, labels


def _find_child(root: Path, name: str) -> Path | None:
    direct = root / name
    if direct.is_dir():
        return direct
    nested = [p / name for p in sorted(root.iterdir()) if p.is_dir() and (p / name).is_dir()]
    if len(nested) > 1:
        raise DataError(f"CK+ folder {root} has several {name}/ folders: {nested}; keep one")
    return nested[0] if nested else None


def _read_ckplus_distributed(
    root: Path, images: Path, labels: Path, peak_frames: int, include_neutral: bool
) -> list[Record]:
    records: list[Record] = []
    sequences = 0
    for subject_dir in _subdirs(images):
        for sequence_dir in _subdirs(subject_dir):
            sequences += 1
            label_dir = labels / subject_dir.name / sequence_dir.name
            label_files = sorted(label_dir.glob("*_emotion.txt")) if label_dir.is_dir() else []
            if not label_files:
                continue  # CK+ labels only about 1 sequence in 2; the rest have no emotion
            if len(label_files) > 1:
                raise DataError(
                    f"CK+ sequence {label_dir} has {len(label_files)} emotion files "
                    f"({', '.join(p.name for p in label_files)}); expected one"
                )
            label = _read_ckplus_label(label_files[0])
            frames = _ckplus_frames(sequence_dir)
            if not frames:
                continue
            peaks = frames[-peak_frames:]
            chosen = [(frame, label) for frame in peaks]
            if include_neutral and frames[0] not in peaks:
                chosen.insert(0, (frames[0], "neutral"))
            for frame, frame_label in chosen:
                subject = _CKPLUS_NAME.fullmatch(frame.stem).group(1)  # type: ignore[union-attr]
                records.append(
                    Record(
                        id=frame.relative_to(root).as_posix(),
                        label=frame_label,
                        image=frame,
                        group=subject,
                        origin=str(frame),
                    )
                )
    if not records:
        raise DataError(
            f"CK+ folder {root}: none of the {sequences} sequences under {images} has an "
            f"emotion label under {labels} (expected files like "
            f"{labels}/S005/001/S005_001_00000011_emotion.txt); {_CKPLUS_LAYOUTS}"
        )
    return records


def _read_ckplus_label(path: Path) -> str:
    text = _decode(path).strip()
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or not 1 <= value <= len(CKPLUS_EMOTIONS):
        codes = ", ".join(f"{i + 1}={name}" for i, name in enumerate(CKPLUS_EMOTIONS))
        raise DataError(
            f"{path}:1: expected one CK+ emotion code like '3.0000000e+00' ({codes}), "
            f"found {text[:40]!r}"
        )
    return canonical_label(CKPLUS_EMOTIONS[int(value) - 1], origin=f"{path}:1")


def _ckplus_frames(sequence_dir: Path) -> list[Path]:
    frames = []
    for file in _image_files(sequence_dir):
        match = _CKPLUS_NAME.fullmatch(file.stem)
        if match is None:
            raise DataError(
                f"{file}: expected a CK+ frame name like S005_001_00000011"
                f"{file.suffix} (subject_sequence_frame)"
            )
        frames.append((int(match.group(3)), file))
    return [file for _, file in sorted(frames)]


def _select_ckplus_folders(
    root: Path, records: list[Record], peak_frames: int, include_neutral: bool
) -> list[Record]:
    has_neutral = any(r.label == "neutral" for r in records)
    if include_neutral and not has_neutral:
        raise DataError(
            f"CK+ folder {root} is in the class-folder layout and has no neutral/ folder, so "
            "include_neutral has no neutral frames to take; set it to false, add a neutral/ "
            "folder, or use the distributed layout (its first frames are neutral)"
        )
    sequences: dict[tuple[str, str, str], list[tuple[int, Record]]] = defaultdict(list)
    kept: list[Record] = []
    for record in records:
        if record.label == "neutral":
            if include_neutral:
                kept.append(record)
            continue
        assert isinstance(record.image, Path)
        match = _CKPLUS_NAME.fullmatch(record.image.stem)
        if match is None:
            kept.append(record)
            continue
        key = (record.label, match.group(1), match.group(2))
        sequences[key].append((int(match.group(3)), record))
    for frames in sequences.values():
        frames.sort(key=lambda item: item[0])
        kept.extend(record for _, record in frames[-peak_frames:])
    if has_neutral and not include_neutral:
        log.info("%s: left out the neutral/ folder (include_neutral is false)", root)
    if not kept:
        raise DataError(
            f"CK+ folder {root} has images only in neutral/, which is left out unless "
            f"include_neutral is true; {_CKPLUS_LAYOUTS}"
        )
    chosen = {id(record) for record in kept}
    return [r for r in records if id(r) in chosen]


def _class_folders(root: Path) -> list[tuple[Path, list[Path]]]:
    folders = []
    for folder in _subdirs(root):
        files = _image_files(folder)
        if files:
            folders.append((folder, files))
    return folders


def _subdirs(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and not _hidden(p) and p.name != "__MACOSX"
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p) and p.is_file()
    )


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


# ---------------------------------------------------------------- FER2013


def read_fer2013(csv_path: str | Path) -> Splits:
    """fer2013.csv: columns emotion (0..6), pixels (2304 grey values), Usage -> splits.

    The images are 48x48 uint8 arrays; ids are "fer2013.csv:LINE".
    """
    path = _absolute(csv_path)
    codes = ", ".join(f"{i}={name}" for i, name in enumerate(FER2013_EMOTIONS))
    usages = ", ".join(FER2013_USAGE)
    rows = csv_rows(path, required=("emotion", "pixels", "Usage"), what="FER2013 csv")
    splits: Splits = {name: [] for name in SPLITS}
    size = FER2013_SIDE * FER2013_SIDE
    for line, row in rows:
        where = f"{path}:{line}"
        code = row["emotion"].strip()
        if not (code.isascii() and code.isdigit() and int(code) < len(FER2013_EMOTIONS)):
            raise DataError(f"{where}: expected an emotion code ({codes}), found {code[:40]!r}")
        pixels = row["pixels"].strip()
        values = None
        if _PIXELS.fullmatch(pixels):
            values = np.fromstring(pixels, dtype=np.int32, sep=" ")
        if values is None or values.size != size or values.max() > 255:
            count = len(pixels.split())
            raise DataError(
                f"{where}: expected {size} grey values 0..255 separated by spaces "
                f"(a {FER2013_SIDE}x{FER2013_SIDE} image), found {count} fields "
                f"starting {pixels[:40]!r}"
            )
        usage = row["Usage"].strip()
        if usage not in FER2013_USAGE:
            raise DataError(f"{where}: expected Usage to be one of {usages}, found {usage!r}")
        label = canonical_label(FER2013_EMOTIONS[int(code)], origin=where)
        image = values.astype(np.uint8).reshape(FER2013_SIDE, FER2013_SIDE)
        record = Record(id=f"{path.name}:{line}", label=label, image=image, origin=where)
        splits[FER2013_USAGE[usage]].append(record)
    if not any(splits.values()):
        raise DataError(f"{path} has a header but no images; expected one image a row")
    return splits


# ---------------------------------------------------------------- text sets


def read_text_label_file(path: str | Path, sep: str = ";") -> list[Record]:
    """DAIR-AI style "text;label" lines, split on the last separator; blank lines skipped."""
    path = _absolute(path)
    records = []
    blank = 0
    for number, line in enumerate(_lines(_decode(path)), start=1):
        if not line.strip():
            blank += 1
            continue
        where = f"{path}:{number}"
        text, found, label = line.rpartition(sep)
        text, label = text.strip(), label.strip()
        if not found or not text or not label:
            raise DataError(
                f"{where}: expected 'text{sep}label' with a non-empty text and label, "
                f"found {line[:80]!r}"
            )
        records.append(
            Record(
                id=f"{path.name}:{number}",
                label=canonical_label(label, origin=where),
                text=text,
                origin=where,
            )
        )
    if blank:
        log.warning("%s: skipped %d blank line(s)", path, blank)
    if not records:
        raise DataError(f"{path} has no examples; expected one 'text{sep}label' a line")
    return records


def read_dair_emotion(root: str | Path) -> Splits:
    """The DAIR-AI emotion set, as train/val/test.txt or as the Hugging Face files."""
    root = _absolute(root)
    if not root.is_dir():
        raise DataError(f"DAIR-AI emotion folder {root} does not exist; {_DAIR_LAYOUT}")
    stems = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
    found: dict[str, Path] = {}
    for split, names in stems.items():
        candidates = [
            root / f"{name}{ext}"
            for name in names
            for ext in (".txt", *TABLE_EXTENSIONS)
            if (root / f"{name}{ext}").is_file()
        ]
        if len(candidates) > 1:
            raise DataError(
                f"DAIR-AI emotion folder {root} has several files for the {split} split: "
                f"{', '.join(p.name for p in candidates)}; keep one"
            )
        if candidates:
            found[split] = candidates[0]
    missing = [split for split in SPLITS if split not in found]
    if missing:
        present = sorted(p.name for p in root.iterdir())
        shown = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "")
        raise DataError(
            f"DAIR-AI emotion folder {root} has no file for the {', '.join(missing)} split(s) "
            f"(found: {shown or 'nothing'}); {_DAIR_LAYOUT}"
        )
    return {
        split: read_text_label_file(p)
        if p.suffix == ".txt"
        else read_table(p, label_names=DAIR_HF_LABELS)
        for split, p in found.items()
    }


def read_table(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | Mapping[int, str] | None = None,
) -> list[Record]:
    """A text set in csv, jsonl (.json too) or parquet, by naming its columns.

    label_names maps integer labels to names (a sequence is indexed by the label); string
    labels are taken as names. ids are "FILE:LINE" (parquet: "FILE:ROW", from 1).
    """
    path = _absolute(path)
    records = []
    for number, row in _table_rows(path, (text_column, label_column)):
        where = f"{path}:{number}" if path.suffix.lower() != ".parquet" else f"{path} row {number}"
        text = row[text_column]
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"{where}: expected a non-empty text in column {text_column!r}, "
                f"found {_short(text)}"
            )
        label = _label_name(row[label_column], label_names, label_column, where)
        records.append(
            Record(
                id=f"{path.name}:{number}",
                label=canonical_label(label, origin=where),
                text=text.strip(),
                origin=where,
            )
        )
    if not records:
        raise DataError(f"{path} has no examples; expected one row per text")
    return records


def _label_name(
    value: Any, names: Sequence[str] | Mapping[int, str] | None, column: str, where: str
) -> str:
    index: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        index = int(value.strip())
    elif isinstance(value, str) and value.strip():
        return value
    if index is None:
        raise DataError(
            f"{where}: expected a label name or an integer label in column {column!r}, "
            f"found {_short(value)}"
        )
    if names is None:
        raise DataError(
            f"{where}: integer label {index} in column {column!r} but no label_names to map "
            "integers to names were given"
        )
    table = dict(enumerate(names)) if not isinstance(names, Mapping) else names
    if index not in table:
        raise DataError(
            f"{where}: integer label {index} in column {column!r} is not one of "
            f"{', '.join(f'{k}={v}' for k, v in table.items())}"
        )
    return table[index]


# ---------------------------------------------------------------- manifests


def read_manifest(path: str | Path, allow_absolute: bool = False) -> list[Record] | Splits:
    """A csv or jsonl manifest: columns image and/or text, label, optional group, split, id.

    image paths are relative to the manifest's folder and may not leave it (no "..", not
    absolute) unless allow_absolute. With a split column (train, val/validation, test) the
    result is a dict of splits, otherwise a list. ids come from an id column if there is
    one, else "MANIFEST:LINE".
    """
    path = _absolute(path)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise DataError(f"manifest {path}: expected a .csv or .jsonl file")
    folder = path.parent
    rows = list(_table_rows(path, ("label",)))
    if not rows:
        raise DataError(f"manifest {path} has no rows; expected one example a row")
    columns = {name for _, row in rows for name in row}
    if not columns & {"image", "text"}:
        raise DataError(
            f"manifest {path}: expected a column 'image' and/or 'text', found columns "
            f"{', '.join(sorted(columns))}"
        )
    has_split = "split" in columns
    records: list[tuple[str | None, Record]] = []
    seen: dict[str, str] = {}
    for number, row in rows:
        where = f"{path}:{number}"
        image = _manifest_image(row.get("image"), folder, allow_absolute, where)
        text = _optional_str(row.get("text"), "text", where)
        if image is None and text is None:
            raise DataError(f"{where}: expected an image path or a text, found neither")
        label = _optional_str(row["label"], "label", where)
        if label is None:
            raise DataError(f"{where}: expected a label in column 'label', found none")
        group = _optional_str(row.get("group"), "group", where, allow_int=True)
        record_id = _optional_str(row.get("id"), "id", where, allow_int=True)
        record_id = record_id or f"{path.name}:{number}"
        if record_id in seen:
            raise DataError(f"{where}: id {record_id!r} is also used at {seen[record_id]}")
        seen[record_id] = where
        split = None
        if has_split:
            raw = _optional_str(row.get("split"), "split", where) or ""
            split = MANIFEST_SPLITS.get(raw.lower())
            if split is None:
                raise DataError(
                    f"{where}: expected split to be one of {', '.join(MANIFEST_SPLITS)}, "
                    f"found {raw!r}"
                )
        record = Record(
            id=record_id,
            label=canonical_label(label, origin=where),
            text=text,
            image=image,
            group=group,
            origin=where,
        )
        records.append((split, record))
    if not has_split:
        return [record for _, record in records]
    splits: Splits = {name: [] for name in SPLITS}
    for split, record in records:
        splits[split].append(record)  # type: ignore[index]
    return splits


def _manifest_image(value: Any, folder: Path, allow_absolute: bool, where: str) -> Path | None:
    raw = _optional_str(value, "image", where)
    if raw is None:
        return None
    if "\0" in raw:
        raise DataError(f"{where}: image path {raw!r} contains a NUL character")
    # Manifests written on Windows use backslashes; treat them as separators everywhere.
    posix = raw.replace("\\", "/")
    escapes = (
        PurePosixPath(posix).is_absolute()
        or PureWindowsPath(raw).is_absolute()
        or PureWindowsPath(raw).drive != ""
        or ".." in PurePosixPath(posix).parts
    )
    if escapes and not allow_absolute:
        raise DataError(
            f"{where}: image path {raw!r} leaves the manifest's folder {folder}; expected a "
            "path relative to it without '..' (pass allow_absolute=True to allow this)"
        )
    file = Path(posix) if Path(posix).is_absolute() else folder / posix
    try:
        exists = file.is_file()
    except (OSError, ValueError):
        exists = False
    if not exists:
        raise DataError(f"{where}: image file {raw!r} not found (looked for {file})")
    # The path as written stays inside; a symbolic link on the way may still lead outside.
    resolved = file.resolve()
    if not allow_absolute and not resolved.is_relative_to(folder.resolve()):
        raise DataError(
            f"{where}: image path {raw!r} leads to {resolved} through a symbolic link, outside "
            f"the manifest's folder {folder}; expected a file inside it (pass "
            "allow_absolute=True to allow this)"
        )
    return file


def _optional_str(value: Any, column: str, where: str, allow_int: bool = False) -> str | None:
    if value is None:
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string in column {column!r}, found {_short(value)}")
    return value.strip() or None


# ---------------------------------------------------------------- shared helpers


def _absolute(path: str | Path) -> Path:
    # Absolute, so that records stay valid when Hydra changes the working directory.
    return Path(os.path.abspath(Path(path).expanduser()))


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read: {error.strerror or error}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.end]
        raise DataError(
            f"{path}:{line}: expected UTF-8 text, found the byte(s) {bad!r}; "
            "re-save the file as UTF-8"
        ) from None


def _lines(text: str) -> list[str]:
    # str.splitlines would also split on form feeds and U+2028 and shift the line numbers.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def csv_rows(path: Path, required: Sequence[str], what: str) -> Iterator[tuple[int, dict]]:
    """(line number, {column: field}) of each row of a UTF-8 csv with a header (BOM allowed):
    blank lines skipped, every other row with exactly as many fields as the header."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(
                f"{path}: the {what} is empty; expected a header with {', '.join(required)}"
            )
        header = [name.strip() for name in header]
        missing = [name for name in required if name not in header]
        if missing:
            raise DataError(
                f"{path}:1: the {what} has no column {', '.join(map(repr, missing))}; "
                f"found columns {', '.join(map(repr, header))}"
            )
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{reader.line_num}: expected {len(header)} fields "
                    f"({', '.join(header)}), found {len(row)}"
                )
            yield reader.line_num, dict(zip(header, row, strict=True))
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: not valid csv ({error})") from None


def _table_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from csv_rows(path, required, what="csv file")
    elif suffix in (".jsonl", ".json"):
        yield from _jsonl_rows(path, required)
    elif suffix == ".parquet":
        yield from _parquet_rows(path, required)
    else:
        raise DataError(f"{path}: expected a .csv, .jsonl, .json (JSON lines) or .parquet file")


def _jsonl_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(_lines(_decode(path)), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            hint = " (a JSON array? write JSON lines, as Dataset.to_json does)"
            raise DataError(
                f"{path}:{number}: expected one JSON object per line"
                f"{hint if line.lstrip().startswith('[') else ''}, found {line[:60]!r}"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, found {_short(row)}")
        missing = [name for name in required if name not in row]
        if missing:
            raise DataError(
                f"{path}:{number}: no column {', '.join(map(repr, missing))}; found columns "
                f"{', '.join(map(repr, row))}"
            )
        yield number, row


def _parquet_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        schema = pq.read_schema(path)
        missing = [name for name in required if name not in schema.names]
        if missing:
            raise DataError(
                f"{path}: no column {', '.join(map(repr, missing))}; found columns "
                f"{', '.join(map(repr, schema.names))}"
            )
        table = pq.read_table(path, columns=list(required))
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: expected a parquet file, could not read it ({error})") from None
    columns = {name: table.column(name).to_pylist() for name in required}
    for index in range(table.num_rows):
        yield index + 1, {name: values[index] for name, values in columns.items()}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
