"""The LightningModule every network trains under: loss, metrics, optimiser, history.

Networks (emoclip/models/base.py: `Network`) map a batch dict to logits; this module owns what
they share.
Metrics are torchmetrics, computed over each whole epoch and logged as `{stage}/acc`,
`{stage}/f1_macro`, `{stage}/f1_weighted`, `{stage}/f1_<class>` and `{stage}/loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from emoclip.contract import MODALITY_KEYS
from emoclip.models.base import Network
from emoclip.models.old_parameters import refuse_resuming, upgrade_state_dict
from emoclip.system.training_state import lightning_batches_done, rng_states, set_rng_states

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
        self._train_scores_before_batch: dict | None = None
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
            trained_on = loss + unimodal_weight * auxiliary.mean()
        else:
            logits = self(batch)
            loss = trained_on = self.loss_fn(logits.float(), labels)
        if scope == "train":  # for a checkpoint saved before this batch's step is taken
            self._train_scores_before_batch = metric_states(self.scores["train_"], copy=True)
        # train/loss is the fused prediction's loss, as val/loss is: the auxiliary per-modality
        # losses are trained on but not counted in it, so the two curves compare.
        self.scores[f"{scope}_"].update(logits, labels, loss)
        return trained_on

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
        row = {"epoch": self.current_epoch + 1}  # counted from 1, as the user reads it
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
            lambda: self.trainer.estimated_stepping_batches,
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["emoclip"] = {
            "classes": list(self.classes),
            "history": self.history,
            "history_epochs_from": 1,
            # The random states at an epoch's end; mid-epoch, the training loader's state
            # (emoclip.data.resumable) holds those as the next batch started.
            "rng_states": rng_states(),
            # The training epoch's metrics so far: an epoch resumed mid-way counts every batch.
            "train_scores": self._train_scores_to_resume(),
            **self.extra_checkpoint_state,
        }

    def _train_scores_to_resume(self) -> dict:
        """The training epoch's scores over the batches a resumed run will not train on again:
        without the batch in progress if it is to be trained on again (stopped within it)."""
        now = metric_states(self.scores["train_"])
        before = self._train_scores_before_batch
        if self._trainer is None or before is None:
            return now
        updates = now["loss"]["_update_count"]
        if (
            updates
            == before["loss"]["_update_count"] + 1
            == lightning_batches_done(self.trainer) + 1
        ):
            return before
        return now

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning loads the state dict after this hook: a checkpoint of an earlier layout
        # gets today's parameter names first (its optimizer state cannot be carried over).
        if self._trainer is not None and self.trainer.state.fn == "fit":
            refuse_resuming(checkpoint)
        checkpoint["state_dict"] = upgrade_state_dict(checkpoint["state_dict"])
        state = checkpoint.get("emoclip", {})
        self.history = list(state.get("history", []))
        if "history_epochs_from" not in state:  # a checkpoint that counted epochs from 0
            self.history = [{**row, "epoch": row["epoch"] + 1} for row in self.history]
        if "rng_states" in state:
            set_rng_states(state["rng_states"])
        if "train_scores" in state:
            load_metric_states(self.scores["train_"], state["train_scores"])


def metric_states(scores: nn.Module, copy: bool = False) -> dict:
    """What each torchmetrics metric in `scores` has accumulated (its states, by name)."""
    states = {}
    for name, metric in scores.named_modules():
        if isinstance(metric, Metric) and not isinstance(metric, MetricCollection):
            state = dict(metric.metric_state)
            if copy:
                state = {k: _cloned(v) for k, v in state.items()}
            states[name] = {**state, "_update_count": metric._update_count}
    return states


def _cloned(value):
    if torch.is_tensor(value):
        return value.detach().clone()
    return [v.detach().clone() for v in value] if isinstance(value, list) else value


def load_metric_states(scores: nn.Module, states: dict) -> None:
    metrics = dict(scores.named_modules())
    for name, state in states.items():
        metric = metrics.get(name)
        if not isinstance(metric, Metric):
            continue
        for key, value in state.items():
            if key == "_update_count":
                metric._update_count = int(value)
            elif key in metric._defaults:
                if isinstance(value, list):
                    value = [v.to(metric.device) for v in value]
                setattr(metric, key, value.to(metric.device) if torch.is_tensor(value) else value)
        metric._computed = None
