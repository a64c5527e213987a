"""The report's model: CLIP text features z_T and image features z_I, concatenated, then a small
feedforward head. A modality the batch lacks (a text-only study, an ablation) enters as zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from emoclip.errors import ConfigError
from emoclip.models.clip_backbone import load_clip
from emoclip.models.heads import classifier_head
from emoclip.models.task import TaskSpec

FREEZE_OPTIONS = ("none", "all", "text", "image")


class ClipFusion(nn.Module):
    modalities = ("text", "image")

    def __init__(
        self,
        task: TaskSpec,
        backbone: Mapping,
        hidden_size: int = 512,
        dropout: float = 0.1,
        freeze: str = "none",
        gradient_checkpointing: bool = False,
        modality_dropout: float = 0.0,
    ):
        super().__init__()
        if freeze not in FREEZE_OPTIONS:
            raise ConfigError(f"model.network.freeze={freeze!r}; expected one of {FREEZE_OPTIONS}")
        self.clip = load_clip(
            backbone.get("name_or_path"), backbone.get("config"), backbone["image_size"], task
        )
        if gradient_checkpointing:
            self.clip.gradient_checkpointing_enable()
        if freeze in ("all", "text"):
            self._freeze(self.clip.text_model, self.clip.text_projection)
        if freeze in ("all", "image"):
            self._freeze(self.clip.vision_model, self.clip.visual_projection)
        if not 0 <= modality_dropout <= 0.5:
            raise ConfigError(f"model.network.modality_dropout={modality_dropout}; expected 0..0.5")
        self.modality_dropout = modality_dropout
        self.embed_dim = self.clip.config.projection_dim
        self.head = classifier_head(2 * self.embed_dim, hidden_size, task.num_classes, dropout)

    @staticmethod
    def _freeze(*modules: nn.Module) -> None:
        for module in modules:
            module.requires_grad_(False)

    def backbone_parameters(self):
        return [p for p in self.clip.parameters() if p.requires_grad]

    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_T, z_I): CLIP's projected text and image features, zeros for a missing modality."""
        n = batch["labels"].shape[0]
        device = batch["labels"].device
        z_text = z_image = None
        if "input_ids" in batch:
            z_text = self.clip.get_text_features(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).pooler_output
        if "pixel_values" in batch:
            z_image = self.clip.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
        dtype = (z_text if z_text is not None else z_image).dtype
        zeros = torch.zeros(n, self.embed_dim, device=device, dtype=dtype)
        return (z_text if z_text is not None else zeros, z_image if z_image is not None else zeros)

    def forward(self, batch: dict) -> torch.Tensor:
        z_text, z_image = self.encode(batch)
        if self.training and self.modality_dropout > 0:
            z_text, z_image = self._drop_modalities(z_text, z_image)
        return self.head(torch.cat([z_text, z_image], dim=-1))

    def _drop_modalities(self, z_text: torch.Tensor, z_image: torch.Tensor):
        """Zero the text of a fraction p of the examples and the image of another p, as a
        missing modality is zero: otherwise the head can lean on whichever modality is easier
        to learn and never use the other."""
        draw = torch.rand(z_text.shape[0], 1, device=z_text.device)
        p = self.modality_dropout
        return z_text.masked_fill(draw < p, 0.0), z_image.masked_fill(
            (draw >= p) & (draw < 2 * p), 0.0
        )
