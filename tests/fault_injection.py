"""Test-only callbacks that make faults happen on cue: slow batches to kill a run mid-epoch,
and weights poisoned with nan or inf. Added to a run as `+callbacks.<name>._target_=...`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class SlowBatches(Callback):
    """Sleeps before each training batch and writes where training is to `progress_file`."""

    def __init__(self, seconds: float, progress_file: str):
        self.seconds, self.progress_file = seconds, Path(progress_file)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        where = {"epoch": trainer.current_epoch, "batch": batch_idx}
        self.progress_file.write_text(json.dumps(where))
        time.sleep(self.seconds)


class PoisonWeights(Callback):
    """From `epoch` on, sets every trainable weight to `value` before each training batch."""

    def __init__(self, epoch: int, value: float):
        self.epoch, self.value = epoch, value

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch >= self.epoch:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(self.value)
