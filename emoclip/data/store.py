"""The decoded store: each split's images decoded and resized once, kept on disk as one uint8
array that training maps into memory and reads item by item; and token ids as one flat array.

Why a plain memory-mapped numpy file rather than LitData chunks, WebDataset tar shards or
Arrow (HF datasets): a study reads items in a random order every epoch, and a fixed-size row
of a flat file is one page lookup away, shared zero-copy by every worker and every process on
the machine through the page cache, with nothing to install. The kernel drops those pages
under pressure (they are file-backed, not anonymous memory), so a 100,000-image split costs the
process what a 1,000-image one does. Sequential formats fit streaming from object stores:
emoclip.data.shards writes a store's split as shards for that.

A store file is named by a digest of everything its rows depend on: the store format, the
image size, the split's record ids and each image's content digest (emoclip.data.file_hashes,
remembered across runs). A change to any source file changes the name, so a stale store is
never read. Beside it a JSON file records the key, the rows dropped (unreadable images
skipped with data.skip_bad), the file's size, times and inode, and an HMAC under this user's
key (emoclip.system.integrity) of the pixels' sha256 per chunk of rows, which the decoding
processes take as they write; the JSON itself is signed. A store is used when its signature
holds and its file has the size, times and inode recorded when it was written (a change time
no one can set back); otherwise its pixels are hashed again, and a store whose bytes do not
give the recorded HMAC is logged and rebuilt. Processes that share the cache (DDP ranks,
concurrent runs) take a file lock: one writes, the others wait and read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from emoclip.data.duplicates import image_digest
from emoclip.data.images import load_pixels
from emoclip.data.records import Record
from emoclip.errors import ConfigError, DataError
from emoclip.system.integrity import keyed_digest, same_digest, secret_key
from emoclip.system.threads import available_cpus

log = logging.getLogger(__name__)
FORMAT = 2  # bump when the decoding (emoclip.data.images), the layout or the digest changes
PARALLEL_FROM = 256  # fewer images decode faster in this process than a pool starts
CHUNK_ROWS = 128  # rows a decoding task writes (small, so the processes end together)
HASH_BLOCK = 64 << 20


class Tokens:
    """Token id sequences as one flat int32 array and offsets: 1M short texts in tens of MB
    rather than a tensor object each. Items come out as int64 tensors, as the models take."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray):
        self.ids, self.offsets = ids, offsets

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> Tokens:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((t for s in sequences for t in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets)

    @classmethod
    def join(cls, parts: Sequence[Tokens]) -> Tokens:
        if not parts:
            return cls(np.zeros(0, np.int32), np.zeros(1, np.int64))
        starts = np.cumsum([0] + [len(p.ids) for p in parts[:-1]])
        offsets = [parts[0].offsets[:1]] + [
            p.offsets[1:] + s for p, s in zip(parts, starts, strict=True)
        ]
        return cls(np.concatenate([p.ids for p in parts]), np.concatenate(offsets))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def first(self, rows: int) -> Tokens:
        """The first `rows` sequences (a view of the same arrays)."""
        rows = min(rows, len(self))
        return Tokens(self.ids[: self.offsets[rows]], self.offsets[: rows + 1])

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return torch.from_numpy(self.ids[self.offsets[i] : self.offsets[i + 1]].astype(np.int64))

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


# --- images -----------------------------------------------------------------------------------


def map_pixels(path: str | Path, shape: tuple[int, ...]) -> torch.Tensor:
    """A store file as a uint8 tensor, mapped read-only and shared: its pages are the page
    cache's, not this process's memory (nor counted in its RLIMIT_DATA)."""
    if math.prod(shape) == 0:  # an empty split (mmap cannot map an empty file)
        return torch.zeros(shape, dtype=torch.uint8)
    array = np.memmap(path, np.uint8, "r", shape=shape)
    with warnings.catch_warnings():  # torch warns of writes to a read-only array; none happen
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class ImageStore:
    """Where one split's decoded images live: `folder/<what>-<size>px-<key>.u8` and its .json."""

    def __init__(self, folder: Path, records: Sequence[Record], size: int, what: str):
        self.size, self.count = size, len(records)
        digest = hashlib.sha256(f"emoclip image store {FORMAT} {size}\n".encode())
        for r in records:
            digest.update(f"{r.id}\0{image_digest(r.image)}\n".encode())
        self.key = digest.hexdigest()
        stem = f"{what.replace('/', '-')}-{size}px-{self.key[:32]}"
        self.file, self.meta = folder / f"{stem}.u8", folder / f"{stem}.json"
        self.lock = folder / f"{stem}.lock"

    def row_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def open(self, rows: int) -> torch.Tensor:
        return map_pixels(self.file, (rows, *self.row_shape()))

    def read(self) -> list[int] | None:
        """The kept rows (record indices) of a store that passes every check, else None."""
        if not self.meta.is_file():
            return None
        try:
            meta = json.loads(self.meta.read_text())
            signed = {k: v for k, v in meta.items() if k != "signature"}
            if not same_digest(meta.get("signature"), _sign(signed)):
                return self._refuse("is not signed by this user's key")
            dropped = meta["dropped"]
            if meta["key"] != self.key or not _is_index_list(dropped, self.count):
                return self._refuse("was written for other data")
            kept = _complement(dropped, self.count)
            expected = len(kept) * math.prod(self.row_shape())
            st = os.stat(self.file)
            if st.st_size != expected:
                return self._refuse(f"holds {st.st_size} bytes, not {expected}")
            if meta["stat"] != _stat(st):
                content = _content_mac(self.file, math.prod(self.row_shape()))
                if not same_digest(meta["content"], content):
                    return self._refuse("holds other pixels than were written")
                self._write_meta(kept, meta["content"])  # moved or copied, content intact
            return kept
        except (OSError, ValueError, KeyError, TypeError) as err:
            return self._refuse(f"cannot be read ({err})")

    def _refuse(self, reason: str) -> None:
        log.warning("the decoded store %s %s; decoding again", self.file, reason)
        return None

    def _write_meta(self, kept: list[int], content: str) -> None:
        dropped = _complement(kept, self.count)  # short: the unreadable images, if any
        meta = {"format": FORMAT, "key": self.key, "dropped": dropped, "content": content}
        meta["stat"] = _stat(os.stat(self.file))
        meta["signature"] = _sign(meta)
        partial = self.meta.with_name(f".{self.meta.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(meta))
        os.replace(partial, self.meta)

    def write(self, records: Sequence[Record], skip_bad: bool, what: str) -> list[int]:
        partial = self.file.with_name(f".{self.file.name}.{os.getpid()}.partial")
        try:
            kept, content = decode_into(partial, records, self.size, skip_bad, what)
            os.replace(partial, self.file)
        finally:
            partial.unlink(missing_ok=True)
        self._write_meta(kept, content)
        return kept


def stored_images(
    folder: Path, records: Sequence[Record], size: int, skip_bad: bool, what: str
) -> tuple[list[int], torch.Tensor, Path]:
    """(kept record indices, uint8 pixels (kept, 3, size, size) mapped from the store, the
    store file),
    decoding into the store first unless a valid one exists. One process decodes; others that
    share the folder wait for it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot make the decoded store folder {folder} ({err.strerror}); set "
            "paths.cache_dir to a writable folder"
        ) from None
    store = ImageStore(folder, records, size, what)
    try:
        with _locked(store.lock):
            kept = store.read()
            if kept is None:
                kept = store.write(records, skip_bad, what)
            else:
                log.info("%s: %d decoded images read from %s", what, len(kept), store.file)
    except OSError as err:  # a read-only folder, a full disk
        needed = len(records) * math.prod(store.row_shape()) / 2**20
        raise ConfigError(
            f"cannot write the decoded store {store.file} ({err.strerror or err}): set "
            f"paths.cache_dir to a writable folder with {needed:.0f} MB free"
        ) from None
    return kept, store.open(len(kept)), store.file


def images_in_memory(
    records: Sequence[Record], size: int, skip_bad: bool, what: str
) -> tuple[list[int], torch.Tensor]:
    """The same without a store folder (prediction, tests): decoded into memory."""
    pixels = np.empty((len(records), 3, size, size), np.uint8)
    failed = _decode_rows(pixels, records, range(len(records)), size)
    kept = _check_failures(failed, len(records), skip_bad)
    return kept, torch.from_numpy(pixels if len(kept) == len(records) else pixels[kept])


def decode_into(
    path: Path, records: Sequence[Record], size: int, skip_bad: bool, what: str
) -> tuple[list[int], str]:
    """Decode every record's image into a new file of uint8 rows, in a pool of processes
    over the available cores; with skip_bad, unreadable images are dropped and the rows
    compacted. Returns the kept record indices and the file's content digest (`_content_mac`),
    whose per-chunk hashes the decoding processes take while the rows are in memory."""
    rows = len(records)
    row_bytes = 3 * size * size
    with open(path, "wb") as f:
        f.truncate(rows * row_bytes)
    workers = min(available_cpus()[0], max(1, rows // 64)) if rows >= PARALLEL_FROM else 1
    start = time.perf_counter()
    log.info("%s: decoding %d images at %d px with %d processes", what, rows, size, workers)
    chunks = [range(s, min(s + CHUNK_ROWS, rows)) for s in range(0, rows, CHUNK_ROWS)]
    failed: dict[int, str] = {}
    digests: list[bytes] = []
    global _POOL_RECORDS  # inherited by the forked workers, not pickled
    _POOL_RECORDS = records
    pool = None
    try:
        if workers == 1:
            results = (_decode_chunk(str(path), rows, size, c) for c in chunks)
        else:
            context = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(workers, mp_context=context)
            jobs = [pool.submit(_decode_chunk, str(path), rows, size, c) for c in chunks]
            results = (job.result() for job in jobs)
        for done, (chunk_failed, digest) in enumerate(results, 1):
            failed.update(chunk_failed)
            digests.append(digest)
            if pool is not None and (done % max(1, len(chunks) // 10) == 0 or done == len(chunks)):
                log.info(
                    "%s: decoded %d of %d images (%.0f s)",
                    what,
                    min(done * CHUNK_ROWS, rows),
                    rows,
                    time.perf_counter() - start,
                )
    finally:
        _POOL_RECORDS = None
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    kept = _check_failures(failed, rows, skip_bad)
    if len(kept) < rows:  # move the kept rows down over the dropped ones, then cut the file
        out = np.memmap(path, np.uint8, "r+", shape=(rows, 3, size, size))
        for j, i in enumerate(kept):
            if i != j:
                out[j] = out[i]
        out.flush()
        del out
        os.truncate(path, len(kept) * row_bytes)
        content = _content_mac(path, row_bytes)  # the rows moved: hash the file again
    else:
        content = keyed_digest(digests, secret_key())
    seconds = time.perf_counter() - start
    log.info(
        "%s: decoded %d images in %.1f s (%.0f images/s, %d processes)",
        what,
        rows,
        seconds,
        rows / max(seconds, 1e-9),
        workers,
    )
    return kept, content


_POOL_RECORDS: Sequence[Record] | None = None


def _decode_chunk(path: str, rows: int, size: int, chunk: range) -> tuple[dict[int, str], bytes]:
    """Decode one chunk's rows into the file; (the rows that failed, the chunk's sha256)."""
    out = np.memmap(path, np.uint8, "r+", shape=(rows, 3, size, size))
    failed = _decode_rows(out, _POOL_RECORDS, chunk, size)
    out.flush()
    digest = hashlib.sha256(memoryview(out[chunk.start : chunk.stop]).cast("B")).digest()
    del out
    return failed, digest


def _decode_rows(out, records: Sequence[Record], rows: range, size: int) -> dict[int, str]:
    failed = {}
    for i in rows:
        r = records[i]
        try:
            out[i] = load_pixels(r.image, size, r.origin or r.id).numpy()
        except DataError as err:
            failed[i] = str(err)
    return failed


def _check_failures(failed: dict[int, str], rows: int, skip_bad: bool) -> list[int]:
    if failed and not skip_bad:
        raise DataError(failed[min(failed)])
    for i in sorted(failed):
        log.warning("skipping %s", failed[i])
    return [i for i in range(rows) if i not in failed]


def _is_index_list(indices: object, count: int) -> bool:
    return (
        isinstance(indices, list)
        and all(type(i) is int and 0 <= i < count for i in indices)
        and indices == sorted(set(indices))
    )


def _complement(indices: list[int], count: int) -> list[int]:
    excluded = set(indices)
    return [i for i in range(count) if i not in excluded]


def _stat(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def _sign(meta: dict) -> str:
    return keyed_digest([json.dumps(meta, sort_keys=True).encode()])


def _content_mac(path: Path, row_bytes: int) -> str:
    """The HMAC, under this user's key, of the sha256 of each CHUNK_ROWS rows of a store file:
    the decoding processes hash their own chunks, so no one reads the whole store again."""

    def chunk_digests():
        with open(path, "rb") as f:
            while True:
                digest, left = hashlib.sha256(), CHUNK_ROWS * row_bytes
                while left and (block := f.read(min(HASH_BLOCK, left))):
                    digest.update(block)
                    left -= len(block)
                if left == CHUNK_ROWS * row_bytes:  # nothing was read: the end
                    return
                yield digest.digest()

    return keyed_digest(chunk_digests(), secret_key())


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing), released on leaving the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
