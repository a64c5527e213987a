"""The LightningModule every network trains under: loss, metrics, optimiser, history.

Networks (emoclip/models/base.py: `Network`) map a batch dict to logits; this module owns what
they share.
Metrics are torchmetrics, computed over each whole epoch and logged as `{stage}/acc`,
`{stage}/f1_macro`, `{stage}/f1_weighted`, `{stage}/f1_<class>` and `{stage}/loss`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from emoclip.data.datamodule import MODALITY_KEYS
from emoclip.models.base import Network
from emoclip.models.legacy import refuse_resuming, upgrade_state_dict

STAGES = ("train", "val", "test")


# At test time a two-modality study is also scored with one modality removed (the network
# sees zeros for it): "text_only" drops the image, "image_only" drops the text.
ABLATIONS = {"text_only": "image", "image_only": "text"}


class Scores(nn.Module):
    """Epoch-level metrics of one scope (a stage, or a test ablation), with its mean loss."""

    def __init__(self, classes: tuple[str, ...]):
        super().__init__()
        self.classes = classes
        n = len(classes)
        self.metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(n, average="micro"),
                "f1_macro": MulticlassF1Score(n, average="macro"),
                "f1_weighted": MulticlassF1Score(n, average="weighted"),
                "f1_per_class": MulticlassF1Score(n, average=None),
                "confusion": MulticlassConfusionMatrix(n),
            },
            compute_groups=False,
        )
        self.loss = MeanMetric()

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        self.metrics.update(logits.detach(), labels)
        self.loss.update(loss.detach(), weight=labels.shape[0])

    def compute_and_reset(self, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
        """Scalars named `{prefix}/metric`, and the confusion matrix as nested lists."""
        computed, loss = self.metrics.compute(), self.loss.compute()
        self.reset()
        scalars = {
            f"{prefix}/loss": loss,
            f"{prefix}/acc": computed["acc"],
            f"{prefix}/f1_macro": computed["f1_macro"],
            f"{prefix}/f1_weighted": computed["f1_weighted"],
        }
        per_class = zip(self.classes, computed["f1_per_class"], strict=True)
        scalars.update({f"{prefix}/f1_{c}": v for c, v in per_class})
        return scalars, computed["confusion"].tolist()

    def reset(self) -> None:
        self.metrics.reset()
        self.loss.reset()


class EmotionClassifier(L.LightningModule):
    def __init__(
        self,
        network: Network,
        classes: tuple[str, ...],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        backbone_lr: float | None = None,
        label_smoothing: float = 0.0,
        class_weights: list[float] | None = None,
        hparams: dict | None = None,
        extra_checkpoint_state: dict | None = None,
    ):
        super().__init__()
        # The whole study config, for loggers and for rebuilding the study from a checkpoint.
        self.save_hyperparameters(hparams or {})
        self.network = network
        self.classes = tuple(classes)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.backbone_lr = backbone_lr
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        if class_weights is not None:  # not saved: a study rebuilds them from its training split
            weight = torch.tensor(class_weights, dtype=torch.float)
            self.loss_fn.register_buffer("weight", weight, persistent=False)
        scopes = [*STAGES, *(f"test_{name}" for name in ABLATIONS)]
        # ModuleDict keys can't be "train" (nn.Module.train exists), hence the suffix.
        self.scores = nn.ModuleDict({f"{s}_": Scores(self.classes) for s in scopes})
        self.extra_checkpoint_state = extra_checkpoint_state or {}
        self.history: list[dict] = []  # one row per finished training epoch, for the curves
        self.results: dict[str, dict] = {}  # the last computed epoch of each stage

    def forward(self, batch: dict) -> torch.Tensor:
        return self.network(batch)

    def _step(self, batch: dict, scope: str) -> torch.Tensor:
        labels = batch["labels"]
        unimodal_weight = self.network.unimodal_loss_weight
        if scope == "train" and unimodal_weight > 0:
            logits, unimodal = self.network(batch, with_unimodal=True)
            loss = self.loss_fn(logits.float(), labels)
            auxiliary = torch.stack([self.loss_fn(u.float(), labels) for u in unimodal.values()])
            loss = loss + unimodal_weight * auxiliary.mean()
        else:
            logits = self(batch)
            loss = self.loss_fn(logits.float(), labels)
        self.scores[f"{scope}_"].update(logits, labels, loss)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")
        present = [m for m, keys in MODALITY_KEYS.items() if any(k in batch for k in keys)]
        if len(present) == 2:
            for name, dropped in ABLATIONS.items():
                kept = {k: v for k, v in batch.items() if k not in MODALITY_KEYS[dropped]}
                self._step(kept, f"test_{name}")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self(batch).softmax(-1)

    def _end_epoch(self, scope: str) -> None:
        scalars, confusion = self.scores[f"{scope}_"].compute_and_reset(scope)
        # Under DDP torchmetrics has already gathered every rank's examples, so the values agree
        # across ranks; sync_dist averages equal numbers, and tells Lightning they are global.
        self.log_dict(scalars, sync_dist=True)
        self.results[scope] = {k: float(v) for k, v in scalars.items()}
        self.results[scope][f"{scope}/confusion_matrix"] = confusion

    def on_train_epoch_end(self) -> None:
        self._end_epoch("train")
        # Lightning runs validation before this hook, so this epoch's val results are ready.
        row = {"epoch": self.current_epoch}
        for stage in ("train", "val"):
            row.update(
                {k: v for k, v in self.results.get(stage, {}).items() if not isinstance(v, list)}
            )
        self.history.append(row)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.scores["val_"].reset()
            return
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")
        for name in ABLATIONS:
            if self.scores[f"test_{name}_"].loss.update_called:
                self._end_epoch(f"test_{name}")

    def configure_optimizers(self):
        # The head trains with model.optimizer; each tower with its own recipe (its `optim`).
        from emoclip.models.recipes import configure

        return configure(
            list(self.parameters()),
            self.network,
            self.optimizer_factory,
            self.scheduler_factory,
            self.backbone_lr,
            self.trainer.estimated_stepping_batches,
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["emoclip"] = {
            "classes": list(self.classes),
            "history": self.history,
            "rng_states": rng_states(),
            **self.extra_checkpoint_state,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning loads the state dict after this hook: a checkpoint of an earlier layout
        # gets today's parameter names first (its optimizer state cannot be carried over).
        if self._trainer is not None and self.trainer.state.fn == "fit":
            refuse_resuming(checkpoint)
        checkpoint["state_dict"] = upgrade_state_dict(checkpoint["state_dict"])
        state = checkpoint.get("emoclip", {})
        self.history = list(state.get("history", []))
        if "rng_states" in state:
            set_rng_states(state["rng_states"])


# A resumed run draws the same shuffles, dropout masks and augmentations as one that ran
# through: the random generators continue from where the checkpoint left them. Plain types only,
# so checkpoints stay loadable with torch.load(weights_only=True).
def rng_states() -> dict:
    numpy_state = np.random.get_state(legacy=False)  # noqa: NPY002 (the global one, seeded)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    numpy_state = {**states["numpy"], "state": dict(states["numpy"]["state"])}
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
