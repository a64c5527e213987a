"""Any Hugging Face encoder as a tower, by hub id or local folder (`AutoModel`): text encoders
(BERT, RoBERTa, MiniLM, DistilBERT, ...) and image encoders (ViT, DINOv2, ConvNeXt, CLIP's or
SigLIP's vision half, ...). The pooled feature is the `pooling` of the encoder's last layer:

- `mean`: the mean over real tokens (text) or over all positions (image patches, or the
  spatial grid of a convolutional encoder);
- `cls`: the first token's output;
- `pooler`: the encoder's own pooled output (BERT's tanh pooler, ConvNeXt's normed mean, ...).

The tokenizer is the model's own (`tokenizer.name_or_path`); an image tower's size, mean and
std are read from the model's preprocessor_config.json unless set on the tower.
"""

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
from emoclip.errors import ConfigError
from emoclip.models.base import ImageTower, TextTower, TowerOutput
from emoclip.models.hf_loading import image_preprocessing, load_encoder
from emoclip.models.task import TaskSpec

POOLINGS = ("mean", "cls", "pooler")


class _HFEncoder:
    """What the text and image towers share: loading, pooling and the encoder's identity."""

    encoder: nn.Module

    def _load(self, name_or_path: str, pooling: str, modality: str, key: str) -> None:
        if not name_or_path:
            raise ConfigError(f"{key}.name_or_path is not set: a hub id or a local folder")
        if pooling not in POOLINGS:
            raise ConfigError(f"{key}.pooling={pooling!r}; expected one of {list(POOLINGS)}")
        self.pooling, self.name_or_path = pooling, name_or_path
        # A pooler this tower does not use may be absent from the checkpoint; it is then
        # removed rather than left random (and untrained, which DDP also refuses).
        may_lack = () if pooling == "pooler" else ("pooler.",)
        self.encoder = load_encoder(name_or_path, modality, f"{key}.name_or_path", may_lack)
        if pooling != "pooler" and isinstance(getattr(self.encoder, "pooler", None), nn.Module):
            self.encoder.pooler = None
        config = self.encoder.config
        # Transformers name their width hidden_size; convolutional encoders list hidden_sizes.
        hidden = getattr(config, "hidden_size", None) or config.hidden_sizes[-1]
        self.width = self.token_width = hidden

    def enable_gradient_checkpointing(self) -> None:
        self.encoder.gradient_checkpointing_enable({"use_reentrant": False})

    def _pooler_output(self, out) -> torch.Tensor:
        pooled = out.pooler_output
        if pooled is None:
            raise ConfigError(
                f"{self.name_or_path!r} ({type(self.encoder).__name__}) has no pooled output; "
                "use pooling=mean or pooling=cls"
            )
        return pooled.flatten(1)

    def _config_settings(self) -> dict:
        return {
            "pooling": self.pooling,
            "config": json.loads(self.encoder.config.to_json_string(use_diff=False)),
        }


class HFTextTower(_HFEncoder, TextTower):
    def __init__(
        self,
        task: TaskSpec,
        name_or_path: str,
        pooling: str = "mean",
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        TextTower.__init__(self, finetune, trainable_layers, optim)
        self._load(name_or_path, pooling, "text", "model.text_tower")
        rows = self.token_embedding().num_embeddings
        if task.vocab_size > rows:
            raise ConfigError(
                f"model.text_tower: the tokenizer has {task.vocab_size} tokens but "
                f"{name_or_path!r} embeds only {rows}: model.text_tower.tokenizer.name_or_path "
                "must name this model's own tokenizer"
            )

    @classmethod
    def tokenizer_spec(cls, settings: Mapping) -> TokenizerSpec:
        """The model's own tokenizer (or the one `tokenizer.name_or_path` names)."""
        tokenizer = settings.get("tokenizer") or {}
        name_or_path = tokenizer.get("name_or_path") or settings["name_or_path"]
        return TokenizerSpec.from_settings("pretrained", tokenizer, name_or_path=name_or_path)

    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        mask = batch[ATTENTION_MASK]
        out = self.encoder(input_ids=batch[INPUT_IDS], attention_mask=mask)
        hidden = out.last_hidden_state
        if self.pooling == "pooler":
            pooled = self._pooler_output(out)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return TowerOutput(pooled, hidden if tokens else None, mask.bool() if tokens else None)

    def token_embedding(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def feature_settings(self) -> dict:
        return self._config_settings()


class HFImageTower(_HFEncoder, ImageTower):
    def __init__(
        self,
        task: TaskSpec,
        name_or_path: str,
        pooling: str = "mean",
        image_size: int | None = None,
        normalization: str | None = None,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        ImageTower.__init__(self, finetune, trainable_layers, optim)
        self._load(name_or_path, pooling, "image", "model.image_tower")
        self._preprocessing = image_preprocessing(
            name_or_path, image_size, normalization, "model.image_tower"
        )

    @property
    def preprocessing(self) -> ImagePreprocessing:
        return self._preprocessing

    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        out = self.encoder(pixel_values=batch[PIXEL_VALUES])
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # a convolutional encoder's (n, channels, h, w) grid
            hidden = hidden.flatten(2).transpose(1, 2)
            if self.pooling == "cls":
                raise ConfigError(
                    f"model.image_tower.pooling=cls: {type(self.encoder).__name__} is "
                    "convolutional (no class token); use pooling=mean or pooler"
                )
        if self.pooling == "pooler":
            pooled = self._pooler_output(out)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = hidden.mean(1)
        return TowerOutput(pooled, hidden if tokens else None)

    def feature_settings(self) -> dict:
        return {**ImageTower.feature_settings(self), **self._config_settings()}
