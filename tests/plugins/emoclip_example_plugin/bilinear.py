"""`model/fusion=bilinear`: low-rank bilinear pooling, h = tanh(U z_T) * tanh(V z_I) (each
feature of one modality scaled by one of the other), then the classifier."""

from __future__ import annotations

import torch
from torch import nn

from emoclip.errors import ConfigError
from emoclip.models.base import FeatureDims, Features, Fusion


class BilinearFusion(Fusion):
    def __init__(self, dims: FeatureDims, num_classes: int, hidden_size: int, dropout: float):
        super().__init__()
        if set(dims.modalities) != {"text", "image"}:
            raise ConfigError(
                "model/fusion=bilinear combines a text and an image tower, but this model has "
                f"only {list(dims.modalities)}; use model/fusion=concat"
            )
        self.text = nn.Linear(dims.pooled["text"], hidden_size)
        self.image = nn.Linear(dims.pooled["image"], hidden_size)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_classes))

    def forward(self, features: Features) -> torch.Tensor:
        joint = torch.tanh(self.text(features.text)) * torch.tanh(self.image(features.image))
        return self.classifier(joint)
