"""Checkpoints written before towers existed (ClipFusion, TextLSTM and ImageCNN as networks of
their own): their stored config and parameter names, rewritten in today's layout, so that
`emoclip-eval`, `emoclip-predict` and `emoclip-explain` load them. The weights are the same
numbers under new names; nothing is retrained or approximated.
"""

from __future__ import annotations

import copy
from pathlib import Path

from emoclip.errors import ConfigError
from emoclip.models.old_parameters import REBUILD, upgrade_state_dict

CLIP_FUSION = "emoclip.models.clip_fusion.ClipFusion"
TEXT_LSTM = "emoclip.models.text_lstm.TextLSTM"
IMAGE_CNN = "emoclip.models.image_cnn.ImageCNN"
TOWER_FUSION = "emoclip.models.tower_fusion.TowerFusion"


def upgrade_checkpoint(checkpoint: dict, path: str | Path) -> dict:
    """The checkpoint with its model config and weights in today's layout (a copy, if it was
    written by an earlier emoclip; else the checkpoint itself)."""
    model = checkpoint["hyper_parameters"].get("model") or {}
    target = (model.get("network") or {}).get("_target_")
    upgrade = {CLIP_FUSION: _clip_fusion, TEXT_LSTM: _text_lstm, IMAGE_CNN: _image_cnn}.get(target)
    if upgrade is None:
        return checkpoint
    checkpoint = dict(checkpoint)
    hparams = copy.deepcopy(checkpoint["hyper_parameters"])
    try:
        hparams["data"] = upgrade_data(hparams.get("data") or {})
        hparams["model"] = upgrade(hparams["model"], hparams["data"])
    except (KeyError, TypeError, AttributeError) as err:
        raise ConfigError(
            f"{path} was written by an earlier emoclip ({target}) and its config cannot be "
            f"read as today's (no {err}); {REBUILD}"
        ) from err
    # How the old run was trained (its callbacks and loggers named classes since renamed) is
    # not part of its study: today's shipped defaults stand in (emoclip.study.stored_study).
    for key in ("trainer", "callbacks", "logger"):
        hparams.pop(key, None)
    checkpoint["hyper_parameters"] = hparams
    checkpoint["state_dict"] = upgrade_state_dict(checkpoint["state_dict"])
    return checkpoint


# Data sources before each had its module (emoclip/data/sources/): the synthetic set is the
# same set under its new name; the others were read from folders by keys that are gone.
OLD_SYNTHETIC = "emoclip.data.synthetic.SyntheticEmotions"
OLD_SOURCE_MODULES = ("emoclip.data.sources", "emoclip.data.synthetic")  # today: packages
OLD_DATA_KEYS = ("image_root", "text_root", "manifest")


def upgrade_data(data: dict) -> dict:
    """A data config of the layout before data sources, in today's (a copy); today's unchanged."""
    dataset = data.get("dataset") or {}
    target = str(dataset.get("_target_", ""))
    if target.rpartition(".")[0] not in OLD_SOURCE_MODULES:
        return data
    data = {k: v for k, v in data.items() if k not in OLD_DATA_KEYS}
    if target == OLD_SYNTHETIC:
        data["dataset"] = {
            **dataset,
            "_target_": "emoclip.data.sources.synthetic.SyntheticEmotions",
            "name": "synthetic",
        }
    else:
        data["dataset"] = {"_target_": f"{__name__}.{old_data_source.__name__}", "source": target}
    return data


def old_data_source(source: str):
    """Stands in for a data source of an earlier emoclip: its data cannot be read again from the
    checkpoint's config, but another data config can be given."""
    raise ConfigError(
        f"this checkpoint was written by an earlier emoclip, whose data source {source} is read "
        "differently today: evaluate it with emoclip-eval ckpt_path=... data=<source> "
        "data.root=<folder> (emoclip-predict needs no data); or " + REBUILD
    )


def _tower_fusion(old: dict, **towers) -> dict:
    return {
        "_target_": TOWER_FUSION,
        "text_tower": towers.get("text"),
        "image_tower": towers.get("image"),
        "fusion": old.get("fusion")
        or {"_target_": "emoclip.models.fusion.ConcatFusion", "_partial_": True},
        "hidden_size": old["hidden_size"],
        "dropout": old["dropout"],
        "finetune": "full",  # towers trained with the head (ClipFusion's own mode replaces it)
    }


def _clip_fusion(model: dict, data: dict) -> dict:
    old = model["network"]
    trained = set(old.get("finetune_towers", ("text", "image")))
    mode = old.get("finetune", "full")
    own_mode = {m: (None if m in trained else "frozen") for m in ("text", "image")}
    text = {
        "_target_": "emoclip.models.towers.clip.ClipTextTower",
        "_partial_": True,
        "backbone": old["backbone"],
        "finetune": own_mode["text"],
    }
    image = {
        "_target_": "emoclip.models.towers.clip.ClipImageTower",
        "_partial_": True,
        "backbone": old["backbone"],
        "normalization": data.get("normalization", "half"),
        "finetune": own_mode["image"],
    }
    network = _tower_fusion(old, text=text, image=image)
    network.update(
        finetune=mode,
        trainable_layers=old.get("trainable_layers", 2),
        lora=old.get("lora"),
        gradient_checkpointing=old.get("gradient_checkpointing", False),
        # Encoders left out of finetune_towers ran on every batch, uncached.
        cache_frozen_towers=mode == "frozen",
        modality_dropout=old.get("modality_dropout", 0.0),
        unimodal_loss_weight=old.get("unimodal_loss_weight", 0.0),
    )
    return {**model, "text_tower": text, "image_tower": image, "network": network}


def _text_lstm(model: dict, data: dict) -> dict:
    old = model["network"]
    text = {
        "_target_": "emoclip.models.towers.lstm.LSTMTextTower",
        "_partial_": True,
        "embed_dim": old["embed_dim"],
        "hidden_size": old["hidden_size"],
        "num_layers": old["num_layers"],
        "bidirectional": old["bidirectional"],
        "dropout": old["dropout"],
        "tokenizer": model.get("tokenizer"),
    }
    network = _tower_fusion({**old, "hidden_size": old["head_hidden_size"]}, text=text)
    return {**model, "text_tower": text, "image_tower": None, "network": network}


def _image_cnn(model: dict, data: dict) -> dict:
    old = model["network"]
    image = {
        "_target_": "emoclip.models.towers.cnn.CNNImageTower",
        "_partial_": True,
        "image_size": model["image_size"],
        "normalization": data.get("normalization", "half"),
        "channels": old["channels"],
        "pooled_grid": old["pooled_grid"],
    }
    network = _tower_fusion({**old, "hidden_size": old["head_hidden_size"]}, image=image)
    return {**model, "text_tower": None, "image_tower": image, "network": network}
