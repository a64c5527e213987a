"""Files written whole or not at all.

A file is written to a hidden temporary file beside its destination, flushed to disk, then
renamed over it (os.replace is atomic within one filesystem), so a crash, a kill or a full disk
mid-write leaves the previous file as it was and never a half-written one; the temporary file is
removed on any error. A failed write is one WriteError that names the path and the cause.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from emoclip.errors import WriteError


def partial_path(path: Path) -> Path:
    """The temporary file beside `path`: hidden, unique, ending in .partial."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s content to (e.g. with a library's save function);
    on leaving the block it is flushed and renamed over `path`."""
    path = Path(path)
    partial = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield partial
        with open(partial, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException as err:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise


@contextmanager
def open_atomically(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """open() for writing `path` whole or not at all (mode "w" or "wb")."""
    with atomic_path(path) as partial, open(partial, mode.replace("w", "x"), **kwargs) as file:
        yield file
        file.flush()


def write_atomically(path: str | Path, content: str | bytes) -> None:
    binary = isinstance(content, bytes)
    kwargs = {} if binary else {"encoding": "utf-8"}
    with open_atomically(path, "wb" if binary else "w", **kwargs) as file:
        file.write(content)


def write_error(path: Path, err: OSError) -> WriteError:
    try:
        kept = " (the previous file is kept)" if path.is_file() else ""
    except OSError:
        kept = ""
    return WriteError(f"cannot write {path}: {err.strerror or err}{kept}")
