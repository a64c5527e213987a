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


class InterruptAtStep(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C does) once, in the given hook of the training batch
    at `step` (global step, counted from 0): `on_before_backward` (after the forward pass drew
    its dropout masks, before the optimizer step), `on_train_batch_end` (after the step), or
    `on_validation_batch_end` (the second batch of a validation that follows the step)."""

    def __init__(self, step: int, hook: str = "on_before_backward"):
        self.step, self.hook = step, hook

    def _maybe_interrupt(self, trainer, hook: str, steps_taken: int = 0) -> None:
        # global_step counts the optimizer steps taken: after the step's, one more
        if hook == self.hook and trainer.global_step == self.step + steps_taken:
            raise KeyboardInterrupt

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._maybe_interrupt(trainer, "on_before_backward")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_interrupt(trainer, "on_train_batch_end", steps_taken=1)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        # within the validation after the step: its second batch
        if batch_idx == 1 and not trainer.sanity_checking:  # data.eval_batch_size below the split
            self._maybe_interrupt(trainer, "on_validation_batch_end", steps_taken=1)
