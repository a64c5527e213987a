"""The report's model, generalised: CLIP's text features z_T and image features z_I, combined
by a fusion module (`model/fusion=`; the report's is concatenation into a feedforward head).
A modality the batch lacks (a one-modality study, an ablation) enters as zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from transformers import CLIPModel

from emoclip.errors import ConfigError
from emoclip.models.clip_backbone import load_clip
from emoclip.models.fusion import ClipFeatures, ConcatFusion, FeatureDims
from emoclip.models.task import TaskSpec

FREEZE_OPTIONS = ("none", "all", "text", "image")


class ClipFusion(nn.Module):
    modalities = ("text", "image")

    def __init__(
        self,
        task: TaskSpec,
        backbone: Mapping,
        fusion: Callable[..., nn.Module] = ConcatFusion,
        hidden_size: int = 512,
        dropout: float = 0.1,
        freeze: str = "none",
        gradient_checkpointing: bool = False,
        modality_dropout: float = 0.0,
        unimodal_loss_weight: float = 0.0,
    ):
        super().__init__()
        if freeze not in FREEZE_OPTIONS:
            raise ConfigError(f"model.network.freeze={freeze!r}; expected one of {FREEZE_OPTIONS}")
        if not 0 <= modality_dropout <= 0.5:
            raise ConfigError(f"model.network.modality_dropout={modality_dropout}; expected 0..0.5")
        if unimodal_loss_weight < 0:
            raise ConfigError(
                f"model.network.unimodal_loss_weight={unimodal_loss_weight}; expected >= 0"
            )
        self.clip = load_clip(
            backbone.get("name_or_path"), backbone.get("config"), backbone["image_size"], task
        )
        # CLIP's contrastive temperature takes no part in classification; trainable, it would be
        # a parameter outside the loss, which DDP refuses.
        self.clip.logit_scale.requires_grad_(False)
        if gradient_checkpointing:
            self.clip.gradient_checkpointing_enable()
        if freeze in ("all", "text"):
            self._freeze(self.clip.text_model, self.clip.text_projection)
        if freeze in ("all", "image"):
            self._freeze(self.clip.vision_model, self.clip.visual_projection)
        self.modality_dropout = modality_dropout
        self.dims = clip_feature_dims(self.clip)
        self.fusion = fusion(
            dims=self.dims, num_classes=task.num_classes, hidden_size=hidden_size, dropout=dropout
        )
        # Auxiliary linear classifiers on z_T and z_I alone: their loss, added with this weight
        # while training, makes each encoder learn its modality even when the other one is
        # easier (left alone, a fused model can lean on the text and never train its images).
        self.unimodal_loss_weight = unimodal_loss_weight
        self.unimodal_heads = nn.ModuleDict(
            {m: nn.Linear(self.dims.embed, task.num_classes) for m in self.modalities}
            if unimodal_loss_weight > 0
            else {}
        )

    @staticmethod
    def _freeze(*modules: nn.Module) -> None:
        for module in modules:
            module.requires_grad_(False)

    def backbone_parameters(self):
        return [p for p in self.clip.parameters() if p.requires_grad]

    def encode(self, batch: dict) -> ClipFeatures:
        return encode_clip(
            self.clip, batch, self.dims, tokens=getattr(self.fusion, "needs_tokens", False)
        )

    def token_embedding(self) -> nn.Embedding:
        return self.clip.text_model.embeddings.token_embedding

    def forward(self, batch: dict, with_unimodal: bool = False):
        """Logits; with `with_unimodal`, also the auxiliary heads' logits per modality."""
        features = self.encode(batch)
        fused = self._drop_modalities(features) if self.training else features
        logits = self.fusion(fused)
        if not with_unimodal:
            return logits
        unimodal = {m: head(getattr(features, m)) for m, head in self.unimodal_heads.items()}
        return logits, unimodal

    def _drop_modalities(self, features: ClipFeatures) -> ClipFeatures:
        """Remove the text of a fraction p of the examples and the image of another p, as a
        missing modality is removed: otherwise the fusion can lean on whichever modality is
        easier to learn and never use the other."""
        if self.modality_dropout == 0:
            return features
        draw = torch.rand(features.text.shape[0], 1, device=features.text.device)
        p = self.modality_dropout
        return features.without(text=draw < p, image=(draw >= p) & (draw < 2 * p))


def clip_feature_dims(clip: CLIPModel) -> FeatureDims:
    return FeatureDims(
        embed=clip.config.projection_dim,
        text_tokens=clip.config.text_config.hidden_size,
        image_tokens=clip.config.vision_config.hidden_size,
    )


def encode_clip(
    clip: CLIPModel, batch: dict, dims: FeatureDims, tokens: bool = False
) -> ClipFeatures:
    """CLIP's projected features of each modality (and its per-token outputs with `tokens`),
    zeros for a modality the batch lacks."""
    labels = batch["labels"]
    n, device = labels.shape[0], labels.device
    text = image = text_tokens = text_mask = image_tokens = None
    if "input_ids" in batch:
        out = clip.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        text = clip.text_projection(out.pooler_output)
        if tokens:
            text_tokens, text_mask = out.last_hidden_state, batch["attention_mask"].bool()
    if "pixel_values" in batch:
        out = clip.vision_model(pixel_values=batch["pixel_values"])
        image = clip.visual_projection(out.pooler_output)
        if tokens:
            image_tokens = out.last_hidden_state
    dtype = (text if text is not None else image).dtype

    def absent(*shape):
        return torch.zeros(*shape, device=device, dtype=dtype)

    present = torch.ones(n, 1, device=device, dtype=dtype)
    features = ClipFeatures(
        text=text if text is not None else absent(n, dims.embed),
        image=image if image is not None else absent(n, dims.embed),
        text_present=present if text is not None else absent(n, 1),
        image_present=present if image is not None else absent(n, 1),
    )
    if tokens:
        features.text_tokens = text_tokens if text is not None else absent(n, 1, dims.text_tokens)
        features.text_mask = (
            text_mask if text is not None else torch.ones(n, 1, dtype=torch.bool, device=device)
        )
        features.image_tokens = (
            image_tokens if image is not None else absent(n, 1, dims.image_tokens)
        )
    return features
