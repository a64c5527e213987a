"""Checkpoint files: written atomically, read as data only.

A checkpoint is written to a temporary file beside its destination, flushed to disk, then
renamed over it (emoclip.atomic), so a crash or a full disk mid-write leaves the previous file
whole. Lightning's own writer goes through a file in the system temp folder and shutil.move,
which copies (not renames) when that folder is on another disk.

A checkpoint is read with torch.load(weights_only=True): tensors and plain containers only.
A file that carries any other pickled object is refused before any of its code can run; a file
that is not a PyTorch file at all is said to be not a checkpoint.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from emoclip.atomic import open_atomically
from emoclip.errors import DataError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # the older pickled format


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """The checkpoint's content, read with weights_only=True. `mmap`: tensors are read from the
    file when used (zip files only), for a look at its other entries."""
    path = Path(path)
    zipped = check_pytorch_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and zipped)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise DataError(f"{path} is not a readable checkpoint (truncated?): {err}") from None
        raise DataError(
            f"refused to load {path}: checkpoints are read with torch.load(weights_only=True), "
            f"which takes tensors and plain data only, and this file holds something else "
            f"({_refusal_detail(err)}). A file carrying other pickled objects could run code "
            "when loaded; emoclip checkpoints never need that. Load only files you made or trust."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(f"{path} is not a readable checkpoint (truncated?): {err}") from None


def check_pytorch_file(path: Path) -> bool:
    """Refuse a file that is not a PyTorch file at all (random bytes, text, an image); whether
    it is in the zip format."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(LEGACY_MAGIC))
    except FileNotFoundError:
        raise DataError(f"checkpoint {path} does not exist") from None
    except OSError as err:
        raise DataError(f"cannot read the checkpoint {path}: {err.strerror or err}") from None
    if not (head.startswith(ZIP_MAGIC) or head == LEGACY_MAGIC):
        raise DataError(
            f"{path} is not a checkpoint: a PyTorch checkpoint is a zip archive written by "
            f"torch.save, and this file starts with the bytes {head[:8]!r}"
        )
    return head.startswith(ZIP_MAGIC)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(path: str | Path, relative_to: Path | None = None) -> dict:
    """Which checkpoint file a result describes: its path (relative to its run folder when
    given), epoch (counted from 1: the epoch it was saved in), global step and sha256."""
    path = Path(path)
    loaded = load_checkpoint_file(path, mmap=True)
    shown = path.relative_to(relative_to) if relative_to is not None else path.resolve()
    return {
        "file": shown.as_posix(),
        "epoch": loaded["epoch"] + 1 if isinstance(loaded.get("epoch"), int) else None,
        "global_step": loaded.get("global_step"),
        "sha256": file_sha256(path),
    }


def _refusal_detail(err: Exception) -> str:
    # torch's message ends with "WeightsUnpickler error: <what it met> ... Check the docs".
    match = re.search(r"WeightsUnpickler error:(.*?)(Check the documentation|$)", str(err), re.S)
    detail = " ".join(match.group(1).split()) if match else ""
    return detail.split(". Please use")[0] or "not a PyTorch checkpoint"


def save_atomically(checkpoint: dict, path: str | Path) -> None:
    with open_atomically(path, "wb") as file:
        torch.save(checkpoint, file)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic writes and weights-only reads (trainer.plugins)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_atomically(checkpoint, path)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        # weights_only=False from a caller is ignored on purpose: no code runs from a file.
        return load_checkpoint_file(path, map_location)
