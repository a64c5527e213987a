"""Image-only baseline: a small CNN trained from scratch, for any input size (48 px to 224 px).

Blocks of conv-BN-ReLU x2 + max-pool, then adaptive average pooling to a small grid: the head
sees where on the face a feature is (brows above, mouth below) whatever the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emoclip.models.heads import classifier_head
from emoclip.models.task import TaskSpec


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ImageCNN(nn.Module):
    modalities = ("image",)

    def __init__(
        self,
        task: TaskSpec,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.3,
        head_hidden_size: int = 128,
        pooled_grid: int = 3,
    ):
        super().__init__()
        widths = [3, *channels]
        self.features = nn.Sequential(
            *[_block(a, b) for a, b in zip(widths, widths[1:], strict=False)]
        )
        self.pool = nn.AdaptiveAvgPool2d(pooled_grid)
        self.head = classifier_head(
            widths[-1] * pooled_grid**2, head_hidden_size, task.num_classes, dropout
        )

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.pool(self.features(batch["pixel_values"])).flatten(1))
