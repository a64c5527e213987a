"""Train a study: `python -m emoclip.train [overrides]` or `emoclip-train [overrides]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from emoclip import tracking
from emoclip.cli import run_reporting_errors
from emoclip.resume import plan_resume
from emoclip.run_folder import flat_metrics, summary, write_results, write_versions
from emoclip.study import build_study, build_trainer, config_dir, prepare_process
from emoclip.sweep import check_launchable

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit, then validate and test the best checkpoint; write the run folder; return metrics."""
    run_dir = Path(cfg.paths.output_dir)
    resume = plan_resume(cfg)
    if resume.finished is not None:
        print(summary(run_dir, resume.finished), flush=True)
        return resume.finished
    prepare_process(cfg.seed)
    tracking.group_by_sweep(cfg)
    trainer = build_trainer(cfg)
    check_launchable(trainer)
    study = build_study(cfg)
    rank_zero_only(write_versions)(run_dir)
    earlier_rows = {}
    if resume.in_place:
        earlier_rows = tracking.csv_rows_before(trainer.loggers, resume.global_step)
    try:
        trainer.fit(study.module, datamodule=study.datamodule, ckpt_path=resume.checkpoint)
        history = list(study.module.history)  # loading the best checkpoint below rewinds it

        checkpoint = trainer.checkpoint_callback  # the first one: best.ckpt
        best = (checkpoint.best_model_path or None) if checkpoint is not None else None
        trainer.validate(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
        trainer.test(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
        if not trainer.is_global_zero:
            # Under DDP every rank holds the metrics of the whole split (torchmetrics syncs
            # them); rank 0 alone writes the run folder.
            metrics = flat_metrics(study.datamodule.classes, study.module.results)
            scores = summary(run_dir, metrics).split("\n", 1)[1]  # without the run folder line
            log.info("rank %d (rank 0 writes the run folder):\n%s", trainer.global_rank, scores)
            return metrics
        metrics = write_results(
            run_dir,
            study.datamodule.classes,
            study.module.results,
            history=history,
            split_ids=study.datamodule.split_ids(),
        )
        tracking.put_back_csv_rows(earlier_rows)
        tracking.publish_results(trainer.loggers, run_dir, metrics)
    finally:
        tracking.finish(trainer.loggers)
    print(summary(run_dir, metrics), flush=True)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_reporting_errors(lambda: train(cfg))
    return metrics.get(cfg.get("monitor"))


if __name__ == "__main__":
    main()
