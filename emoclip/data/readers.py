"""File decoding every source shares: texts in their encodings, tables, folders of images.

A source (emoclip/data/sources/) knows its data set's layout; what it reads goes through here,
so that every format gets the same checks and the same errors: a DataError naming the file
(and line) and what was expected.

Text encodings: `utf-8` (the default; a byte-order mark is allowed), one named encoding
(`latin-1`, `gb18030`, ...), or `auto`: UTF-8 where a file is UTF-8, and for the others the
encoding charset-normalizer detects, over all such files of one read together (short texts
alone are too little to tell codepages apart). Every file decoded otherwise than as UTF-8 is
counted, and the counts are logged.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from emoclip.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm"})
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
AUTO = "auto"
_BOM = b"\xef\xbb\xbf"


class TextDecoder:
    """Decodes text files in `encoding` (utf-8, a codec name, or auto) and counts fallbacks."""

    def __init__(self, encoding: str = "utf-8"):
        if encoding != AUTO:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise ConfigError(
                    f"data.encoding={encoding!r} is not an encoding Python knows; expected "
                    "utf-8, a codec name such as latin-1 or gb18030, or auto"
                ) from None
        self.encoding = encoding
        self.files = 0  # text files decoded
        self.fallbacks: Counter[str] = Counter()  # auto: files decoded as other than UTF-8

    def read(self, path: Path) -> str:
        """One file's text."""
        return self.read_many([path])[0]

    def read_many(self, paths: Sequence[Path]) -> list[str]:
        """The texts of many files; with `auto`, the non-UTF-8 ones share one detection."""
        raw = [_read_bytes(p) for p in paths]
        self.files += len(raw)
        if self.encoding != AUTO:
            return [
                self._decode(data, path, self.encoding)
                for data, path in zip(raw, paths, strict=True)
            ]
        texts: list[str | None] = []
        for data in raw:
            try:
                texts.append(_strip_bom(data).decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(None)
        failed = [i for i, t in enumerate(texts) if t is None]
        if failed:
            pooled = _detect(b"\n".join(raw[i] for i in failed))
            for i in failed:
                texts[i], used = self._fallback(raw[i], paths[i], pooled)
                self.fallbacks[used] += 1
        return texts  # type: ignore[return-value]

    def summary(self) -> str | None:
        """A line for the log when some files were not UTF-8 (auto), else None."""
        if not self.fallbacks:
            return None
        total = sum(self.fallbacks.values())
        used = ", ".join(f"{name} ({n})" for name, n in self.fallbacks.most_common())
        return (
            f"{total} of {self.files} text files are not UTF-8 and were decoded as {used} "
            "(data.encoding=auto, detected by charset-normalizer)"
        )

    def _fallback(self, data: bytes, path: Path, pooled: str | None) -> tuple[str, str]:
        for encoding in (pooled, _detect(data)):
            if encoding is None:
                continue
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                continue
        raise DataError(
            f"{path}: not UTF-8, and charset-normalizer could not tell its encoding; "
            "re-save it as UTF-8 or name its encoding with data.encoding=..."
        )

    @staticmethod
    def _decode(data: bytes, path: Path, encoding: str) -> str:
        if codecs.lookup(encoding).name == "utf-8":
            data = _strip_bom(data)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            bad = data[error.start : error.end]
            hint = (
                "re-save the file as UTF-8, name its encoding with data.encoding=..., or let "
                "emoclip detect it with data.encoding=auto"
            )
            raise DataError(
                f"{path}:{line}: expected {encoding} text, found the byte(s) {bad!r}; {hint}"
            ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; expected a file") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read: {error.strerror or error}") from None


def _strip_bom(data: bytes) -> bytes:
    return data[len(_BOM) :] if data.startswith(_BOM) else data


def _detect(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return best.encoding if best is not None else None


def lines(text: str) -> list[str]:
    """A file's lines without their endings. str.splitlines would also split on form feeds
    and U+2028 and shift the line numbers."""
    found = text.split("\n")
    if found and found[-1] == "":
        found.pop()
    return [line.removesuffix("\r") for line in found]


# ---------------------------------------------------------------- tables


def table_rows(
    path: Path, required: Sequence[str], decoder: TextDecoder, what: str = "table"
) -> Iterator[tuple[int, dict]]:
    """(line or row number, {column: value}) of a csv, tsv, jsonl (.json: JSON lines) or
    parquet file, checking that the required columns are there."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        yield from csv_rows(path, required, decoder, what, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".json"):
        yield from _jsonl_rows(path, required, decoder)
    elif suffix == ".parquet":
        yield from _parquet_rows(path, required)
    else:
        raise DataError(
            f"{path}: expected a .csv, .tsv, .jsonl, .json (JSON lines) or .parquet file"
        )


def csv_rows(
    path: Path, required: Sequence[str], decoder: TextDecoder, what: str, delimiter: str = ","
) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(decoder.read(path), newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(
                f"{path}: the {what} is empty; expected a header with {', '.join(required)}"
            )
        header = [name.strip() for name in header]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:  # which of the two would be read is a guess: refused
            raise DataError(
                f"{path}:1: the {what} names the column {', '.join(map(repr, repeated))} more "
                "than once; rename or remove the repeated column"
            )
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


def _jsonl_rows(
    path: Path, required: Sequence[str], decoder: TextDecoder
) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(lines(decoder.read(path)), start=1):
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
            raise DataError(f"{path}:{number}: expected a JSON object, found {short(row)}")
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
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: expected a parquet file, could not read it ({error})") from None
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for index in range(table.num_rows):
        yield index + 1, {name: values[index] for name, values in columns.items()}


def row_origin(path: Path, number: int) -> str:
    return f"{path}:{number}" if path.suffix.lower() != ".parquet" else f"{path} row {number}"


def cell_str(row: dict, column: str, where: str, allow_int: bool = False) -> str | None:
    """A table cell as a stripped string (None if absent or empty); other types are an error."""
    value = row.get(column)
    if value is None:
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string in column {column!r}, found {short(value)}")
    return value.strip() or None


# ---------------------------------------------------------------- folders


def subdirs(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and not _hidden(p) and p.name != "__MACOSX"
    )


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p) and p.is_file()
    )


def class_folders(root: Path) -> list[tuple[Path, list[Path]]]:
    """(folder, its image files) for each subfolder of root that holds images."""
    folders = []
    for folder in subdirs(root):
        files = image_files(folder)
        if files:
            folders.append((folder, files))
    return folders


def listing(folder: Path, limit: int = 10) -> str:
    """What a folder holds, for an error message."""
    found = sorted(p.name for p in folder.iterdir())
    return ", ".join(found[:limit]) + (", ..." if len(found) > limit else "") or "nothing"


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


# ---------------------------------------------------------------- small helpers


def absolute(path: str | Path) -> Path:
    # Absolute, so that records stay valid when Hydra changes the working directory.
    return Path(os.path.abspath(Path(path).expanduser()))


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
