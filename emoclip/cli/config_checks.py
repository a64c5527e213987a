"""Checks of a composed config that Hydra does not make: a key added on the command line
(`+key=value`) that nothing reads is an error, not a setting silently ignored.

Hydra answers `data.dataset.text_column=post` on a data config without that key with "use
+data.dataset.text_column=post"; followed, that advice would train on the synthetic set, since
no part of data=synthetic reads text_column. So every key added by a `+` (or `++`) override must be read:
interpolated by another value, defined by the chosen option of its config group (otherwise the
error names the options that define it), or a parameter of the `_target_` it is passed to.

`unread_added_keys` needs only the config (it runs before torch and friends are imported);
`check_target_parameters` imports the targets, so it runs just before the work starts.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from dataclasses import dataclass
from typing import Any

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from emoclip.errors import ConfigError
from emoclip.system.offline import config_strings

_ABSENT = object()
# Keys Hydra's instantiate reads itself rather than passing them to the target.
INSTANTIATE_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


@dataclass
class PassedToTarget:
    """An added key whose nearest enclosing node has a `_target_`: read if that callable
    takes it (checked once the targets can be imported)."""

    key: str
    target_path: str  # the dotted path of the node with the `_target_`
    parameter: str  # the key's first part below that node


@dataclass
class AddedKey:
    key: str
    value: str  # as typed
    forced: bool  # `++`: the key may exist already


def job_overrides() -> tuple[list[AddedKey], list[str]]:
    """This job's overrides that add a key (`+key=value`, `++key=value`; not those that add a
    group option, like +experiment=paper), and those that choose group options, as typed."""
    if not HydraConfig.initialized():
        return [], []
    added, chosen = [], []
    for override in OverridesParser.create().parse_overrides(
        list(HydraConfig.get().overrides.task)
    ):
        key = override.key_or_group
        if _is_group(key.replace(".", "/")):
            if not override.is_delete():
                chosen.append(override.input_line)
        elif (override.is_add() or override.is_force_add()) and not key.startswith("hydra."):
            added.append(
                AddedKey(key, override.get_value_element_as_str(), override.is_force_add())
            )
    return added, chosen


def unread_added_keys(cfg: DictConfig) -> list[PassedToTarget]:
    """Raise ConfigError for the first key added on the command line that nothing reads; return
    the added keys whose reader is a `_target_`, for check_target_parameters."""
    added, chosen = job_overrides()
    if not added:
        return []
    config_name = HydraConfig.get().job.config_name
    plain = OmegaConf.to_container(cfg, resolve=False)
    pending = []
    for item in added:
        key, value = item.key, item.value
        if _interpolated(plain, key):
            continue
        if item.forced and _defines(_composed(config_name, tuple(chosen)), key):
            continue  # a `++` of a key the chosen options define: an ordinary override
        group, readers = _options_that_define(config_name, key)
        if readers:
            chosen = HydraConfig.get().runtime.choices.get(group)
            if chosen in readers:  # the key is there already: a `+` is not needed
                raise ConfigError(
                    f"{key} is a key of {group}={chosen} already: set it without +, `{key}={value}`"
                )
            raise ConfigError(
                f"{key} is read by {group}={'|'.join(readers)}, not by {group}={chosen}: adding "
                f"it there would change nothing. Choose one of those options, e.g. "
                f"`{group}={readers[0]} {key}={value}` (no + needed)"
            )
        target = _enclosing_target(cfg, key)
        if target is None:
            where = f" (no option of {group}= defines it)" if group else ""
            parent = OmegaConf.select(cfg, key.rpartition(".")[0]) if "." in key else cfg
            name = key.rpartition(".")[2]
            siblings = (
                [str(k) for k in parent if k != name] if isinstance(parent, DictConfig) else []
            )
            raise ConfigError(
                f"{key}: nothing reads this key{where}, so setting it would change nothing ("
                + _did_you_mean(
                    key.rpartition(".")[2],
                    siblings,
                    "check its spelling; `--cfg job` prints the composed config",
                )
                + ")"
            )
        pending.append(target)
    return pending


def check_target_parameters(cfg: DictConfig, pending: list[PassedToTarget]) -> None:
    """Each added key passed to a `_target_` must be a parameter of it (or land in **kwargs)."""
    for item in pending:
        if item.parameter in INSTANTIATE_KEYS:
            continue  # read by instantiate itself, e.g. +callbacks.mine._target_=...
        target = OmegaConf.select(cfg, f"{item.target_path}._target_")
        try:
            parameters = inspect.signature(get_object(target)).parameters
        except (ImportError, ValueError, TypeError):
            continue  # the instantiation will say what is wrong with the target itself
        if item.parameter in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        ):
            continue
        accepted = [
            n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL
        ]
        raise ConfigError(
            f"{item.key}: {item.target_path} is built by {target}, which takes no "
            f"{item.parameter!r}, so setting it would change nothing ("
            + _did_you_mean(item.parameter, accepted, f"it takes: {', '.join(accepted)}")
            + ")"
        )


def _did_you_mean(word: str, known: list[str], otherwise: str) -> str:
    close = difflib.get_close_matches(word, known, n=3)
    return f"did you mean {' or '.join(close)}?" if close else otherwise


def _interpolated(node: Any, key: str) -> bool:
    """Whether some value of the config refers to `key` by an absolute interpolation."""
    needles = (f"${{{key}}}", f"${{{key}.", f"${{{key},", f":{key}}}", f":{key},")
    return any(any(n in text for n in needles) for text in config_strings(node))


def _groups_of(key: str) -> list[str]:
    """The config groups a dotted key may belong to, most specific first (model/fusion, model)."""
    parts = key.split(".")[:-1]
    candidates = ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return [g for g in candidates if _is_group(g)]


def _options_that_define(config_name: str, key: str) -> tuple[str | None, list[str]]:
    """The most specific group of `key` with options that define it, and those options."""
    groups = _groups_of(key)
    for group in groups:
        within = key[len(group) + 1 :]  # the key inside the group's package
        readers = [
            option
            for option in _options(group)
            if _defines(_composed(f"{group}/{option}", ()), within, key)
        ]
        if readers:
            return group, readers
    return (groups[0] if groups else None), []


def _defines(cfg: DictConfig | None, *keys: str) -> bool:
    """Whether the config has any of the keys (an option composed alone may have its keys at
    its own package, or at the top when it is `@package _global_`)."""
    return cfg is not None and any(
        OmegaConf.select(cfg, k, default=_ABSENT, throw_on_resolution_failure=False) is not _ABSENT
        for k in keys
    )


# Per config search path (one per app; a test may run several), read only.
_COMPOSED: dict[tuple, DictConfig | None] = {}
_OPTIONS: dict[tuple, list[str]] = {}


def _search_path() -> str:
    return repr(GlobalHydra.instance().config_loader().get_search_path().get_path())


def _options(group: str) -> list[str]:
    """The options of a config group (none if it is no group)."""
    cache_key = (_search_path(), group)
    if cache_key not in _OPTIONS:
        loader = GlobalHydra.instance().config_loader()
        _OPTIONS[cache_key] = list(loader.get_group_options(group, ObjectType.CONFIG))
    return _OPTIONS[cache_key]


def _is_group(name: str) -> bool:
    return bool(_options(name))


def _composed(config_name: str, overrides: tuple[str, ...]) -> DictConfig | None:
    """A config composed by Hydra (a group option on its own, as `group/option`), or None when it
    does not compose on its own."""
    cache_key = (_search_path(), config_name, overrides)
    if cache_key not in _COMPOSED:
        try:
            with warnings.catch_warnings():  # e.g. an option without `_self_`, composed alone
                warnings.simplefilter("ignore")
                _COMPOSED[cache_key] = compose(config_name, overrides=list(overrides))
        except Exception:  # an option that does not compose on its own defines nothing here
            _COMPOSED[cache_key] = None
    return _COMPOSED[cache_key]


def _enclosing_target(cfg: DictConfig, key: str) -> PassedToTarget | None:
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        path = ".".join(parts[:n])
        node = OmegaConf.select(cfg, path, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and "_target_" in node:
            return PassedToTarget(key, path, parts[n])
    return None


# Values Hydra's grammar types as typed (`2.5` a float, `abc` a string) and that must be of one
# kind; checked before anything runs, so a slip is one line instead of a failure minutes in.
# `None` marks the keys that may be null. Keys a config does not have are not checked.
INTEGER, NUMBER, FLAG = "a whole number", "a number", "true or false"
VALUE_TYPES: dict[str, tuple[str, bool]] = {
    "seed": (INTEGER, False),
    "data.batch_size": (INTEGER, False),
    "data.eval_batch_size": (INTEGER, True),
    "data.num_workers": (INTEGER, True),  # null: chosen from the CPUs and the split size
    "data.fold": (INTEGER, False),
    "data.num_folds": (INTEGER, True),
    "data.split_seed": (INTEGER, False),
    "data.image_size": (INTEGER, True),
    "data.val_fraction": (NUMBER, False),
    "data.test_fraction": (NUMBER, False),
    "data.skip_bad": (FLAG, False),
    "data.bucket_by_length": (FLAG, False),
    "trainer.max_epochs": (INTEGER, True),
    "trainer.min_epochs": (INTEGER, True),
    "trainer.max_steps": (INTEGER, True),
    "trainer.accumulate_grad_batches": (INTEGER, False),
    "trainer.check_val_every_n_epoch": (INTEGER, True),
    "trainer.log_every_n_steps": (INTEGER, True),
    "trainer.gradient_clip_val": (NUMBER, True),
    "model.optimizer.lr": (NUMBER, False),
    "model.optimizer.weight_decay": (NUMBER, False),
    "model.backbone_lr": (NUMBER, True),
    "model.label_smoothing": (NUMBER, False),
    "callbacks.early_stopping.patience": (INTEGER, False),
}


def check_value_types(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first key of VALUE_TYPES whose value is not of its kind."""
    for key, (kind, nullable) in VALUE_TYPES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False)
        if value is _ABSENT or (value is None and nullable) or _is_kind(value, kind):
            continue
        shown = "null" if value is None else value
        got = "null" if value is None else _KIND_NAMES.get(type(value), type(value).__name__)
        raise ConfigError(f"{key}={shown}: expected {kind}, got {got}")


_KIND_NAMES = {str: "text", float: "a decimal number", bool: "true/false", int: "a whole number"}


def _is_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == FLAG
    if kind == INTEGER:
        return isinstance(value, int)
    if kind == NUMBER:
        return isinstance(value, int | float)
    return False


def check_gpu_available(cfg: DictConfig) -> None:
    """A GPU asked for (trainer.accelerator=gpu/cuda, device=cuda) where torch sees none: one
    line naming the CPU choice, not a traceback from deep in torch or Lightning."""
    asked = []
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=None)
    if accelerator in ("gpu", "cuda"):
        asked.append((f"trainer.accelerator={accelerator}", "trainer=cpu"))
    device = cfg.get("device")
    if isinstance(device, str) and device.startswith("cuda"):
        asked.append((f"device={device}", "device=cpu"))
    if not asked:
        return
    import torch

    if torch.cuda.is_available():
        return
    setting, choice = asked[0]
    raise ConfigError(
        f"{setting} asks for a CUDA GPU and this machine has none that torch can use: run on "
        f"the CPU with {choice}"
    )
