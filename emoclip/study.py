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

from emoclip.cli import config_dir  # noqa: F401 (its home is emoclip.cli, light for the entries)
from emoclip.data.datamodule import EmotionDataModule
from emoclip.data.tokenizer import (
    load_pretrained_tokenizer,
    tokenizer_from_json,
    tokenizer_to_json,
    train_word_tokenizer,
)
from emoclip.errors import ConfigError
from emoclip.models.feature_cache import FeatureCache
from emoclip.models.module import EmotionClassifier
from emoclip.models.task import TaskSpec

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


def is_training_free(model_cfg: DictConfig) -> bool:
    """Whether the model is used as it comes (zero-shot CLIP), never trained."""
    return getattr(get_class(model_cfg.network._target_), "training_free", False)


def build_tokenizer(spec: DictConfig | None, datamodule: EmotionDataModule, saved: str | None):
    if "text" not in datamodule.modalities:
        return None
    if spec is None:
        raise ConfigError("the study uses text but model.tokenizer is not set")
    if saved is not None or spec.get("name_or_path"):
        return restore_tokenizer(spec, saved)
    return train_word_tokenizer(
        datamodule.train_texts(),
        vocab_size=spec.vocab_size,
        min_frequency=spec.get("min_frequency", 1),
        max_length=spec.max_length,
    )


def restore_tokenizer(spec: DictConfig, saved: str | None):
    """The tokenizer a checkpoint was trained with: its saved JSON, or the pretrained one."""
    if saved is not None:
        return tokenizer_from_json(saved, spec.max_length)
    return load_pretrained_tokenizer(spec.name_or_path)


def build_study(cfg: DictConfig, saved_tokenizer: str | None = None) -> Study:
    datamodule: EmotionDataModule = instantiate(cfg.data)
    network_modalities = set(cfg.model.modalities)
    if not set(datamodule.modalities) <= network_modalities:
        raise ConfigError(
            f"data.modalities={list(datamodule.modalities)} but model={cfg.model.name} "
            f"takes only {sorted(network_modalities)}"
        )
    datamodule.load_records()
    tokenizer = build_tokenizer(cfg.model.get("tokenizer"), datamodule, saved_tokenizer)
    datamodule.tokenizer = tokenizer
    module = build_module(cfg, datamodule.classes, tokenizer)
    return Study(datamodule, module, required_callbacks(cfg, module.network, datamodule))


def required_callbacks(
    cfg: DictConfig, network: torch.nn.Module, datamodule: EmotionDataModule
) -> list[L.Callback]:
    """Callbacks the study cannot run without: the feature cache of a frozen-encoder network."""
    if not getattr(network, "caches_features", False):
        return []
    if datamodule.augment:
        raise ConfigError(
            "model.network.finetune=frozen computes each example's features once, so it "
            "cannot augment images per epoch: set data.augment=null (model/finetune=frozen "
            "does), or train without the cache: model.network.finetune_towers=[]"
        )
    return [FeatureCache(cfg.paths.cache_dir)]


def build_module(cfg: DictConfig, classes: tuple[str, ...], tokenizer) -> EmotionClassifier:
    """The study's LightningModule around its network, for these classes and this tokenizer."""
    task = TaskSpec(
        classes=classes,
        vocab_size=len(tokenizer) if tokenizer is not None else 0,
        pad_token_id=tokenizer.pad_token_id if tokenizer is not None else 0,
        bos_token_id=tokenizer.bos_token_id if tokenizer is not None else None,
        eos_token_id=tokenizer.eos_token_id if tokenizer is not None else None,
        max_text_length=cfg.model.tokenizer.max_length if tokenizer is not None else 77,
    )
    # Called, not passed to instantiate: Hydra would turn the dataclass into a DictConfig.
    network = instantiate(cfg.model.network, _partial_=True)(task=task)
    trained_tokenizer = tokenizer is not None and not cfg.model.tokenizer.get("name_or_path")
    return EmotionClassifier(
        network,
        classes,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None,
        backbone_lr=cfg.model.get("backbone_lr"),
        label_smoothing=cfg.model.get("label_smoothing", 0.0),
        hparams=OmegaConf.to_container(cfg, resolve=True),
        extra_checkpoint_state={
            "tokenizer": tokenizer_to_json(tokenizer) if trained_tokenizer else None
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
