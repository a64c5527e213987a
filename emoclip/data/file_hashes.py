"""Image files' content digests, remembered across runs so a file is hashed once.

Duplicate grouping (emoclip.data.duplicates) and the decoded store's key (emoclip.data.store)
both need a digest of each image file's bytes; at a million files that is minutes of reading
every run. A digest is kept in a SQLite file under the cache folder beside the file's path,
size, modification and change times (ns) and inode, and reused while all of these are the
same: a file written to since has a new change time, which no user can set back. Each row
carries an HMAC under this user's key (emoclip.system.integrity), so a row written by anyone else is
ignored and the file hashed afresh.

Hashing reads the cache only inside `remembered_in(folder)` (the data module sets it while a
source is read and the store is built); elsewhere every call hashes the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emoclip.errors import DataError
from emoclip.system.integrity import keyed_digest, same_digest, secret_key

log = logging.getLogger(__name__)
_ACTIVE = threading.local()


def hash_file(path: Path) -> str:
    """blake2b-128 of a file's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise DataError(f"cannot read image {path}: {error.strerror or error}") from None
    return digest.hexdigest()


class FileHashes:
    """The SQLite table of remembered digests in `folder` (made on first use)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "file_hashes.sqlite"
        self.key = secret_key()
        self.db = sqlite3.connect(self.path, timeout=120)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, stat TEXT, "
            "digest TEXT, mac TEXT)"
        )
        self.pending: list[tuple[str, str, str, str]] = []
        self.hashed = 0

    def digest(self, path: Path) -> str:
        name = os.path.abspath(path)
        try:
            st = os.stat(name)
        except OSError as error:
            raise DataError(f"cannot read image {path}: {error.strerror or error}") from None
        stat = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        row = self.db.execute("SELECT stat, digest, mac FROM hashes WHERE path=?", (name,))
        found = row.fetchone()
        if found and found[0] == stat and same_digest(found[2], self._mac(name, stat, found[1])):
            return found[1]
        digest = hash_file(Path(name))
        self.hashed += 1
        self.pending.append((name, stat, digest, self._mac(name, stat, digest)))
        if len(self.pending) >= 10_000:
            self.flush()
        return digest

    def _mac(self, name: str, stat: str, digest: str) -> str:
        return keyed_digest([f"{name}\0{stat}\0{digest}".encode()], self.key)

    def flush(self) -> None:
        if not self.pending:
            return
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?)", self.pending)
        except sqlite3.Error as err:  # a read-only or broken cache: hash again next run
            log.warning("cannot remember file digests in %s (%s)", self.path, err)
        self.pending = []

    def close(self) -> None:
        self.flush()
        self.db.close()


@contextmanager
def remembered_in(folder: Path | None) -> Iterator[None]:
    """Within the block, file_digest reuses and records digests in `folder` (None: off)."""
    if folder is None or getattr(_ACTIVE, "table", None) is not None:
        yield
        return
    try:
        _ACTIVE.table = FileHashes(Path(folder))
    except (OSError, sqlite3.Error) as err:
        log.warning("cannot open the file digest cache in %s (%s); hashing every file", folder, err)
        yield
        return
    try:
        yield
    finally:
        table, _ACTIVE.table = _ACTIVE.table, None
        if table.hashed:
            log.info("hashed %d image files (remembered in %s)", table.hashed, table.path)
        table.close()


def file_digest(path: Path) -> str:
    """The digest of a file's bytes: remembered inside `remembered_in`, else computed."""
    table = getattr(_ACTIVE, "table", None)
    return table.digest(path) if table is not None else hash_file(path)
