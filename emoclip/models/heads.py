"""The small feedforward classification head shared by every network."""

from torch import nn


def classifier_head(
    in_features: int, hidden_size: int, num_classes: int, dropout: float
) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_features, hidden_size),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_size, num_classes),
    )
