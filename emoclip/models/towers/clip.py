"""CLIP's own encoders as towers: the text half and the vision half of model.backbone (one
CLIP, a hub id, a local folder or a randomly initialised geometry), each with CLIP's
projection, so the pooled features are CLIP's z_T and z_I."""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
from torch import nn

from emoclip.contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    PIXEL_VALUES,
    ImagePreprocessing,
    TokenizerSpec,
)
from emoclip.models.base import ImageTower, TextTower, TowerOutput
from emoclip.models.clip_backbone import backbone_tokenizer, load_clip_half
from emoclip.models.hf_loading import image_preprocessing
from emoclip.models.task import TaskSpec


class _ClipHalf:
    """What both halves share: the encoder (a Hugging Face CLIP*ModelWithProjection)."""

    encoder: nn.Module

    def _use(self, encoder: nn.Module, name_or_path: str | None) -> None:
        self.encoder = encoder
        self.width = encoder.config.projection_dim
        self.token_width = encoder.config.hidden_size
        self.name_or_path = name_or_path

    def enable_gradient_checkpointing(self) -> None:
        self.encoder.gradient_checkpointing_enable({"use_reentrant": False})

    def _config_settings(self) -> dict:
        return {"config": json.loads(self.encoder.config.to_json_string(use_diff=False))}


class ClipTextTower(_ClipHalf, TextTower):
    def __init__(
        self,
        task: TaskSpec,
        backbone: Mapping,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        TextTower.__init__(self, finetune, trainable_layers, optim)
        self._use(load_clip_half(backbone, "text", task), backbone.get("name_or_path"))

    @classmethod
    def tokenizer_spec(cls, settings: Mapping) -> TokenizerSpec:
        return backbone_tokenizer(settings["backbone"])

    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        mask = batch[ATTENTION_MASK]
        out = self.encoder(input_ids=batch[INPUT_IDS], attention_mask=mask)
        if not tokens:
            return TowerOutput(out.text_embeds)
        return TowerOutput(out.text_embeds, out.last_hidden_state, mask.bool())

    def token_embedding(self) -> nn.Embedding:
        return self.encoder.text_model.embeddings.token_embedding

    def feature_settings(self) -> dict:
        return self._config_settings()


class ClipImageTower(_ClipHalf, ImageTower):
    def __init__(
        self,
        task: TaskSpec,
        backbone: Mapping,
        normalization: str | None = None,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        ImageTower.__init__(self, finetune, trainable_layers, optim)
        self._use(load_clip_half(backbone, "image", task), backbone.get("name_or_path"))
        self._preprocessing = image_preprocessing(
            self.name_or_path, backbone["image_size"], normalization, "model.image_tower"
        )

    @property
    def preprocessing(self) -> ImagePreprocessing:
        return self._preprocessing

    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        out = self.encoder(pixel_values=batch[PIXEL_VALUES])
        return TowerOutput(out.image_embeds, out.last_hidden_state if tokens else None)

    def feature_settings(self) -> dict:
        return {**ImageTower.feature_settings(self), **self._config_settings()}
