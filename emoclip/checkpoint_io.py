"""Checkpoint files: written atomically, read as data only.

A checkpoint is written to a temporary file beside its destination, flushed to disk, then
renamed over it (os.replace is atomic within one filesystem), so a crash mid-write leaves the
previous file whole. Lightning's own writer goes through a file in the system temp folder and
shutil.move, which copies (not renames) when that folder is on another disk.

A checkpoint is read with torch.load(weights_only=True): tensors and plain containers only.
A file that carries any other pickled object is refused before any of its code can run.
"""

from __future__ import annotations

import os
import pickle
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from emoclip.errors import DataError


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict:
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
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


def _refusal_detail(err: Exception) -> str:
    # torch's message ends with "WeightsUnpickler error: <what it met> ... Check the docs".
    match = re.search(r"WeightsUnpickler error:(.*?)(Check the documentation|$)", str(err), re.S)
    detail = " ".join(match.group(1).split()) if match else ""
    return detail.split(". Please use")[0] or "not a PyTorch checkpoint"


def save_atomically(checkpoint: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(partial, "xb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


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
