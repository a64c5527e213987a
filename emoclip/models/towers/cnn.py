"""The image baseline's encoder as a tower: a small CNN trained from scratch, for any input
size (48 px to 224 px). Blocks of conv-BN-ReLU x2 + max-pool, then adaptive average pooling to a
small grid, flattened: the head sees where on the face a feature is (brows above, mouth below)
whatever the input size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from emoclip.contract import PIXEL_VALUES, ImagePreprocessing, normalization_stats
from emoclip.models.base import ImageTower, TowerOutput
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


class CNNImageTower(ImageTower):
    pretrained = False

    def __init__(
        self,
        task: TaskSpec,
        image_size: int = 48,
        normalization: str = "half",
        channels: Sequence[int] = (32, 64, 128),
        pooled_grid: int = 3,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        super().__init__(finetune, trainable_layers, optim)
        widths = [3, *channels]
        self.features = nn.Sequential(
            *[_block(a, b) for a, b in zip(widths, widths[1:], strict=False)]
        )
        self.pool = nn.AdaptiveAvgPool2d(pooled_grid)
        self.token_width = widths[-1]
        self.width = widths[-1] * pooled_grid**2
        self._preprocessing = ImagePreprocessing(image_size, *normalization_stats(normalization))

    @property
    def preprocessing(self) -> ImagePreprocessing:
        return self._preprocessing

    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        grid = self.features(batch[PIXEL_VALUES])
        pooled = self.pool(grid).flatten(1)
        return TowerOutput(pooled, grid.flatten(2).transpose(1, 2) if tokens else None)

    def layers(self) -> list[list[nn.Parameter]]:
        return [list(block.parameters()) for block in self.features]

    def lora_targets(self) -> list[str]:
        return [name for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]
