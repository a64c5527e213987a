"""From a checkpoint back to its study: what evaluate, explain and predict share.

A checkpoint is loaded as data (`weights_only`), never by running pickled code; its entries
are checked as typed plain values (`checked_entries`), and its study is rebuilt from emoclip's
own configs and the file's plain values (emoclip.study.stored_study), so nothing in the file chooses
what code runs. That study and the tokenizer stored beside it rebuild the network exactly as it
was trained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emoclip.data.labels import CUSTOM, LABEL_SPACES
from emoclip.errors import ConfigError
from emoclip.models.module import EmotionClassifier
from emoclip.study.build import (
    Study,
    build_module,
    build_study,
    hand_preprocessing,
    prepare_process,
    study_tokenizer,
)
from emoclip.study.legacy import upgrade_checkpoint
from emoclip.study.stored_study import read_stored_study
from emoclip.study.trust import GUARD_ONLY, Trust
from emoclip.system.checkpoint_io import load_checkpoint_file

MAX_CLASSES = 1000
MAX_NAME = 100  # characters of a class or label-space name


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """An emoclip checkpoint, read as data, its entries checked (checked_entries); its study
    config is not yet read (study_config and resume do that, through emoclip.study.stored_study)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r} is not a file")
    checkpoint = load_checkpoint_file(path, mmap=mmap)
    if not isinstance(checkpoint, dict) or not {"emoclip", "hyper_parameters"} <= checkpoint.keys():
        raise ConfigError(f"{path} is not an emoclip checkpoint (no study config inside)")
    if not isinstance(checkpoint["hyper_parameters"], dict):
        raise ConfigError(
            f"{path} is not an emoclip checkpoint (its study config is not a mapping)"
        )
    if not isinstance(checkpoint["emoclip"], dict):
        raise ConfigError(
            f"{path} is not an emoclip checkpoint (its emoclip entry is not a mapping)"
        )
    checkpoint["emoclip"] = checked_entries(checkpoint, path)
    return upgrade_checkpoint(checkpoint, path)


def checked_entries(checkpoint: dict, path: str | Path) -> dict:
    """checkpoint["emoclip"] as typed plain values: classes (a list of names), label_space
    (a known space, its classes and label map), tokenizer (JSON text or null), choices (group
    -> option, checked against conf/ when read); and the state_dict a mapping of tensors."""
    state = checkpoint["emoclip"]
    weights = checkpoint.get("state_dict", {})
    if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
        raise ConfigError(f"{path}: its state_dict is not a mapping of names to tensors")
    classes = state.get("classes") or []
    _check_names(classes, f"{path}: classes")
    label_space = state.get("label_space")
    if label_space is not None:
        if not isinstance(label_space, dict):
            raise ConfigError(
                f"{path}: label_space is a {type(label_space).__name__}, not a mapping"
            )
        name = label_space.get("name", "emotion")
        if name not in (*LABEL_SPACES, CUSTOM):
            raise ConfigError(
                f"{path}: label_space name {_shown(name)}: expected one of "
                f"{', '.join([*LABEL_SPACES, CUSTOM])}"
            )
        _check_names(label_space.get("classes") or [], f"{path}: label_space.classes")
        label_map = label_space.get("label_map") or {}
        if not isinstance(label_map, dict):
            raise ConfigError(f"{path}: label_space.label_map is not a mapping")
        _check_names([*label_map, *label_map.values()], f"{path}: label_space.label_map")
        label_space = {
            "name": name,
            "classes": list(label_space.get("classes") or []),
            "label_map": dict(label_map),
        }
    tokenizer = state.get("tokenizer")
    if tokenizer is not None:
        try:
            if not isinstance(json.loads(tokenizer), dict):
                raise ValueError
        except (TypeError, ValueError, RecursionError):
            raise ConfigError(f"{path}: its stored tokenizer is not a tokenizer's JSON") from None
    choices = state.get("choices")
    if choices is not None and not (
        isinstance(choices, dict)
        and all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in choices.items()
        )
    ):
        raise ConfigError(f"{path}: its recorded config choices are not a mapping of names")
    return {
        **state,
        "classes": list(classes),
        "label_space": label_space,
        "tokenizer": tokenizer,
        "choices": choices,
    }


def _check_names(names: Any, what: str) -> None:
    """A list of short printable names: no control characters (a terminal would obey them), no
    interpolation, no markup-only worries here (output escapes)."""
    if not isinstance(names, list | tuple):
        raise ConfigError(f"{what}: a {type(names).__name__}, expected a list of names")
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"{what}: {len(names)} names, more than {MAX_CLASSES}")
    for name in names:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise ConfigError(f"{what}: {_shown(name)} is not a name (1 to {MAX_NAME} characters)")
        if not name.isprintable() or "${" in name:
            raise ConfigError(
                f"{what}: {_shown(name)} holds control characters or an interpolation"
            )


def _shown(value: Any) -> str:
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_finite_weights(checkpoint: dict, path: str | Path) -> None:
    """NaN or infinite weights predict nothing: refused, naming the first such tensor."""
    import torch

    for name, tensor in checkpoint.get("state_dict", {}).items():
        if (
            isinstance(tensor, torch.Tensor)
            and tensor.is_floating_point()
            and not bool(tensor.isfinite().all())
        ):
            raise ConfigError(f"{path}: its weights {name} hold NaN or infinite values")


def study_config(
    checkpoint: dict,
    path: str | Path,
    overrides: Sequence[str] = (),
    trust: Trust = GUARD_ONLY,
    paths: DictConfig | None = None,
) -> DictConfig:
    """The checkpoint's study, rebuilt by emoclip.study.stored_study (with the entry's own `paths`),
    then the user's overrides on top."""
    cfg = read_stored_study(
        checkpoint["hyper_parameters"],
        str(path),
        trust,
        choices=checkpoint["emoclip"].get("choices"),
        entry_paths=paths,
    )
    # A key the study does not have would be added and then read by nothing (an old name
    # such as data.image_root): refused, so an override always takes effect.
    OmegaConf.set_struct(cfg, True)
    try:
        cfg.merge_with_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(
            f"study_overrides: {str(err).splitlines()[0]}; the checkpoint's study has no such "
            "key (its data location is data.root)"
        ) from None
    OmegaConf.set_struct(cfg, False)
    return cfg


def here(cfg: DictConfig) -> list[str]:
    """Overrides that point a checkpoint's study at this machine's data folder
    (paths.data_dir), where a data set with no data.root of its own is found."""
    return [f"data.data_dir={cfg.paths.data_dir}"]


def restore_study(
    path: str | Path,
    overrides: Sequence[str] = (),
    trust: Trust = GUARD_ONLY,
    paths: DictConfig | None = None,
) -> tuple[Study, DictConfig]:
    """The checkpoint's study with its data (all splits), its tokenizer and its weights; its
    files (the feature cache) under the entry's `paths`."""
    checkpoint = load_checkpoint(path)
    cfg = study_config(checkpoint, path, overrides, trust, paths)
    prepare_process(cfg.seed)
    study = build_study(cfg, saved_tokenizer=checkpoint["emoclip"].get("tokenizer"))
    load_weights(study.module, checkpoint, path)
    return study, cfg


def restore_for_prediction(path: str | Path, trust: Trust = GUARD_ONLY) -> tuple[Study, DictConfig]:
    """The checkpoint's network and a data module without data: its preprocessing only, so
    that predicting needs neither the training data nor its folders."""
    checkpoint = load_checkpoint(path)
    cfg = study_config(checkpoint, path, trust=trust)
    check_finite_weights(checkpoint, path)
    label_space = saved_label_space(checkpoint)
    datamodule = instantiate(
        cfg.data, dataset=None, classes=label_space["classes"], label_space=label_space["name"]
    )
    tokenizer = study_tokenizer(
        cfg.model, datamodule.modalities, saved=checkpoint["emoclip"].get("tokenizer")
    )
    module = build_module(cfg, datamodule.classes, tokenizer, label_space)
    hand_preprocessing(datamodule, module.network, tokenizer)
    load_weights(module, checkpoint, path)
    return Study(datamodule, module.eval()), cfg


def saved_label_space(checkpoint: dict) -> dict:
    """The label space a checkpoint's classes are in (emotion for checkpoints older than
    label spaces)."""
    state = checkpoint["emoclip"]
    saved = state.get("label_space") or {"name": "emotion"}
    return {**saved, "classes": list(state.get("classes") or ())}  # checked_entries checked them


def load_weights(module: EmotionClassifier, checkpoint: dict, path: str | Path) -> None:
    saved_classes = tuple(checkpoint["emoclip"].get("classes") or ())
    if saved_classes != module.classes:
        raise ConfigError(
            f"{path} was trained on the classes {list(saved_classes)}, but the rebuilt study has "
            f"{list(module.classes)}; data.classes must stay as it was trained"
        )
    if "state_dict" not in checkpoint:
        raise ConfigError(f"{path} holds no weights (no state_dict)")
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        name = module.hparams.get("model", {}).get("name", "?")
        detail = str(err).strip().splitlines()
        raise ConfigError(
            f"{path}: its weights do not fit model={name} as its stored config builds it "
            f"({' '.join(detail[1:3]).strip() or detail[0]})"
        ) from err
