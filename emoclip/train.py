"""Train a study: `python -m emoclip.train [overrides]` or `emoclip-train [overrides]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from emoclip.cli import run_reporting_errors
from emoclip.run_folder import summary, write_results
from emoclip.study import build_study, build_trainer, config_dir, prepare_process

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit, then validate and test the best checkpoint; write the run folder; return metrics."""
    prepare_process(cfg.seed)
    run_dir = Path(cfg.paths.output_dir)
    study = build_study(cfg)
    trainer = build_trainer(cfg, study_callbacks=study.callbacks)
    trainer.fit(study.module, datamodule=study.datamodule, ckpt_path=cfg.get("ckpt_path"))
    history = list(study.module.history)  # loading the best checkpoint below rewinds it

    checkpoint = trainer.checkpoint_callback
    best = "best" if checkpoint is not None and checkpoint.best_model_path else None
    trainer.validate(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
    trainer.test(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
    metrics = write_results(
        run_dir,
        study.datamodule.classes,
        study.module.results,
        history=history,
        split_ids=study.datamodule.split_ids(),
    )
    print(summary(run_dir, metrics), flush=True)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_reporting_errors(lambda: train(cfg))
    return metrics.get(cfg.get("monitor"))


if __name__ == "__main__":
    main()
