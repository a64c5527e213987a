"""Evaluate a trained model on another data set:

    emoclip-eval ckpt_path=PATH data=<source> data.root=FOLDER

The model keeps its own preprocessing (tokenizer, image size, normalisation) and its classes;
the data's labels are matched to them by name in one label space. Examples of classes the
model lacks are dropped and counted; the model's classes the data lacks are listed.

What is scored (`cross_dataset_split`): `all`, every example of the other set (the model never
saw any of it: all of it is test data), or `test`, only the test part of the split the source's
protocol gives (its own, or grouped by emoclip). Left null: `all` for another data set, `test`
for the data set the model was trained on (the rest of it was trained on). metrics.json
records the protocol as "cross-dataset", what was scored and how many, and what was dropped.
"""

from __future__ import annotations

import logging
from collections import Counter

from omegaconf import DictConfig, OmegaConf

from emoclip.errors import ConfigError
from emoclip.study.build import Study, build_study, prepare_process
from emoclip.study.restore import load_checkpoint, load_weights, saved_label_space, study_config
from emoclip.study.trust import GUARD_ONLY, Trust

log = logging.getLogger(__name__)


def cross_dataset_study(cfg: DictConfig, trust: Trust = GUARD_ONLY) -> tuple[Study, dict]:
    """The checkpoint's model with the data of `cfg.data`; and what metrics.json records."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    trained = study_config(checkpoint, cfg.ckpt_path, trust=trust, paths=cfg.paths)
    model_space = saved_label_space(checkpoint)
    study_cfg = OmegaConf.create(
        {
            **OmegaConf.to_container(trained, resolve=False),
            "paths": OmegaConf.to_container(cfg.paths, resolve=False),
            "data": OmegaConf.to_container(cfg.data, resolve=False),
        }
    )
    # The model's own preprocessing and modalities, whatever the new data config says.
    for key in ("modalities", "image_size", "normalization"):
        study_cfg.data[key] = trained.data[key]
    study_cfg.data.model_label_space = model_space
    prepare_process(trained.seed)
    study = build_study(study_cfg, saved_tokenizer=checkpoint["emoclip"].get("tokenizer"))
    load_weights(study.module, checkpoint, cfg.ckpt_path)
    scored = scored_part(cfg.get("cross_dataset_split"), trained, study)
    return study, describe(study, trained, cfg, scored)


def scored_part(setting: str | None, trained: DictConfig, study: Study) -> str:
    """What of the other set is scored: `all` (its every example becomes the test split) or
    `test` (its split's test part)."""
    same_data = trained.data.get("name") == study.datamodule.name
    scored = setting or ("test" if same_data else "all")
    if scored not in ("all", "test"):
        raise ConfigError(f"cross_dataset_split={setting!r}: expected all, test, or null")
    if scored == "all":
        if same_data:
            log.warning(
                "cross_dataset_split=all on data=%s, the data set the model was trained on: "
                "its training examples are scored too",
                study.datamodule.name,
            )
        records = study.datamodule.load_records()
        every = [r for split in ("train", "val", "test") for r in records[split]]
        records.update({"train": [], "val": [], "test": every})
    return scored


def describe(study: Study, trained: DictConfig, cfg: DictConfig, scored: str) -> dict:
    datamodule = study.datamodule
    tested = Counter(r.label for r in datamodule.records["test"])
    if scored == "all":
        dropped = Counter()
        for counts in datamodule.notes["dropped"].values():
            dropped.update(counts)
        dropped = dict(sorted(dropped.items()))
    else:
        dropped = datamodule.notes["dropped"].get("test", {})
    absent = [c for c in datamodule.classes if not tested[c]]
    if dropped:
        log.warning(
            "%s: the model has no class for %s test examples (%s): dropped",
            datamodule.name,
            sum(dropped.values()),
            ", ".join(f"{label} {n}" for label, n in dropped.items()),
        )
    if absent:
        log.warning(
            "%s: the test split has no examples of the model's classes %s (their F1 is 0 if the "
            "model predicts them)",
            datamodule.name,
            ", ".join(absent),
        )
    if trained.data.get("name") == datamodule.name and scored == "test":
        log.warning(
            "data=%s is the data set the model was trained on (trained at %s): only its test "
            "split with the training run's split settings is unseen by the model",
            datamodule.name,
            trained.data.get("root"),
        )
    return {
        "protocol": "cross-dataset",
        "cross_dataset": {
            "checkpoint": str(cfg.ckpt_path),
            "trained_on": trained.data.get("name"),
            "evaluated_on": datamodule.name,
            "root": str(datamodule.root),
            "label_space": datamodule.label_space.name,
            # all: every example of the set; test: its split's test part
            "scored": scored,
            "test_examples": sum(tested.values()),
            "dropped_classes": dropped,
            "classes_absent_from_data": absent,
        },
    }
