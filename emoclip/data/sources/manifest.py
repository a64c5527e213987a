"""`data=manifest`: a table of examples: image and/or text, label, optional group, split, id.

data.root is the manifest, a csv, tsv or jsonl file. Image paths are relative to its folder and
may not leave it (no "..", not absolute) unless data.dataset.allow_absolute=true. With a split
column (train, val / validation / dev, test) its splits are used; without one emoclip splits
the rows, keeping each `group` (a person, a post) and each set of duplicates in one split.
The columns are named image, text, label, group, split and id unless data.dataset.columns says
otherwise (e.g. `data.dataset.columns.image=img_path data.dataset.columns.label=emotion`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

from emoclip.data.readers import TextDecoder, cell_str, table_rows
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.data.sources.base import Source
from emoclip.data.sources.text_table import split_name
from emoclip.errors import ConfigError, DataError

MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl")
# What each column holds, and its name unless data.dataset.columns.<what> names another.
COLUMNS = ("image", "text", "label", "group", "split", "id")


class Manifest(Source):
    """A manifest of (image and/or text, label, group[, split])."""

    modalities = ("text", "image")
    location = "a manifest: a csv, tsv or jsonl file with columns image and/or text, and label"
    gives_splits = None
    groups_by = "its group column"
    group_hint = "Add a column 'group' with the subject or source of each example"

    def __init__(
        self,
        name: str = "manifest",
        allow_absolute: bool = False,
        columns: Mapping[str, str] | None = None,
    ):
        super().__init__(name)
        self.allow_absolute = allow_absolute
        unknown = sorted(set(columns or {}) - set(COLUMNS))
        if unknown:
            raise ConfigError(
                f"data.dataset.columns.{unknown[0]}: not a column a manifest has; expected one "
                f"of {', '.join(COLUMNS)}"
            )
        self.columns = {what: what for what in COLUMNS} | {
            what: str(name) for what, name in (columns or {}).items() if name is not None
        }
        self._has_groups = True

    def group_description(self) -> str | None:
        return self.groups_by if self._has_groups else None

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        from emoclip.demo.examples import drawer, write_manifest

        return {
            "root": write_manifest(folder, 12, drawer()),
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        }

    def read(self, root: Path, decoder: TextDecoder) -> list[Record] | Splits:
        path = root
        if path.suffix.lower() not in MANIFEST_EXTENSIONS:
            raise DataError(f"manifest {path}: expected a .csv, .tsv or .jsonl file")
        if not path.is_file():
            raise DataError(f"manifest {path} does not exist; data.root must be {self.location}")
        c = self.columns
        rows = list(table_rows(path, (c["label"],), decoder, what="manifest"))
        if not rows:
            raise DataError(f"manifest {path} has no rows; expected one example a row")
        columns = {name for _, row in rows for name in row}
        if not columns & {c["image"], c["text"]}:
            raise DataError(
                f"manifest {path}: expected a column {c['image']!r} and/or {c['text']!r}, found "
                f"columns {', '.join(sorted(columns))} (name yours with data.dataset.columns."
                "image=... / .text=...)"
            )
        self._has_groups = c["group"] in columns
        has_split = c["split"] in columns
        records: list[tuple[str | None, Record]] = []
        seen: dict[str, str] = {}
        folder = path.parent
        inside = folder.resolve()  # once: resolving it per row was most of reading 100k rows
        for number, row in rows:
            where = f"{path}:{number}"
            image = self._image(cell_str(row, c["image"], where), folder, inside, where)
            text = cell_str(row, c["text"], where)
            if image is None and text is None:
                raise DataError(f"{where}: expected an image path or a text, found neither")
            label = cell_str(row, c["label"], where, allow_int=True)
            if label is None:
                raise DataError(f"{where}: expected a label in column {c['label']!r}, found none")
            record_id = cell_str(row, c["id"], where, allow_int=True) or f"{path.name}:{number}"
            if record_id in seen:
                raise DataError(f"{where}: id {record_id!r} is also used at {seen[record_id]}")
            seen[record_id] = where
            record = Record(
                id=record_id,
                label=label,
                text=text,
                image=image,
                group=cell_str(row, c["group"], where, allow_int=True),
                origin=where,
            )
            records.append((split_name(row, c["split"], where) if has_split else None, record))
        if not has_split:
            return [record for _, record in records]
        splits: Splits = {name: [] for name in SPLITS}
        for split, record in records:
            splits[split].append(record)  # type: ignore[index]
        return splits

    def _image(self, raw: str | None, folder: Path, inside: Path, where: str) -> Path | None:
        """The image file a row names, relative to the manifest's `folder` (`inside`: its
        resolved path); a DataError where it is missing or leads out of the folder."""
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
        if escapes and not self.allow_absolute:
            raise DataError(
                f"{where}: image path {raw!r} leaves the manifest's folder {folder}; expected a "
                "path relative to it without '..' (data.dataset.allow_absolute=true allows this)"
            )
        absolute = Path(posix).is_absolute()
        file = Path(posix) if absolute else folder / posix
        try:
            exists = file.is_file()
        except (OSError, ValueError):
            exists = False
        if not exists:
            raise DataError(f"{where}: image file {raw!r} not found (looked for {file})")
        # The path as written stays inside; a symbolic link on the way may still lead outside.
        # Resolving from the resolved folder checks only the components the row adds.
        resolved = Path(os.path.realpath(file if absolute else inside / posix))
        if not self.allow_absolute and not resolved.is_relative_to(inside):
            raise DataError(
                f"{where}: image path {raw!r} leads to {resolved} through a symbolic link, outside "
                f"the manifest's folder {folder}; expected a file inside it "
                "(data.dataset.allow_absolute=true allows this)"
            )
        return file
