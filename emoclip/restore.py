"""From a checkpoint back to its study: what evaluate, explain and predict share.

A checkpoint is loaded as data (`weights_only`), never by running pickled code. The study
config and the tokenizer stored inside it rebuild the network exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

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


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r} is not a file")
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint, dict) or not {"emoclip", "hyper_parameters"} <= checkpoint.keys():
        raise ConfigError(f"{path} is not an emoclip checkpoint (no study config inside)")
    return upgrade_checkpoint(checkpoint, path)


def study_config(checkpoint: dict, overrides: Sequence[str] = ()) -> DictConfig:
    cfg = OmegaConf.create(checkpoint["hyper_parameters"])
    cfg.merge_with_dotlist(list(overrides))
    return cfg


def restore_study(path: str | Path, overrides: Sequence[str] = ()) -> tuple[Study, DictConfig]:
    """The checkpoint's study with its data (all splits), its tokenizer and its weights."""
    checkpoint = load_checkpoint(path)
    cfg = study_config(checkpoint, overrides)
    prepare_process(cfg.seed)
    study = build_study(cfg, saved_tokenizer=checkpoint["emoclip"].get("tokenizer"))
    load_weights(study.module, checkpoint, path)
    return study, cfg


def restore_for_prediction(path: str | Path) -> tuple[Study, DictConfig]:
    """The checkpoint's network and a data module without data: its preprocessing only, so
    that predicting needs neither the training data nor its folders."""
    checkpoint = load_checkpoint(path)
    cfg = study_config(checkpoint)
    datamodule = instantiate(cfg.data, dataset=None)
    if "text" in datamodule.modalities and cfg.model.get("tokenizer") is None:
        raise ConfigError(f"{path}: the study uses text but its model.tokenizer is not set")
    tokenizer = study_tokenizer(
        cfg.model, datamodule.modalities, saved=checkpoint["emoclip"].get("tokenizer")
    )
    module = build_module(cfg, datamodule.classes, tokenizer)
    hand_preprocessing(datamodule, module.network, tokenizer)
    load_weights(module, checkpoint, path)
    return Study(datamodule, module.eval()), cfg


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
