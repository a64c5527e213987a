"""Checkpoint files: written atomically, read as data only.

A checkpoint is written to a temporary file beside its destination, flushed to disk, then
renamed over it (emoclip.system.atomic), so a crash or a full disk mid-write leaves the previous file
whole. Lightning's own writer goes through a file in the system temp folder and shutil.move,
which copies (not renames) when that folder is on another disk.

A checkpoint is read with torch.load(weights_only=True): tensors and plain containers only.
A file that carries any other pickled object is refused before any of its code can run; a file
that is not a PyTorch file at all is said to be not a checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from emoclip.errors import DataError
from emoclip.system.atomic import open_atomically, write_error

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
    # Compared resolved: Lightning names checkpoints by their real path, so under an outputs/
    # that is a symbolic link the run folder's own path and the file's differ.
    shown = (
        path.resolve().relative_to(relative_to.resolve())
        if relative_to is not None
        else path.resolve()
    )
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
    """torch.save, whole or not at all. torch's zip writer reports a full disk as a
    RuntimeError ("file write failed"), not an OSError: said here as the disk being full."""
    try:
        with open_atomically(path, "wb") as file:
            torch.save(checkpoint, file)
    except RuntimeError as err:
        if "write" not in str(err).lower():
            raise
        raise write_error(Path(path), OSError(errno.ENOSPC, _why_write_failed(Path(path)))) from err


def _why_write_failed(path: Path) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return "the write failed (is the disk full?)"
    if free < 64 << 20:
        return f"No space left on device (disk full: {free >> 20} MB free)"
    return "the write failed (is the disk full or the quota reached?)"


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


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint for a run folder that may be moved, copied or reached
    through a symbolic link (outputs/ -> /scratch/...): the state it saves names its folder,
    and a run continued in another folder takes that state as its own folder's (the same file
    names there), so it keeps its best score and validates and tests its own best.ckpt.
    Lightning's own drops the best score when the folder's path differs, and keeps pointing at
    the old folder's file."""

    def _generate_state_key(self, **kwargs: Any) -> str:
        # Lightning's own key, so checkpoints written with either class continue with the other.
        return f"ModelCheckpoint{kwargs!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        stored = state_dict.get("dirpath")
        if isinstance(stored, str) and self.dirpath and stored != self.dirpath:
            state_dict = _rebased(state_dict, stored, str(self.dirpath))
        super().load_state_dict(state_dict)


def _rebased(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The checkpoint callback's state with the paths under folder `old` moved under `new`."""

    def moved(path: Any) -> Any:
        if not isinstance(path, str) or not path:
            return path
        inside = Path(path)
        try:
            return str(Path(new) / inside.relative_to(old))
        except ValueError:
            return str(Path(new) / inside.name)  # written elsewhere: its name in this folder

    state = dict(state, dirpath=new)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        state[key] = moved(state.get(key))
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
    return state
