"""Faults during training, as Lightning callbacks (conf/callbacks/default.yaml).

StopOnDivergence: a training loss that is nan or inf, or far above where training started
(`factor` times the first batch's loss, or times ln(number of classes), a uniform guess's loss,
if that is larger), stops the run as diverged before any checkpoint takes the broken weights;
the message names the epoch, the batch and the last good checkpoint.
SaveOnInterrupt: Ctrl-C writes checkpoints/interrupted.ckpt and metrics.json so far, prints
the command that continues the run, then Lightning exits (status 1) without a traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from emoclip.errors import TrainingError
from emoclip.runs.run_folder import INTERRUPTED, METRICS_FILE, continue_command, write_results

log = logging.getLogger(__name__)


def _last_good_checkpoint(trainer: L.Trainer) -> str | None:
    """The newest checkpoint file any checkpoint callback wrote (last.ckpt, else best.ckpt)."""
    written = [
        Path(path)
        for callback in trainer.checkpoint_callbacks
        for path in (getattr(callback, "last_model_path", ""), callback.best_model_path)
        if path and Path(path).is_file()
    ]
    return str(max(written, key=lambda p: p.stat().st_mtime)) if written else None


class StopOnDivergence(Callback):
    def __init__(self, factor: float = 100.0):
        if not factor > 1:
            raise ValueError(f"callbacks.stop_on_divergence.factor={factor}: expected above 1")
        self.factor = factor
        self.reference: float | None = None  # the loss training started from

    def on_train_start(self, trainer, pl_module) -> None:
        self.reference = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        value = loss.detach().float().cpu()
        if not bool(torch.isfinite(value).all()):
            self._stop(trainer, batch_idx, f"the training loss became {value.item()}")
        value = float(value.mean())
        if self.reference is None:
            uniform_guess = math.log(max(len(pl_module.classes), 2))
            self.reference = max(value, uniform_guess)
        elif value > self.factor * self.reference:
            self._stop(
                trainer,
                batch_idx,
                f"the training loss became {value:.4g}, more than {self.factor:g} times the "
                f"{self.reference:.4g} training started from",
            )

    def _stop(self, trainer, batch_idx: int, what: str) -> None:
        kept = _last_good_checkpoint(trainer)
        where = {
            "epoch": trainer.current_epoch + 1,  # both counted from 1
            "batch": batch_idx + 1,
            "global_step": trainer.global_step,
        }
        raise TrainingError(
            f"{what} at epoch {where['epoch']}, batch {where['batch']} (global step "
            f"{where['global_step']}); training has diverged and was stopped. "
            + (
                f"The last good checkpoint is {kept} (not overwritten). "
                if kept
                else "No checkpoint had been saved yet. "
            )
            + "Try a lower model.optimizer.lr (a new run), trainer.gradient_clip_val=1.0, or "
            "trainer.precision=32-true, and check the inputs for extreme values.",
            where,
        )


class SaveOnInterrupt(Callback):
    def __init__(self, run_dir: str | Path, filename: str = "interrupted.ckpt"):
        self.run_dir = Path(run_dir)
        self.checkpoint_path = self.run_dir / "checkpoints" / filename

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return  # other failures keep the last good checkpoint untouched
        batches_done, batches = _place_in_epoch(trainer)
        # Within an epoch's training batches a checkpoint continues exactly (the training
        # loader's state, emoclip.data.resumable). Elsewhere (at an epoch's first batch, after
        # its last, in its validation) Lightning would not continue as the run went on: the run
        # continues from the end of the last epoch instead (last.ckpt), as exactly.
        exact_here = trainer.training and 0 < batches_done < batches
        if exact_here:
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # optimizer too
        datamodule = trainer.datamodule
        write_results(
            self.run_dir,
            pl_module.classes,
            pl_module.results,
            history=list(pl_module.history),
            split_ids=datamodule.split_ids() if hasattr(datamodule, "split_ids") else None,
            extra={
                "status": INTERRUPTED,
                "epochs_completed": len(pl_module.history),
                "global_step": trainer.global_step,
            },
        )
        where = (
            f"interrupted in epoch {trainer.current_epoch + 1}, after {batches_done} of its "
            f"{batches} training batches (global step {trainer.global_step})"
        )
        if exact_here:
            continued = f"checkpoint {self.checkpoint_path}"
            if trainer.world_size > 1:  # emoclip.data.resumable: not its sampler under DDP
                continued += " (not exact under DDP: the epoch's order is not kept)"
        else:
            last = _last_good_checkpoint(trainer)
            continued = (
                f"the run continues from {last}, the end of the last epoch"
                if last
                else "no epoch had finished: the run starts again"
            )
        log.warning(
            "%s: metrics so far in %s, %s. Continue the run from there with:\n  %s",
            where,
            self.run_dir / METRICS_FILE,
            continued,
            continue_command(self.run_dir),
        )


def _place_in_epoch(trainer: L.Trainer) -> tuple[int, int]:
    """(training batches of this epoch done, the epoch's training batches)."""
    from emoclip.system.training_state import lightning_batches_done

    batches = trainer.num_training_batches
    return lightning_batches_done(trainer), int(batches) if math.isfinite(batches) else -1
