"""How each part of a network trains: the optimiser's parameter groups and their schedules.

The head (fusion, projections, classifier) trains with `model.optimizer` (its lr and weight
decay), at a constant rate. A tower whose config has an `optim` node trains as that node says:

    optim: {lr: 1.0e-4, weight_decay: 0.01, warmup: 0.06, decay: linear}

- `lr`, `weight_decay`: the tower's own; null: the head's.
- `warmup`: the fraction of all training steps over which its rate rises linearly from 0.
- `decay`: `linear` or `cosine` down to 0 at the last training step
  (`trainer.estimated_stepping_batches`), or `none` (constant after the warmup).

Pretrained towers (hf, open_clip, and the `clip` towers of a pretrained backbone) carry a
recipe for fine-tuning pretrained weights; the from-scratch towers (lstm, cnn, and the tiny
random CLIP) train as the head. `model.backbone_lr`, when set, replaces the lr of every
pretrained tower; a `model.scheduler` replaces every schedule (one scheduler for all groups).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from emoclip.errors import ConfigError
from emoclip.models.base import Network

log = logging.getLogger(__name__)

DECAYS = ("none", "linear", "cosine")


@dataclass(frozen=True)
class Recipe:
    lr: float | None = None
    weight_decay: float | None = None
    warmup: float = 0.0
    decay: str = "none"

    @property
    def scheduled(self) -> bool:
        return self.warmup > 0 or self.decay != "none"


def read_recipe(optim: Mapping | None, where: str) -> Recipe:
    """A tower's `optim` node, checked: one line naming the key if it is wrong."""
    if not optim:
        return Recipe()
    unknown = set(optim) - set(Recipe.__dataclass_fields__)
    if unknown:
        raise ConfigError(
            f"{where}.optim has unknown keys {sorted(unknown)}; expected lr, weight_decay, "
            "warmup, decay"
        )
    recipe = Recipe(**optim)
    for key in ("lr", "weight_decay"):
        value = getattr(recipe, key)
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise ConfigError(f"{where}.optim.{key}={value!r}: expected a number >= 0 or null")
    if not isinstance(recipe.warmup, int | float) or not 0 <= recipe.warmup < 1:
        raise ConfigError(f"{where}.optim.warmup={recipe.warmup!r}: expected a fraction in [0, 1)")
    if recipe.decay not in DECAYS:
        raise ConfigError(f"{where}.optim.decay={recipe.decay!r}: expected one of {DECAYS}")
    return recipe


def rate_factor(recipe: Recipe, total_steps: float) -> Callable[[int], float]:
    """The multiplier of the group's lr at each optimiser step: warmup, then decay to 0."""
    finite = math.isfinite(total_steps) and total_steps > 0
    warmup = int(recipe.warmup * total_steps) if finite else 0
    decay = recipe.decay if finite else "none"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if decay == "none":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1.0, total_steps - warmup))
        if decay == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def parameter_groups(
    parameters: list[nn.Parameter], network: Network, backbone_lr: float | None
) -> tuple[list[dict], dict[str, Recipe]]:
    """The optimiser's parameter groups (each named: `head`, `text_tower`, `image_tower`)
    over the trainable `parameters`, and the recipe of each group."""
    trainable = [p for p in parameters if p.requires_grad]
    backbone = {id(p) for p in network.backbone_parameters()}
    groups, recipes, in_towers = [], {}, set()
    for name, (params, optim) in network.tower_parameters().items():
        recipe = read_recipe(optim, f"model.{name}")
        if backbone_lr is not None and all(id(p) in backbone for p in params):
            recipe = Recipe(backbone_lr, recipe.weight_decay, recipe.warmup, recipe.decay)
        if recipe == Recipe():
            continue  # trains as the head
        group = {"params": params, "name": name}
        group.update({k: getattr(recipe, k) for k in ("lr", "weight_decay")})
        groups.append({k: v for k, v in group.items() if v is not None})
        recipes[name] = recipe
        in_towers.update(id(p) for p in params)
    head = [p for p in trainable if id(p) not in in_towers]
    if head:
        groups.insert(0, {"params": head, "name": "head"})
        recipes = {"head": Recipe(), **recipes}
    if len(groups) == 1:  # one group, unnamed: the learning-rate log keeps its `lr-AdamW` key
        del groups[0]["name"]
    return groups, recipes


def configure(
    parameters: list[nn.Parameter],
    network: Network,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable | None,
    backbone_lr: float | None,
    total_steps: Callable[[], float],
):
    """What LightningModule.configure_optimizers returns for this network. `total_steps` is
    asked only when a tower's recipe schedules its rate: the trainer's estimate builds the
    training loader, which must wait, when a run resumes mid-epoch, until the checkpoint's
    loader state is loaded."""
    groups, recipes = parameter_groups(parameters, network, backbone_lr)
    optimizer = optimizer_factory(groups)
    log.info(
        "optimizer: %s",
        "; ".join(
            describe(name, g, recipes[name])
            for name, g in zip(recipes, optimizer.param_groups, strict=True)
        ),
    )
    if scheduler_factory is not None:
        if any(r.scheduled for r in recipes.values()):
            log.info("model.scheduler is set: it replaces the towers' own warmup and decay")
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler_factory(optimizer), "interval": "epoch"},
        }
    if not any(r.scheduled for r in recipes.values()):
        return optimizer
    steps = total_steps()
    factors = [rate_factor(recipes[name], steps) for name in recipes]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def describe(name: str, group: dict, recipe: Recipe) -> str:
    text = f"{name} lr {group['lr']:g} weight decay {group.get('weight_decay', 0):g}"
    if recipe.warmup:
        text += f", warmup {recipe.warmup:.0%} of the steps"
    if recipe.decay != "none":
        text += f", {recipe.decay} decay to 0"
    return text
