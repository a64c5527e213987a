"""`model/text_tower=bow`: a bag of words, the mean of word embeddings learned from scratch
over the real tokens, then one tanh layer."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from emoclip.contract import ATTENTION_MASK, INPUT_IDS, TokenizerSpec
from emoclip.models.base import TextTower, TowerOutput
from emoclip.models.task import TaskSpec


class BagOfWordsTower(TextTower):
    pretrained = False

    def __init__(
        self,
        task: TaskSpec,
        embed_dim: int = 32,
        width: int = 32,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,
    ):
        super().__init__(finetune, trainable_layers, optim)
        self.embedding = nn.Embedding(task.vocab_size, embed_dim, padding_idx=task.pad_token_id)
        self.projection = nn.Linear(embed_dim, width)
        self.width, self.token_width = width, embed_dim

    @classmethod
    def tokenizer_spec(cls, settings: Mapping) -> TokenizerSpec:
        """A word-level vocabulary built from the training texts (its `tokenizer` node)."""
        return TokenizerSpec.from_settings("trained", settings.get("tokenizer") or {})

    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        mask = batch[ATTENTION_MASK].bool()
        words = self.embedding(batch[INPUT_IDS])
        weights = mask.unsqueeze(-1).to(words.dtype)
        mean = (words * weights).sum(1) / weights.sum(1).clamp(min=1)
        pooled = torch.tanh(self.projection(mean))
        return TowerOutput(pooled, words if tokens else None, mask if tokens else None)

    def token_embedding(self) -> nn.Embedding:
        return self.embedding

    def layers(self) -> list[list[nn.Parameter]]:
        return [list(self.embedding.parameters()), list(self.projection.parameters())]

    def lora_targets(self) -> list[str]:
        return ["embedding", "projection"]

    def feature_settings(self) -> dict:
        return {"pooling": "mean"}
