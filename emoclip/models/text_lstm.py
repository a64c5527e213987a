"""Text-only baseline: token embedding, (bi)LSTM, mean+max pooling over real tokens, head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emoclip.models.heads import classifier_head
from emoclip.models.task import TaskSpec


class TextLSTM(nn.Module):
    modalities = ("text",)

    def __init__(
        self,
        task: TaskSpec,
        embed_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
        head_hidden_size: int = 128,
    ):
        super().__init__()
        self.embedding = nn.Embedding(task.vocab_size, embed_dim, padding_idx=task.pad_token_id)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        out = hidden_size * (2 if bidirectional else 1)
        self.head = classifier_head(2 * out, head_hidden_size, task.num_classes, dropout)

    def token_embedding(self) -> nn.Embedding:
        return self.embedding

    def forward(self, batch: dict) -> torch.Tensor:
        mask = batch["attention_mask"].bool()
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(
            self.embedding(batch["input_ids"]), lengths, batch_first=True, enforce_sorted=False
        )
        hidden, _ = pad_packed_sequence(
            self.lstm(packed)[0], batch_first=True, total_length=mask.shape[1]
        )
        m = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        maxed = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        return self.head(torch.cat([mean, maxed], dim=-1))
