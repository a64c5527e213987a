"""Early stopping that means something: it waits for the model to predict more than one class,
and a validation split too small to stop on is named before training.

Why not a `trainer.min_epochs` default: how long a model stays at one-class output depends on
the data, the model and the learning rate, so any fixed number of epochs is too many for a
quick study and too few for a slow one. What goes wrong on small data (JAFFE: 20 validation
images) is specific: the first epochs predict one class, their macro-F1 does not move, and
`patience` runs out before the model has learnt anything. So an epoch whose validation
predictions are all one class does not count toward the patience; a model that never leaves
one-class output trains to `trainer.max_epochs`, which is the honest outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Below this many validation examples per class (on average), one example moves the monitored
# metric by more than a real improvement of a small model usually does.
MIN_VAL_PER_CLASS = 10


def predicts_one_class(confusion: Sequence[Sequence[int]] | None) -> bool:
    """Whether a confusion matrix (rows: true class, columns: predicted) has one predicted
    class only."""
    if not confusion:
        return False
    predicted = [sum(row[j] for row in confusion) for j in range(len(confusion[0]))]
    return sum(1 for count in predicted if count > 0) <= 1


class EarlyStopping(LightningEarlyStopping):
    """Lightning's EarlyStopping, except that epochs whose validation predictions are all one
    class are skipped: they neither improve the best score nor use up the patience. It reads
    the epoch's validation confusion matrix from the LightningModule's `results` and, when it
    stops the run, marks the epoch's row of its `history` with `stopped_early` (for the curves
    and the reports); emoclip's EmotionClassifier keeps both. Without them it behaves as
    Lightning's."""

    def _run_early_stopping_check(self, trainer) -> None:
        module = trainer.lightning_module
        results = getattr(module, "results", {}) or {}
        confusion = results.get("val", {}).get("val/confusion_matrix")
        if predicts_one_class(confusion):
            log.info(
                "epoch %d: the model predicts one class on the validation split; early "
                "stopping does not count this epoch",
                trainer.current_epoch + 1,
            )
            return
        super()._run_early_stopping_check(trainer)
        history = getattr(module, "history", None)
        stopped_now = trainer.should_stop and self.stopped_epoch == trainer.current_epoch
        if stopped_now and history and history[-1].get("epoch") == trainer.current_epoch + 1:
            history[-1]["stopped_early"] = True


def small_validation_warning(cfg: DictConfig, val_size: int, num_classes: int) -> str | None:
    """The warning to give when early stopping watches a validation split too small for its
    decisions to mean anything, naming the size and the options; None when it is fine."""
    stopping = OmegaConf.select(cfg, "callbacks.early_stopping")
    if not stopping or OmegaConf.select(cfg, "trainer.fast_dev_run"):
        return None
    if val_size >= MIN_VAL_PER_CLASS * num_classes:
        return None
    monitor = stopping.get("monitor", cfg.get("monitor"))
    fraction_key = _find_key(cfg.get("data"), "val_fraction", "data")
    larger_split = (
        f"a larger validation split ({fraction_key}=...)"
        if fraction_key
        else "more validation data"
    )
    options = [
        larger_split,
        f"a longer callbacks.early_stopping.patience (now {stopping.get('patience')}) or "
        "trainer.min_epochs=...",
        "no early stopping (callbacks.early_stopping=null) with a fixed trainer.max_epochs",
        "since one small split is noisy, results over more folds (data.num_folds=...) or seeds",
    ]
    # Short lines: the finding, then one option a line.
    return (
        f"the validation split has {val_size} examples for {num_classes} classes (about "
        f"{val_size / num_classes:.1f} per class; one example moves val/acc by "
        f"{1 / max(val_size, 1):.3f}):\n  too few for early stopping on {monitor} to mean much; "
        "it can stop a model that\n  still predicts one class. Options:"
        + "".join(f"\n  - {option}" for option in options)
    )


def _find_key(node, name: str, path: str) -> str | None:
    """The dotted path of the first key `name` in a config node, depth first."""
    if not isinstance(node, DictConfig):
        return None
    if name in node:
        return f"{path}.{name}"
    for key, child in node.items_ex(resolve=False):
        found = _find_key(child, name, f"{path}.{key}")
        if found:
            return found
    return None
