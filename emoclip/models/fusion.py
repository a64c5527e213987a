"""Ways to combine the towers' features into class logits (`model/fusion=`); what a fusion
must provide is `Fusion` in emoclip/models/base.py. A one-tower network (the text or image
baselines) fuses one modality: `concat` and `late` are then its classification head; `gated`
and `cross_attention` need two towers.
"""

from __future__ import annotations

import torch
from torch import nn

from emoclip.errors import ConfigError
from emoclip.models.base import FeatureDims, Features, Fusion
from emoclip.models.heads import classifier_head


def _needs_both(dims: FeatureDims, fusion: str) -> None:
    if set(dims.modalities) != {"text", "image"}:
        raise ConfigError(
            f"model/fusion={fusion} combines a text and an image tower, but this model has only "
            f"{list(dims.modalities)}; use model/fusion=concat"
        )


class ConcatFusion(Fusion):
    """The report's: z_T ++ z_I into a feedforward head (one tower: the head on its features)."""

    def __init__(self, dims: FeatureDims, num_classes: int, hidden_size: int, dropout: float):
        super().__init__()
        self.modalities = dims.modalities
        self.head = classifier_head(sum(dims.pooled.values()), hidden_size, num_classes, dropout)

    def forward(self, features: Features) -> torch.Tensor:
        return self.head(torch.cat([features.pooled(m) for m in self.modalities], dim=-1))


class LateFusion(Fusion):
    """One head per modality; the logits of the modalities an example has are averaged."""

    def __init__(self, dims: FeatureDims, num_classes: int, hidden_size: int, dropout: float):
        super().__init__()
        self.modalities = dims.modalities
        self.heads = nn.ModuleDict(
            {
                m: classifier_head(w, hidden_size, num_classes, dropout)
                for m, w in dims.pooled.items()
            }
        )

    def forward(self, features: Features) -> torch.Tensor:
        weights = torch.cat([features.present(m) for m in self.modalities], dim=-1)
        logits = torch.stack([self.heads[m](features.pooled(m)) for m in self.modalities], dim=1)
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
        return (weights.unsqueeze(-1).to(logits.dtype) * logits).sum(1)


class GatedFusion(Fusion):
    """A gated multimodal unit (Arevalo et al., 2017): h = g * tanh(W_T z_T) +
    (1 - g) * tanh(W_I z_I), with the gate g = sigmoid(W_g [z_T, z_I]) learned per example
    and per feature, so each example decides how much each modality counts."""

    def __init__(self, dims: FeatureDims, num_classes: int, hidden_size: int, dropout: float):
        super().__init__()
        _needs_both(dims, "gated")
        self.text_proj = nn.Linear(dims.pooled["text"], hidden_size)
        self.image_proj = nn.Linear(dims.pooled["image"], hidden_size)
        self.gate = nn.Linear(dims.pooled["text"] + dims.pooled["image"], hidden_size)
        self.head = classifier_head(hidden_size, hidden_size, num_classes, dropout)

    def gate_values(self, features: Features) -> torch.Tensor:
        return torch.sigmoid(self.gate(torch.cat([features.text, features.image], dim=-1)))

    def forward(self, features: Features) -> torch.Tensor:
        g = self.gate_values(features)
        h_text = torch.tanh(self.text_proj(features.text))
        h_image = torch.tanh(self.image_proj(features.image))
        return self.head(g * h_text + (1 - g) * h_image)


class CrossAttentionFusion(Fusion):
    """Text tokens attend to image patches and image patches to text tokens (one layer each,
    residual + layer norm), then each side is mean-pooled and the two are concatenated."""

    needs_tokens = True

    def __init__(
        self,
        dims: FeatureDims,
        num_classes: int,
        hidden_size: int,
        dropout: float,
        num_heads: int = 4,
    ):
        super().__init__()
        _needs_both(dims, "cross_attention")
        self.text_in = nn.Linear(dims.tokens["text"], hidden_size)
        self.image_in = nn.Linear(dims.tokens["image"], hidden_size)
        self.text_to_image = nn.MultiheadAttention(
            hidden_size, num_heads, dropout=dropout, batch_first=True
        )
        self.image_to_text = nn.MultiheadAttention(
            hidden_size, num_heads, dropout=dropout, batch_first=True
        )
        self.text_norm = nn.LayerNorm(hidden_size)
        self.image_norm = nn.LayerNorm(hidden_size)
        self.head = classifier_head(2 * hidden_size, hidden_size, num_classes, dropout)

    def forward(self, features: Features) -> torch.Tensor:
        text = self.text_in(features.text_tokens)
        image = self.image_in(features.image_tokens)
        text_mask = features.text_mask
        image_mask = torch.ones(image.shape[:2], dtype=torch.bool, device=image.device)
        # key_padding_mask marks the keys to ignore: the text's padding.
        attended_image, _ = self.text_to_image(text, image, image, need_weights=False)
        attended_text, _ = self.image_to_text(
            image, text, text, key_padding_mask=~text_mask, need_weights=False
        )
        text = self.text_norm(text + attended_image)
        image = self.image_norm(image + attended_text)
        pooled = [_masked_mean(text, text_mask), _masked_mean(image, image_mask)]
        return self.head(torch.cat(pooled, dim=-1))


def _masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
