"""A linear probe of CLIP: multinomial logistic regression on frozen CLIP features, as in
CLIP's paper. The features are z_T and z_I, each L2-normalised, concatenated (zeros for a
modality an example lacks); they are computed once per split. The regularisation strength C
is chosen from a grid by macro-F1 on the validation split; the classifier is scikit-learn's
(L-BFGS) and its weights then live in a torch Linear layer, so the fitted probe is an ordinary
network: checkpointed, evaluated, explained and used for prediction like any other.

On pretrained weights this measures what CLIP's features hold; on the tiny random CLIP it is
still a real (weak) model: a linear classifier of random features.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from emoclip.contract import TokenizerSpec
from emoclip.errors import ConfigError
from emoclip.models.base import Network
from emoclip.models.clip_backbone import backbone_tokenizer, clip_features, load_clip
from emoclip.models.task import TaskSpec

log = logging.getLogger(__name__)
Arrays = tuple[np.ndarray, np.ndarray]  # features (n, d), labels (n,)


class ClipLinearProbe(Network):
    modalities = ("text", "image")
    fitted_in_one_pass = True  # `fit` below, by emoclip-train; no gradient steps

    @classmethod
    def tokenizer_spec(cls, network: Mapping) -> TokenizerSpec:
        return backbone_tokenizer(network["backbone"])

    def __init__(
        self,
        task: TaskSpec,
        backbone: Mapping,
        c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
        max_iter: int = 1000,
    ):
        super().__init__()
        if not c_grid or any(c <= 0 for c in c_grid):
            raise ConfigError(f"model.network.c_grid={list(c_grid)}: expected positive values")
        self.clip = load_clip(
            backbone.get("name_or_path"), backbone.get("config"), backbone["image_size"], task
        ).eval()
        self.clip.requires_grad_(False)
        self.classifier = nn.Linear(2 * self.clip.config.projection_dim, task.num_classes)
        self.c_grid = [float(c) for c in c_grid]
        self.max_iter = max_iter

    def train(self, mode: bool = True) -> ClipLinearProbe:
        super().train(mode)
        self.clip.eval()  # frozen features: no dropout, ever
        return self

    def token_embedding(self) -> nn.Embedding:
        return self.clip.text_model.embeddings.token_embedding

    def features(self, batch: dict) -> torch.Tensor:
        encoded = clip_features(self.clip, batch)
        return torch.cat(
            [F.normalize(encoded.text, dim=-1), F.normalize(encoded.image, dim=-1)], dim=-1
        )

    def forward(self, batch: dict, with_unimodal: bool = False) -> torch.Tensor:
        return self.classifier(self.features(batch))

    def fit(self, datamodule, device: torch.device) -> dict:
        """Features of the train and val splits, once; then the probe (see `select`)."""
        datamodule.setup("fit")
        train = self.extract(datamodule.train_dataloader(), datamodule, device)
        val = self.extract(datamodule.val_dataloader(), datamodule, device)
        return self.select(train, val)

    @torch.no_grad()
    def extract(self, loader: DataLoader, datamodule, device: torch.device) -> Arrays:
        """Features and labels of every example of `loader`, each batch finished on the device
        as in training (the data module's normalisation; no augmentation: no trainer runs)."""
        self.to(device).eval()
        features, labels = [], []
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            batch = datamodule.on_after_batch_transfer(batch, 0)
            features.append(self.features(batch).float().cpu())
            labels.append(batch["labels"].cpu())
        return torch.cat(features).numpy(), torch.cat(labels).numpy()

    def select(self, train: Arrays, val: Arrays) -> dict:
        """Fit one logistic regression per C on `train` (features, labels), keep the one with
        the best macro-F1 on `val`; return the chosen C and each C's validation score."""
        scores, fitted = {}, {}
        for c in self.c_grid:
            fitted[c] = LogisticRegression(C=c, max_iter=self.max_iter).fit(*train)
            scores[c] = float(f1_score(val[1], fitted[c].predict(val[0]), average="macro"))
            log.info("linear probe: C=%g  val f1_macro %.4f", c, scores[c])
        best = max(self.c_grid, key=lambda c: (scores[c], -c))  # a tie: the stronger penalty
        self._set_weights(fitted[best])
        return {"probe/C": best, "probe/val_f1_macro_by_C": {str(c): s for c, s in scores.items()}}

    @torch.no_grad()
    def _set_weights(self, classifier: LogisticRegression) -> None:
        if len(classifier.classes_) != self.classifier.out_features:
            raise ConfigError(
                f"the linear probe saw {len(classifier.classes_)} classes in training, "
                f"expected {self.classifier.out_features}"
            )
        weight = torch.as_tensor(classifier.coef_, dtype=torch.float32)
        bias = torch.as_tensor(classifier.intercept_, dtype=torch.float32)
        if weight.shape[0] == 1:
            # Two classes: scikit-learn keeps one row, the logit of class 1 against class 0.
            weight = torch.cat([torch.zeros_like(weight), weight])
            bias = torch.cat([torch.zeros_like(bias), bias])
        self.classifier.weight.copy_(weight)
        self.classifier.bias.copy_(bias)
