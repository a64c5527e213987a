"""Turn a composed config into the pieces of a run: DataModule, LightningModule, Trainer.

Shared by training and evaluation, so a checkpoint's study is rebuilt exactly as it was trained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from emoclip.cli.entry import config_dir  # noqa: F401 (its home is emoclip.cli.entry, light for the entries)
from emoclip.data.datamodule import EmotionDataModule
from emoclip.data.tokenizer import build_tokenizer, tokenizer_to_json
from emoclip.errors import ConfigError
from emoclip.models.base import Network
from emoclip.models.module import EmotionClassifier
from emoclip.models.task import TaskSpec
from emoclip.study.feature_cache import FeatureCache
from emoclip.study.stored_study import recorded_choices
from emoclip.system.threads import take_threads_key

log = logging.getLogger(__name__)


def prepare_process(seed: int) -> None:
    """Seed every generator, and flush denormal floats to zero: on CPU, LSTM and CNN training
    drifts into denormals that make an epoch up to 50x slower, for no difference in results."""
    L.seed_everything(seed, workers=True)
    torch.set_flush_denormal(True)


@dataclass
class Study:
    datamodule: EmotionDataModule
    module: EmotionClassifier
    # Callbacks the study cannot run without (whatever `callbacks=` says), e.g. FeatureCache.
    callbacks: list[L.Callback] = field(default_factory=list)


def network_class(model_cfg: DictConfig) -> type[Network]:
    """The class model.network builds; it must follow the contract in emoclip/models/base.py."""
    target = model_cfg.network._target_
    cls = get_class(target)
    if not (isinstance(cls, type) and issubclass(cls, Network)):
        raise ConfigError(
            f"model.network._target_={target} is not an emoclip network "
            "(a subclass of emoclip.models.base.Network)"
        )
    return cls


def is_training_free(model_cfg: DictConfig) -> bool:
    """Whether the model is used as it comes (zero-shot CLIP), never trained."""
    return network_class(model_cfg).training_free


def study_tokenizer(model_cfg: DictConfig, modalities, train_texts=None, saved: str | None = None):
    """The tokenizer the network declares (its text tower's): its saved JSON if the checkpoint
    has one, else built from the declaration; None for a study without text."""
    cls = network_class(model_cfg)
    if "text" not in modalities and not cls.needs_tokenizer:
        return None
    spec = cls.tokenizer_spec(model_cfg.network)
    if spec is None:
        raise ConfigError(
            f"the study uses text but model.network ({cls.__name__}) declares no tokenizer"
        )
    return build_tokenizer(spec, train_texts, saved)


def network_arguments(model_cfg: DictConfig) -> dict:
    """model.network as its class takes it: a text tower's `tokenizer` node is the tower's
    declaration of its tokenizer (TextTower.tokenizer_spec, read by the study), not an argument."""
    network = OmegaConf.to_container(model_cfg.network, resolve=True)
    if isinstance(network.get("text_tower"), dict):
        network["text_tower"].pop("tokenizer", None)
    return network


def build_study(cfg: DictConfig, saved_tokenizer: str | None = None) -> Study:
    datamodule: EmotionDataModule = instantiate(cfg.data)
    network_modalities = set(cfg.model.modalities)
    if not set(datamodule.modalities) <= network_modalities:
        raise ConfigError(
            f"data.modalities={list(datamodule.modalities)} but model={cfg.model.name} "
            f"takes only {sorted(network_modalities)}"
        )
    datamodule.load_records()
    tokenizer = study_tokenizer(
        cfg.model, datamodule.modalities, datamodule.train_texts, saved_tokenizer
    )
    module = build_module(
        cfg,
        datamodule.classes,
        tokenizer,
        datamodule.label_space.describe(),
        class_weights=datamodule.class_weights(cfg.model.get("class_weights")),
    )
    hand_preprocessing(datamodule, module.network, tokenizer)
    return Study(datamodule, module, required_callbacks(cfg, module.network, datamodule))


def hand_preprocessing(datamodule: EmotionDataModule, network: Network, tokenizer) -> None:
    """The towers own their inputs' preprocessing: the data module gets the text tower's
    tokenizer and the image tower's image size and normalisation."""
    image = network.image_preprocessing() if "image" in datamodule.modalities else None
    datamodule.set_preprocessing(tokenizer, image)


def required_callbacks(
    cfg: DictConfig, network: Network, datamodule: EmotionDataModule
) -> list[L.Callback]:
    """Callbacks the study cannot run without: the feature cache of frozen towers."""
    cached = network.cached_modalities()
    if not cached:
        return []
    if datamodule.train_shards:
        raise ConfigError(
            "data.train_shards streams training examples, but frozen towers' features are "
            "cached per example: set model.network.cache_frozen_towers=false"
        )
    if "image" in cached and datamodule.augment:
        raise ConfigError(
            "the image tower is frozen and its features are computed once per example, so "
            "images cannot be augmented per epoch: set data.augment=null (model/finetune=frozen "
            "does), or run the frozen tower on every batch: "
            "model.network.cache_frozen_towers=false"
        )
    return [FeatureCache(cfg.paths.cache_dir)]


def build_module(
    cfg: DictConfig,
    classes: tuple[str, ...],
    tokenizer,
    label_space: dict | None = None,
    class_weights: list[float] | None = None,
) -> EmotionClassifier:
    """The study's LightningModule around its network, for these classes (in `label_space`,
    recorded in its checkpoints beside them) and this tokenizer."""
    spec = None if tokenizer is None else network_class(cfg.model).tokenizer_spec(cfg.model.network)
    task = TaskSpec(
        classes=classes,
        vocab_size=len(tokenizer) if tokenizer is not None else 0,
        pad_token_id=tokenizer.pad_token_id if tokenizer is not None else 0,
        bos_token_id=tokenizer.bos_token_id if tokenizer is not None else None,
        eos_token_id=tokenizer.eos_token_id if tokenizer is not None else None,
        max_text_length=(spec.max_length or 77) if spec is not None else 77,
        tokenizer=tokenizer,
    )
    # Called, not passed to instantiate: Hydra would turn the dataclass into a DictConfig.
    network = instantiate(network_arguments(cfg.model), _partial_=True)(task=task)
    if set(network.modalities) != set(cfg.model.modalities):
        raise ConfigError(
            f"model={cfg.model.name} is a study of {list(cfg.model.modalities)} but its network "
            f"reads {list(network.modalities)}: a text and an image tower make a two-modality "
            "study, model=clip_fusion"
        )
    trained_tokenizer = spec is not None and spec.travels_in_checkpoints
    return EmotionClassifier(
        network,
        classes,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        backbone_lr=cfg.model.get("backbone_lr"),
        label_smoothing=cfg.model.get("label_smoothing", 0.0),
        class_weights=class_weights,
        hparams=OmegaConf.to_container(cfg, resolve=True),
        extra_checkpoint_state={
            "tokenizer": tokenizer_to_json(tokenizer) if trained_tokenizer else None,
            "label_space": label_space,
            "choices": recorded_choices(cfg),  # which option of each config group (stored_study)
        },
    )


def build_trainer(
    cfg: DictConfig,
    with_callbacks: bool = True,
    with_loggers: bool = True,
    study_callbacks: list[L.Callback] = (),
) -> L.Trainer:
    callbacks = list(study_callbacks)
    if with_callbacks and cfg.get("callbacks"):
        callbacks += [instantiate(c) for c in cfg.callbacks.values() if c and "_target_" in c]
    loggers = []
    if with_loggers and cfg.get("logger"):
        loggers = [instantiate(lg) for lg in cfg.logger.values() if lg and "_target_" in lg]
    take_threads_key(cfg)  # emoclip's (emoclip/system/threads.py), not a Trainer argument
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    return instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision
    )


def resolve_precision(precision: str, accelerator: str) -> str:
    """trainer.precision, where `auto` means: bf16-mixed on a GPU with native bf16 (Ampere and
    newer), 16-mixed on other CUDA GPUs, 32-true on CPU."""
    if str(precision) != "auto":
        return precision
    if accelerator == "cpu" or not torch.cuda.is_available():
        chosen = "32-true"
    elif torch.cuda.is_bf16_supported(including_emulation=False):
        chosen = "bf16-mixed"
    else:
        chosen = "16-mixed"
    log.info("trainer.precision=auto: %s", chosen)
    return chosen
