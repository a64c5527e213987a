"""The text baseline's encoder as a tower: word embedding and a (bi)LSTM trained from scratch,
pooled as the mean and the max over real tokens, concatenated. Its tokenizer is word-level,
built from the training texts, or the pretrained one `tokenizer.name_or_path` names."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emoclip.contract import ATTENTION_MASK, INPUT_IDS, TokenizerSpec
from emoclip.models.base import TextTower, TowerOutput
from emoclip.models.task import TaskSpec


class LSTMTextTower(TextTower):
    pretrained = False

    def __init__(
        self,
        task: TaskSpec,
        embed_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        super().__init__(finetune, trainable_layers, optim)
        self.embedding = nn.Embedding(task.vocab_size, embed_dim, padding_idx=task.pad_token_id)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.token_width = hidden_size * (2 if bidirectional else 1)
        self.width = 2 * self.token_width  # mean ++ max

    @classmethod
    def tokenizer_spec(cls, settings: Mapping) -> TokenizerSpec:
        tokenizer = settings.get("tokenizer") or {}
        kind = "pretrained" if tokenizer.get("name_or_path") else "trained"
        return TokenizerSpec.from_settings(kind, tokenizer)

    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        mask = batch[ATTENTION_MASK].bool()
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(
            self.embedding(batch[INPUT_IDS]), lengths, batch_first=True, enforce_sorted=False
        )
        hidden, _ = pad_packed_sequence(
            self.lstm(packed)[0], batch_first=True, total_length=mask.shape[1]
        )
        m = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        maxed = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        pooled = torch.cat([mean, maxed], dim=-1)
        return TowerOutput(pooled, hidden if tokens else None, mask if tokens else None)

    def token_embedding(self) -> nn.Embedding:
        return self.embedding

    def layers(self) -> list[list[nn.Parameter]]:
        """One group per LSTM layer (both directions): nn.LSTM names them `*_l{k}`."""
        return [
            [
                p
                for name, p in self.lstm.named_parameters()
                if name.split("_l")[-1].split("_")[0] == str(k)
            ]
            for k in range(self.lstm.num_layers)
        ]

    def lora_targets(self) -> list[str]:
        return ["embedding"]  # peft adapts embeddings but not LSTMs

    def feature_settings(self) -> dict:
        return {"pooling": "mean+max"}
