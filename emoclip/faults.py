"""Faults during training, as Lightning callbacks (conf/callbacks/default.yaml).

StopOnNonFiniteLoss: a loss of nan or inf stops the run before any checkpoint takes the
broken weights; the last good one is named in the message.
SaveOnInterrupt: Ctrl-C writes checkpoints/interrupted.ckpt and metrics.json so far, then
Lightning exits (status 1) without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from emoclip.errors import TrainingError
from emoclip.run_folder import write_results

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


class StopOnNonFiniteLoss(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss).all()):
            return
        kept = _last_good_checkpoint(trainer)
        raise TrainingError(
            f"the training loss became {loss.detach().float().cpu().item()} at epoch "
            f"{trainer.current_epoch}, batch {batch_idx} (global step {trainer.global_step}); "
            "training has diverged and was stopped. "
            + (
                f"The last good checkpoint is {kept} (not overwritten). "
                if kept
                else "No checkpoint had been saved yet. "
            )
            + "Try a lower model.optimizer.lr, trainer.gradient_clip_val=1.0, or "
            "trainer.precision=32-true, and check the inputs for extreme values."
        )


class SaveOnInterrupt(Callback):
    def __init__(self, run_dir: str | Path, filename: str = "interrupted.ckpt"):
        self.run_dir = Path(run_dir)
        self.checkpoint_path = self.run_dir / "checkpoints" / filename

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return  # other failures keep the last good checkpoint untouched
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # optimizer too
        datamodule = trainer.datamodule
        write_results(
            self.run_dir,
            pl_module.classes,
            pl_module.results,
            history=list(pl_module.history),
            split_ids=datamodule.split_ids() if hasattr(datamodule, "split_ids") else None,
            extra={
                "status": "interrupted",
                "epochs_completed": len(pl_module.history),
                "global_step": trainer.global_step,
            },
        )
        log.warning(
            "interrupted at epoch %d (global step %d): metrics so far in %s, checkpoint %s; "
            "resume with ckpt_path=%s",
            trainer.current_epoch,
            trainer.global_step,
            self.run_dir / "metrics.json",
            self.checkpoint_path,
            self.checkpoint_path,
        )
