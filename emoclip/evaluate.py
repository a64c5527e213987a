"""Evaluate a model on a test split and write the run folder:

- a trained checkpoint on its own study: `emoclip-eval ckpt_path=PATH`
- a trained checkpoint on another data set: `emoclip-eval ckpt_path=PATH data=NAME data.root=...`
- a model that needs no training on any data: `emoclip-eval model=clip_zeroshot data=synthetic`
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from emoclip.cli.entry import hydra_entry, run_entry
from emoclip.errors import ConfigError

if TYPE_CHECKING:  # the entry imports only what Hydra needs; the work imports the rest
    from emoclip.study.build import Study

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    from emoclip.output import floor
    from emoclip.runs.run_folder import RunFolder, checkpoint_disagreement, summary, write_results
    from emoclip.study.build import build_trainer
    from emoclip.study.cross_dataset import cross_dataset_study
    from emoclip.study.restore import here, restore_study
    from emoclip.study.trust import Trust
    from emoclip.system.checkpoint_io import checkpoint_identity

    run_dir = Path(cfg.paths.output_dir)
    folder = RunFolder(run_dir, entry="eval")
    note = None
    with folder.session():
        trust = Trust.from_entry(cfg)
        if cfg.get("ckpt_path") and cfg.get("model") is not None:
            raise ConfigError(
                "give ckpt_path or model=, not both: a checkpoint carries its own model and "
                "data config (change them with study_overrides)"
            )
        folder.claim()
        if cfg.get("ckpt_path"):
            evaluated = checkpoint_identity(cfg.ckpt_path)
            note = checkpoint_disagreement(Path(cfg.ckpt_path), evaluated)
            extra = {"checkpoint": evaluated}
            if cfg.get("data") is not None:
                if cfg.get("study_overrides"):
                    raise ConfigError(
                        "give data= (another data set) or study_overrides (the checkpoint's own "
                        "study), not both"
                    )
                study, cross = cross_dataset_study(cfg, trust)
                split_ids = study.datamodule.split_ids()
                extra.update(cross)
            else:
                overrides = [*here(cfg), *(cfg.get("study_overrides") or [])]
                study, _ = restore_study(cfg.ckpt_path, overrides, trust, cfg.paths)
                split_ids = None
        else:
            study = training_free_study(cfg)
            split_ids, extra = study.datamodule.split_ids(), None
        trainer = build_trainer(
            cfg, with_callbacks=False, with_loggers=False, study_callbacks=study.callbacks
        )
        folder.begin(cfg)
        trainer.test(study.module, datamodule=study.datamodule, verbose=False)
        records, classes = study.datamodule.load_records(), study.datamodule.classes
        metrics = write_results(
            run_dir,
            classes,
            study.module.results,
            split_ids=split_ids,
            extra={**(extra or {}), **floor.assess(study.module.results, records, classes)},
        )
    print(summary(run_dir, metrics), flush=True)
    if cross := metrics.get("cross_dataset"):
        part = "every example" if cross["scored"] == "all" else "the test part of its split"
        print(
            f"cross-dataset: {cross['test_examples']} examples of data={cross['evaluated_on']} "
            f"scored ({part}: cross_dataset_split={cross['scored']})",
            flush=True,
        )
    floor.warn_if_degenerate(metrics)
    if note:
        log.warning(note)
        print(note, flush=True)
    return metrics


def training_free_study(cfg: DictConfig) -> Study:
    """The study of a model that is used as it comes (zero-shot CLIP): no checkpoint needed."""
    from emoclip.study.build import build_study, is_training_free, prepare_process

    if cfg.get("model") is None:
        raise ConfigError(
            "ckpt_path is not set: give ckpt_path=PATH (a trained checkpoint), or model= and "
            "data= for a model that needs no training (model=clip_zeroshot)"
        )
    if not is_training_free(cfg.model):
        raise ConfigError(
            f"model={cfg.model.name} has to be trained before it can be evaluated: run "
            f"emoclip-train model={cfg.model.name}, then emoclip-eval ckpt_path=<its checkpoint>"
        )
    if cfg.get("data") is None:
        raise ConfigError(f"model={cfg.model.name} needs data= (e.g. data=synthetic)")
    prepare_process(cfg.seed)
    return build_study(cfg)


@hydra_entry("eval")
def main(cfg: DictConfig) -> None:
    run_entry(cfg, lambda: evaluate(cfg), reads_checkpoint=True)


if __name__ == "__main__":
    main()
