"""`data=text_table`: any text set in csv, tsv, jsonl or parquet, by naming its columns.

data.root is one table, or a folder with one table per split (train.*, val.* / validation.* /
dev.*, test.*, each name alone or followed by _ or -: dev_sent_emo.csv; or named by `files`,
e.g. {train: a.csv, dev: b.csv, test: c.csv}). One table is split by emoclip unless `split_column` names a column of train,
val (validation, dev) and test. Integer labels need `label_names` (the name of label 0, 1, ...).
`group_column` names a column of ids that must not cross splits (an author, a conversation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emoclip.data.readers import (
    TABLE_EXTENSIONS,
    TextDecoder,
    cell_str,
    listing,
    row_origin,
    short,
    table_rows,
)
from emoclip.data.records import SPLITS, Record, Splits
from emoclip.data.sources.base import Source
from emoclip.errors import ConfigError, DataError

SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}


class TextTable(Source):
    """A text + label table (or one per split); columns named in the config."""

    modalities = ("text",)
    location = "a csv, tsv, jsonl or parquet table, or a folder with train.*, val.*, test.*"
    gives_splits = None
    group_hint = "Name a column of such ids with data.dataset.group_column=..."

    def __init__(
        self,
        name: str = "text_table",
        text_column: str = "text",
        label_column: str = "label",
        label_names: Sequence[str] | Mapping[int, str] | None = None,
        split_column: str | None = None,
        group_column: str | None = None,
        files: Mapping[str, str] | None = None,
    ):
        super().__init__(name)
        self.files = dict(files or {})
        self.text_column, self.label_column = text_column, label_column
        self.label_names = label_names
        self.split_column, self.group_column = split_column, group_column

    def group_description(self) -> str | None:
        return self.group_column

    @classmethod
    def groups_in_config(cls, source: Mapping) -> str | None:
        return source.get("group_column")

    @classmethod
    def write_examples(cls, folder: Path, source: Mapping) -> dict:
        from emoclip.demo.examples import drawer, write_text_table

        table = write_text_table(folder, per_class=12, drawer=drawer())
        columns = {"text_column": "post", "label_column": "feeling", "group_column": "author"}
        return {
            "root": table,
            "label_space": "sentiment",
            **{f"dataset.{key}": value for key, value in columns.items()},
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        }

    def read(self, root: Path, decoder: TextDecoder) -> list[Record] | Splits:
        if root.is_dir():
            if self.split_column:
                raise ConfigError(
                    f"data.root={root} is a folder of one table per split, so "
                    f"data.dataset.split_column={self.split_column} does not apply; set "
                    "data.root to a single table to use its split column"
                )
            return {
                split: [r for _, r in self.read_table(path, decoder)]
                for split, path in split_files(root, self.location, self.files).items()
            }
        rows = self.read_table(root, decoder)
        if not self.split_column:
            return [r for _, r in rows]
        splits: Splits = {name: [] for name in SPLITS}
        for split, record in rows:
            splits[split].append(record)  # type: ignore[index]
        return splits

    def read_table(self, path: Path, decoder: TextDecoder) -> list[tuple[str | None, Record]]:
        """(split or None, record) for each row of one table."""
        required = [self.text_column, self.label_column]
        required += [c for c in (self.split_column, self.group_column) if c]
        found = []
        for number, row in table_rows(path, required, decoder):
            where = row_origin(path, number)
            text = row[self.text_column]
            if text is not None and not isinstance(text, str):
                raise DataError(
                    f"{where}: expected a text in column {self.text_column!r}, found {short(text)}"
                )
            text = (text.strip() or None) if text else None  # empty: data.skip_bad decides
            label = label_name(row[self.label_column], self.label_names, self.label_column, where)
            group = (
                cell_str(row, self.group_column, where, allow_int=True)
                if self.group_column
                else None
            )
            split = split_name(row, self.split_column, where) if self.split_column else None
            record = Record(
                id=f"{path.name}:{number}",
                label=label,
                text=text,
                group=group,
                origin=where,
            )
            found.append((split, record))
        if not found:
            raise DataError(f"{path} has no examples; expected one row per text")
        return found


def split_files(
    root: Path, expected: str, named: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """train/val/test tables in a folder: train.*, val.* (validation.*, dev.*), test.*, each
    stem alone or followed by _ or - (dev_sent_emo.csv); or as `named` says (split -> file)."""
    if named:
        return named_split_files(root, named)
    stems = {"train": ("train",), "val": ("val", "validation", "dev"), "test": ("test",)}
    found: dict[str, Path] = {}
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(TABLE_EXTENSIONS))
    for split, names in stems.items():
        candidates = [
            path
            for path in tables
            for ext in TABLE_EXTENSIONS
            if path.name.endswith(ext)
            and any(
                path.name[: -len(ext)] == name or path.name.startswith((f"{name}_", f"{name}-"))
                for name in names
            )
        ]
        if len(candidates) > 1:
            raise DataError(
                f"{root} has several files for the {split} split: "
                f"{', '.join(p.name for p in candidates)}; keep one, or name the files: "
                "data.dataset.files='{train: ..., val: ..., test: ...}'"
            )
        if candidates:
            found[split] = candidates[0]
    missing = [split for split in SPLITS if split not in found]
    if missing:
        raise DataError(
            f"{root} has no file for the {', '.join(missing)} split(s) (found: {listing(root)}); "
            f"expected {expected}"
        )
    return found


def named_split_files(root: Path, named: Mapping[str, str]) -> dict[str, Path]:
    """data.dataset.files: a file per split (train, val or validation or dev, test)."""
    found: dict[str, Path] = {}
    for key, name in named.items():
        split = SPLIT_NAMES.get(str(key).lower())
        if split is None or split in found:
            raise ConfigError(
                f"data.dataset.files has key {key!r}; expected one each of train, val (or "
                "validation, dev) and test"
            )
        path = root / str(name)
        if not path.is_file():
            raise DataError(f"data.dataset.files.{key}={name}: no such file in {root}")
        found[split] = path
    missing = [split for split in SPLITS if split not in found]
    if missing:
        raise ConfigError(f"data.dataset.files names no file for {', '.join(missing)}")
    return found


def split_name(row: dict, column: str, where: str) -> str:
    raw = cell_str(row, column, where) or ""
    if raw.lower() not in SPLIT_NAMES:
        raise DataError(
            f"{where}: expected column {column!r} to be one of {', '.join(SPLIT_NAMES)}, "
            f"found {raw!r}"
        )
    return SPLIT_NAMES[raw.lower()]


def label_name(
    value: Any, names: Sequence[str] | Mapping[int, str] | None, column: str, where: str
) -> str:
    """A label cell as the file's label name; integer labels through `names`."""
    index: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        index = int(value.strip())
    elif isinstance(value, str) and value.strip():
        return value.strip()
    if index is None:
        raise DataError(
            f"{where}: expected a label name or an integer label in column {column!r}, "
            f"found {short(value)}"
        )
    if names is None:
        raise DataError(
            f"{where}: integer label {index} in column {column!r}, but no names for integer "
            "labels were given (data.dataset.label_names=[name of 0, name of 1, ...])"
        )
    table = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    table = {int(k): v for k, v in table.items()}
    if index not in table:
        raise DataError(
            f"{where}: integer label {index} in column {column!r} is not one of "
            f"{', '.join(f'{k}={v}' for k, v in table.items())}"
        )
    return table[index]
