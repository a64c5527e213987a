"""How much of a tower trains: `full`, `partial` (its last k layers and what follows them),
`lora` (peft's low-rank adapters) or `frozen` (nothing; the network may then cache the
tower's features). The same code serves every tower: what differs between architectures (which
modules are the layers, which ones LoRA adapts) is asked of the tower (emoclip/models/base.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from peft import LoraConfig, inject_adapter_in_model

from emoclip.errors import ConfigError
from emoclip.models.base import FINETUNE_MODES, Tower

log = logging.getLogger(__name__)
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


def check_mode(mode: str, key: str) -> str:
    if mode not in FINETUNE_MODES:
        raise ConfigError(f"{key}={mode!r}; expected one of {list(FINETUNE_MODES)}")
    return mode


def apply_finetune(
    tower: Tower, mode: str, trainable_layers: int, lora: Mapping | None, where: str
) -> None:
    """Leave exactly the weights `mode` trains with requires_grad (adding LoRA's adapters);
    `where` is the config node the settings came from, for error messages."""
    tower.requires_grad_(mode == "full")
    if mode == "partial":
        _train_last_layers(tower, trainable_layers, where)
    elif mode == "lora":
        _add_lora(tower, dict(lora or {}), where)
    if not tower.pretrained and mode != "full":
        log.warning(
            "%s: finetune=%s leaves part of a randomly initialised %s untrained",
            where,
            mode,
            type(tower).__name__,
        )


def _train_last_layers(tower: Tower, k: int, where: str) -> None:
    layers = tower.layers()
    if not 0 <= k <= len(layers):
        raise ConfigError(
            f"{where}: trainable_layers={k}; the {type(tower).__name__} has {len(layers)} "
            f"layers, so expected 0..{len(layers)}"
        )
    trained = [p for layer in layers[len(layers) - k :] for p in layer]
    # What comes after the layer stack (final layer norm, pooler, projection) trains with them.
    in_layers = {id(p) for layer in layers for p in layer}
    parameters = list(tower.parameters())
    last = max((i for i, p in enumerate(parameters) if id(p) in in_layers), default=-1)
    for p in [*trained, *parameters[last + 1 :]]:
        p.requires_grad_(True)


def _add_lora(tower: Tower, settings: dict, where: str) -> None:
    unknown = set(settings) - set(LORA_KEYS)
    if unknown:
        raise ConfigError(
            f"model.network.lora has unknown keys {sorted(unknown)}; expected "
            f"{', '.join(LORA_KEYS)}"
        )
    targets = settings.get("target_modules") or tower.lora_targets()
    config = LoraConfig(
        r=settings.get("r", 8),
        lora_alpha=settings.get("alpha", 16),
        lora_dropout=settings.get("dropout", 0.0),
        target_modules=list(targets),
    )
    try:
        inject_adapter_in_model(config, tower)
    except ValueError as err:
        raise ConfigError(f"model.network.lora, in {where}: {err}") from err
