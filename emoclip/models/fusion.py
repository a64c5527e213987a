"""Ways to combine CLIP's text and image features into class logits (`model/fusion=`).

Every fusion is an nn.Module built as `Fusion(dims, num_classes, hidden_size, dropout)` and
called on a `ClipFeatures`. A modality an example lacks (a one-modality study, an ablation,
modality dropout) arrives as zeros with its `*_present` flag at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from emoclip.models.heads import classifier_head


@dataclass(frozen=True)
class FeatureDims:
    embed: int  # CLIP's projection_dim: the size of z_T and z_I
    text_tokens: int  # the text encoder's hidden size
    image_tokens: int  # the vision encoder's hidden size


@dataclass
class ClipFeatures:
    text: torch.Tensor  # (n, embed) z_T
    image: torch.Tensor  # (n, embed) z_I
    text_present: torch.Tensor  # (n, 1) float, 1 where the example has its text
    image_present: torch.Tensor  # (n, 1)
    # Per-token encoder outputs, only computed for fusions that ask (`needs_tokens`).
    text_tokens: torch.Tensor | None = None  # (n, length, text_tokens)
    text_mask: torch.Tensor | None = None  # (n, length) bool, True for real tokens
    image_tokens: torch.Tensor | None = None  # (n, 1 + patches, image_tokens)

    def without(self, text: torch.Tensor, image: torch.Tensor) -> ClipFeatures:
        """These features with the text removed where `text` (n, 1 bool) is set, and the image
        where `image` is set."""

        def drop(value, mask):
            if value is None:
                return None
            return value.masked_fill(mask.view(-1, *[1] * (value.dim() - 1)), 0.0)

        return replace(
            self,
            text=drop(self.text, text),
            image=drop(self.image, image),
            text_present=drop(self.text_present, text),
            image_present=drop(self.image_present, image),
            text_tokens=drop(self.text_tokens, text),
            image_tokens=drop(self.image_tokens, image),
        )


class ConcatFusion(nn.Module):
    """The report's: z_T ++ z_I into a feedforward head."""

    needs_tokens = False

    def __init__(self, dims: FeatureDims, num_classes: int, hidden_size: int, dropout: float):
        super().__init__()
        self.head = classifier_head(2 * dims.embed, hidden_size, num_classes, dropout)

    def forward(self, features: ClipFeatures) -> torch.Tensor:
        return self.head(torch.cat([features.text, features.image], dim=-1))


class LateFusion(nn.Module):
    """One head per modality; the logits of the modalities an example has are averaged."""

    needs_tokens = False

    def __init__(self, dims: FeatureDims, num_classes: int, hidden_size: int, dropout: float):
        super().__init__()
        self.text_head = classifier_head(dims.embed, hidden_size, num_classes, dropout)
        self.image_head = classifier_head(dims.embed, hidden_size, num_classes, dropout)

    def forward(self, features: ClipFeatures) -> torch.Tensor:
        weights = torch.cat([features.text_present, features.image_present], dim=-1)
        logits = torch.stack(
            [self.text_head(features.text), self.image_head(features.image)], dim=1
        )
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
        return (weights.unsqueeze(-1).to(logits.dtype) * logits).sum(1)


class GatedFusion(nn.Module):
    """A gated multimodal unit (Arevalo et al., 2017): h = g * tanh(W_T z_T) +
    (1 - g) * tanh(W_I z_I), with the gate g = sigmoid(W_g [z_T, z_I]) learned per example
    and per feature, so each example decides how much each modality counts."""

    needs_tokens = False

    def __init__(self, dims: FeatureDims, num_classes: int, hidden_size: int, dropout: float):
        super().__init__()
        self.text_proj = nn.Linear(dims.embed, hidden_size)
        self.image_proj = nn.Linear(dims.embed, hidden_size)
        self.gate = nn.Linear(2 * dims.embed, hidden_size)
        self.head = classifier_head(hidden_size, hidden_size, num_classes, dropout)

    def gate_values(self, features: ClipFeatures) -> torch.Tensor:
        return torch.sigmoid(self.gate(torch.cat([features.text, features.image], dim=-1)))

    def forward(self, features: ClipFeatures) -> torch.Tensor:
        g = self.gate_values(features)
        h_text = torch.tanh(self.text_proj(features.text))
        h_image = torch.tanh(self.image_proj(features.image))
        return self.head(g * h_text + (1 - g) * h_image)


class CrossAttentionFusion(nn.Module):
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
        self.text_in = nn.Linear(dims.text_tokens, hidden_size)
        self.image_in = nn.Linear(dims.image_tokens, hidden_size)
        self.text_to_image = nn.MultiheadAttention(
            hidden_size, num_heads, dropout=dropout, batch_first=True
        )
        self.image_to_text = nn.MultiheadAttention(
            hidden_size, num_heads, dropout=dropout, batch_first=True
        )
        self.text_norm = nn.LayerNorm(hidden_size)
        self.image_norm = nn.LayerNorm(hidden_size)
        self.head = classifier_head(2 * hidden_size, hidden_size, num_classes, dropout)

    def forward(self, features: ClipFeatures) -> torch.Tensor:
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
