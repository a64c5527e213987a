"""The LightningModule every network trains under: loss, metrics, optimiser, history.

Networks are plain nn.Modules mapping a batch dict to logits; this module owns what they share.
Metrics are torchmetrics, computed over each whole epoch and logged as `{stage}/acc`,
`{stage}/f1_macro`, `{stage}/f1_weighted`, `{stage}/f1_<class>` and `{stage}/loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

STAGES = ("train", "val", "test")


def stage_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "f1_weighted": MulticlassF1Score(num_classes, average="weighted"),
            "f1_per_class": MulticlassF1Score(num_classes, average=None),
            "confusion": MulticlassConfusionMatrix(num_classes),
        },
        compute_groups=False,
    )


class EmotionClassifier(L.LightningModule):
    def __init__(
        self,
        network: nn.Module,
        classes: tuple[str, ...],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        backbone_lr: float | None = None,
        label_smoothing: float = 0.0,
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
        # ModuleDict keys can't be "train" (nn.Module.train exists), hence the suffix.
        self.stage_metrics = nn.ModuleDict({f"{s}_": stage_metrics(len(classes)) for s in STAGES})
        self.stage_losses = nn.ModuleDict({f"{s}_": MeanMetric() for s in STAGES})
        self.extra_checkpoint_state = extra_checkpoint_state or {}
        self.history: list[dict] = []  # one row per finished training epoch, for the curves
        self.results: dict[str, dict] = {}  # the last computed epoch of each stage

    def forward(self, batch: dict) -> torch.Tensor:
        return self.network(batch)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch)
        loss = self.loss_fn(logits.float(), batch["labels"])
        self.stage_metrics[f"{stage}_"].update(logits.detach(), batch["labels"])
        self.stage_losses[f"{stage}_"].update(loss.detach(), weight=batch["labels"].shape[0])
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self(batch).softmax(-1)

    def _end_epoch(self, stage: str) -> None:
        computed = self.stage_metrics[f"{stage}_"].compute()
        loss = self.stage_losses[f"{stage}_"].compute()
        self.stage_metrics[f"{stage}_"].reset()
        self.stage_losses[f"{stage}_"].reset()
        scalars = {
            f"{stage}/loss": loss,
            f"{stage}/acc": computed["acc"],
            f"{stage}/f1_macro": computed["f1_macro"],
            f"{stage}/f1_weighted": computed["f1_weighted"],
        }
        per_class = {
            f"{stage}/f1_{c}": v
            for c, v in zip(self.classes, computed["f1_per_class"], strict=True)
        }
        self.log_dict({**scalars, **per_class}, prog_bar=False, sync_dist=False)
        self.results[stage] = {
            **{k: float(v) for k, v in {**scalars, **per_class}.items()},
            f"{stage}/confusion_matrix": computed["confusion"].tolist(),
        }

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
            self.stage_metrics["val_"].reset()
            self.stage_losses["val_"].reset()
            return
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]
        backbone = getattr(self.network, "backbone_parameters", None)
        if self.backbone_lr is not None and backbone is not None:
            backbone_ids = {id(p) for p in backbone()}
            groups = [
                {"params": [p for p in trainable if id(p) in backbone_ids], "lr": self.backbone_lr},
                {"params": [p for p in trainable if id(p) not in backbone_ids]},
            ]
            optimizer = self.optimizer_factory(groups)
        else:
            optimizer = self.optimizer_factory(trainable)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["emoclip"] = {
            "classes": list(self.classes),
            "history": self.history,
            **self.extra_checkpoint_state,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("emoclip", {}).get("history", []))
