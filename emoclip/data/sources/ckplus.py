"""`data=ckplus`: CK+ faces (Lucey et al., 2010), as distributed or as class folders (CK+48).

The layout is detected. The distributed tree keeps only labelled sequences: their last
`peak_frames` frames carry the sequence's label and, with `include_neutral`, the first frame
is "neutral". Class folders: for CK+ names (S010_004_00000017) the last `peak_frames` frames
of each sequence in a class folder are kept (the common crop already holds 3), and a neutral/
folder is read only with `include_neutral`. The group is the subject ("S010").
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from emoclip.data.labels import normalise_label
from emoclip.data.readers import TextDecoder, class_folders, image_files, listing, subdirs
from emoclip.data.records import Record
from emoclip.data.sources.base import Source
from emoclip.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# The emotion codes of CK+'s Emotion/*_emotion.txt files, 1..7, by the names its README uses.
CKPLUS_CODES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
CKPLUS_NAME = re.compile(r"(S\d+)_(\d+)_(\d+)")

LAYOUTS = """\
expected one of two layouts:
  a) CK+ as distributed: ROOT/cohn-kanade-images/S005/001/S005_001_00000011.png with labels in
     ROOT/Emotion/S005/001/S005_001_00000011_emotion.txt
  b) one folder per class (e.g. the 48x48 crop "CK+48"): ROOT/anger/S010_004_00000017.png,
     ROOT/happy/..., ... (png, jpg, jpeg, bmp, tif, tiff, webp or pgm)
CK+ is licensed for non-commercial research and is not downloaded by emoclip:
request it from the dataset's authors (Lucey et al., 2010), unpack it, and point emoclip at it
with data.root=PATH."""


class CkPlus(Source):
    """CK+ images, as distributed or as class folders (CK+48); split by subject."""

    modalities = ("image",)
    location = "the CK+ folder (the distributed tree, or one folder per class such as CK+48)"
    folder = "ckplus48"
    classes = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
    groups_by = "subject"
    group_hint = (
        "CK+ file names S<subject>_<sequence>_<frame> give the subject; for other names use "
        "data=image_folders with data.dataset.group_pattern"
    )

    def __init__(self, name: str = "ckplus", peak_frames: int = 3, include_neutral: bool = False):
        super().__init__(name)
        if peak_frames < 1:
            raise ConfigError(
                f"data.dataset.peak_frames must be at least 1 (the last frames of a sequence), "
                f"got {peak_frames}"
            )
        self.peak_frames, self.include_neutral = peak_frames, include_neutral

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        from emoclip.demo.examples import drawer, write_ckplus

        return {"root": write_ckplus(folder, subjects=8, drawer=drawer())}

    def read(self, root: Path, decoder: TextDecoder) -> list[Record]:
        if not root.is_dir():
            raise DataError(f"CK+ folder {root} does not exist; {LAYOUTS}")
        distributed = _find_distributed(root)
        if distributed is not None:
            return self._read_distributed(root, *distributed, decoder)
        folders = class_folders(root)
        if not folders:
            raise DataError(
                f"CK+ folder {root} holds no CK+ images (found: {listing(root)}); {LAYOUTS}"
            )
        return self._read_class_folders(root, folders)

    def _read_distributed(
        self, root: Path, images: Path, labels: Path, decoder: TextDecoder
    ) -> list[Record]:
        records: list[Record] = []
        sequences, short, shortest = 0, 0, None
        for subject_dir in subdirs(images):
            for sequence_dir in subdirs(subject_dir):
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
                label = _read_code(label_files[0], decoder)
                frames = _frames(sequence_dir)
                if not frames:
                    continue
                if len(frames) <= self.peak_frames:
                    short += 1
                    shortest = min(shortest or len(frames), len(frames))
                peaks = frames[-self.peak_frames :]
                chosen = [(frame, label) for frame in peaks]
                if self.include_neutral and frames[0] not in peaks:
                    chosen.insert(0, (frames[0], "neutral"))
                for frame, frame_label in chosen:
                    subject = CKPLUS_NAME.fullmatch(frame.stem).group(1)  # type: ignore[union-attr]
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
                f"{labels}/S005/001/S005_001_00000011_emotion.txt); {LAYOUTS}"
            )
        if short:
            log.warning(
                "%s: %d labelled sequence(s) have peak_frames=%d frames or fewer (the shortest "
                "%d), so their first frame, the neutral onset, is taken as the sequence's "
                "emotion; lower data.dataset.peak_frames to keep only peak frames",
                self.name,
                short,
                self.peak_frames,
                shortest,
            )
        return records

    def _read_class_folders(
        self, root: Path, folders: list[tuple[Path, list[Path]]]
    ) -> list[Record]:
        neutral = [f for f, _ in folders if normalise_label(f.name) == "neutral"]
        if self.include_neutral and not neutral:
            raise DataError(
                f"CK+ folder {root} is in the class-folder layout and has no neutral/ folder, so "
                "include_neutral has no neutral frames to take; set "
                "data.dataset.include_neutral=false, add a neutral/ folder, or use the "
                "distributed layout (its first frames are neutral)"
            )
        if neutral and not self.include_neutral:
            log.info("%s: left out the neutral/ folder (include_neutral is false)", root)
        sequences: dict[tuple[str, str, str], list[tuple[int, Path]]] = defaultdict(list)
        kept: list[tuple[Path, Path]] = []  # (class folder, file)
        for folder, files in folders:
            if folder in neutral:
                kept += [(folder, f) for f in files] if self.include_neutral else []
                continue
            for file in files:
                match = CKPLUS_NAME.fullmatch(file.stem)
                if match is None:
                    kept.append((folder, file))
                else:
                    sequences[(folder.name, match.group(1), match.group(2))].append(
                        (int(match.group(3)), file)
                    )
        for (folder_name, _, _), frames in sequences.items():
            frames.sort()
            kept += [(root / folder_name, file) for _, file in frames[-self.peak_frames :]]
        if not kept:
            raise DataError(
                f"CK+ folder {root} has images only in neutral/, which is left out unless "
                f"include_neutral is true; {LAYOUTS}"
            )
        records = []
        for folder, file in sorted(kept, key=lambda item: item[1]):
            match = CKPLUS_NAME.fullmatch(file.stem)
            records.append(
                Record(
                    id=file.relative_to(root).as_posix(),
                    label=folder.name,
                    image=file,
                    group=match.group(1) if match else None,
                    origin=str(file),
                )
            )
        return records


def _find_distributed(root: Path) -> tuple[Path, Path] | None:
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
            f"(the images and the emotion labels are separate downloads); {LAYOUTS}"
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


def _read_code(path: Path, decoder: TextDecoder) -> str:
    text = decoder.read(path).strip()
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or not 1 <= value <= len(CKPLUS_CODES):
        codes = ", ".join(f"{i + 1}={name}" for i, name in enumerate(CKPLUS_CODES))
        raise DataError(
            f"{path}:1: expected one CK+ emotion code like '3.0000000e+00' ({codes}), "
            f"found {text[:40]!r}"
        )
    return CKPLUS_CODES[int(value) - 1]


def _frames(sequence_dir: Path) -> list[Path]:
    frames = []
    for file in image_files(sequence_dir):
        match = CKPLUS_NAME.fullmatch(file.stem)
        if match is None:
            raise DataError(
                f"{file}: expected a CK+ frame name like S005_001_00000011"
                f"{file.suffix} (subject_sequence_frame)"
            )
        frames.append((int(match.group(3)), file))
    return [file for _, file in sorted(frames)]
