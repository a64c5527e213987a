"""From a checkpoint back to its study: what evaluate, explain and predict share.

A checkpoint is loaded as data (`weights_only`), never by running pickled code, and the study
config stored in it passes emoclip.trust's guard before anything in it is resolved or built.
That config and the tokenizer stored beside it rebuild the network exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emoclip.checkpoint_io import load_checkpoint_file
from emoclip.errors import ConfigError
from emoclip.models.legacy import upgrade_checkpoint
from emoclip.models.module import EmotionClassifier
from emoclip.study import (
    Study,
    build_module,
    build_study,
    hand_preprocessing,
    prepare_process,
    study_tokenizer,
)
from emoclip.trust import GUARD_ONLY, Trust, check_untrusted


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """An emoclip checkpoint, read as data; its study config is not yet checked (study_config
    and resume do that)."""
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
    return upgrade_checkpoint(checkpoint, path)


def study_config(
    checkpoint: dict, path: str | Path, overrides: Sequence[str] = (), trust: Trust = GUARD_ONLY
) -> DictConfig:
    """The checkpoint's study config, checked by the guard, then the user's overrides on top."""
    check_untrusted(checkpoint["hyper_parameters"], str(path), trust)
    cfg = OmegaConf.create(checkpoint["hyper_parameters"])
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
    path: str | Path, overrides: Sequence[str] = (), trust: Trust = GUARD_ONLY
) -> tuple[Study, DictConfig]:
    """The checkpoint's study with its data (all splits), its tokenizer and its weights."""
    checkpoint = load_checkpoint(path)
    cfg = study_config(checkpoint, path, overrides, trust)
    prepare_process(cfg.seed)
    study = build_study(cfg, saved_tokenizer=checkpoint["emoclip"].get("tokenizer"))
    load_weights(study.module, checkpoint, path)
    return study, cfg


def restore_for_prediction(path: str | Path, trust: Trust = GUARD_ONLY) -> tuple[Study, DictConfig]:
    """The checkpoint's network and a data module without data: its preprocessing only, so
    that predicting needs neither the training data nor its folders."""
    checkpoint = load_checkpoint(path)
    cfg = study_config(checkpoint, path, trust=trust)
    label_space = saved_label_space(checkpoint)
    datamodule = instantiate(
        cfg.data, dataset=None, classes=label_space["classes"], label_space=label_space["name"]
    )
    if "text" in datamodule.modalities and cfg.model.get("tokenizer") is None:
        raise ConfigError(f"{path}: the study uses text but its model.tokenizer is not set")
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
    return {**saved, "classes": list(state.get("classes") or ())}


def load_weights(module: EmotionClassifier, checkpoint: dict, path: str | Path) -> None:
    saved_classes = tuple(checkpoint["emoclip"].get("classes") or ())
    if saved_classes != module.classes:
        raise ConfigError(
            f"{path} was trained on the classes {list(saved_classes)}, but the rebuilt study has "
            f"{list(module.classes)}; data.classes must stay as it was trained"
        )
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        name = module.hparams.get("model", {}).get("name", "?")
        detail = str(err).strip().splitlines()
        raise ConfigError(
            f"{path}: its weights do not fit model={name} as its stored config builds it "
            f"({' '.join(detail[1:3]).strip() or detail[0]})"
        ) from err
