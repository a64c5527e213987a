"""Train a study: `python -m emoclip.train [overrides]` or `emoclip-train [overrides]`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from emoclip.cli.entry import hydra_entry, run_entry
from emoclip.errors import ConfigError

if TYPE_CHECKING:  # the entry imports only what Hydra needs; the work imports the rest
    import lightning as L

    from emoclip.study.build import Study
    from emoclip.study.resume import Resume

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit, then validate and test the best checkpoint; write the run folder; return metrics.

    The run folder's rules (emoclip.runs.run_folder): everything that may refuse the run is checked
    before anything is written; the folder is locked while this run writes it; metrics.json is
    written last and says how the run ended."""
    from lightning.pytorch.utilities import rank_zero_only

    from emoclip.output import floor
    from emoclip.runs import tracking
    from emoclip.runs.early_stopping import small_validation_warning
    from emoclip.runs.run_folder import RunFolder, summary
    from emoclip.runs.sweep import check_launchable
    from emoclip.study.build import build_study, build_trainer, prepare_process
    from emoclip.study.resume import plan_resume
    from emoclip.study.trust import Trust

    run_dir = Path(cfg.paths.output_dir)
    folder = RunFolder(run_dir, entry="train", writes=rank_zero_only.rank == 0)
    with folder.session():
        check_trainable(cfg)
        resume = plan_resume(cfg, Trust.from_entry(cfg))
        if resume.finished is not None:
            from emoclip.runs.console import start_job_log
            from emoclip.runs.run_folder import refuse_links

            refuse_links(run_dir)
            start_job_log()  # its own folder: the log says the run was found finished
            print(summary(run_dir, resume.finished), flush=True)
            return resume.finished
        folder.claim(continuing=resume.in_place)
        prepare_process(cfg.seed)
        tracking.group_by_sweep(cfg)
        study = build_study(cfg)
        trainer = build_trainer(cfg, study_callbacks=study.callbacks)
        check_launchable(trainer)
        warning = small_validation_warning(
            cfg, len(study.datamodule.load_records()["val"]), len(study.datamodule.classes)
        )
        if warning and not study.module.network.fitted_in_one_pass:
            log.warning(warning)
        folder.begin(cfg, starting_over=resume.in_place and resume.checkpoint is None)
        metrics = fit_and_record(study, trainer, resume, run_dir)
    if trainer.is_global_zero:
        print(summary(run_dir, metrics), flush=True)
        floor.warn_if_degenerate(metrics)
    return metrics


def check_trainable(cfg: DictConfig) -> None:
    from emoclip.study.build import is_training_free

    if is_training_free(cfg.model):
        raise ConfigError(
            f"model={cfg.model.name} is not trained: evaluate it with "
            f"emoclip-eval model={cfg.model.name} data={cfg.data.name}"
        )
    lr = cfg.model.get("optimizer", {}).get("lr") if cfg.model.get("optimizer") else None
    if isinstance(lr, int | float) and not isinstance(lr, bool) and not lr > 0:
        raise ConfigError(f"model.optimizer.lr={lr}: expected a learning rate above 0")
    if cfg.trainer.get("fast_dev_run"):
        return
    max_epochs, max_steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps", -1)
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise ConfigError(
            f"trainer.max_epochs={max_epochs}: nothing would be trained; expected 1 or more "
            "(or -1 with trainer.max_steps)"
        )
    if max_steps is not None and (max_steps == 0 or max_steps < -1):
        raise ConfigError(f"trainer.max_steps={max_steps}: expected 1 or more, or -1 (no limit)")


def fit_and_record(study: Study, trainer: L.Trainer, resume: Resume, run_dir: Path) -> dict:
    """Train, test, and (rank 0) write the run folder's results; return the metrics."""
    from emoclip.output import floor
    from emoclip.runs import tracking
    from emoclip.runs.run_folder import flat_metrics, summary, write_results
    from emoclip.system.checkpoint_io import checkpoint_identity

    earlier_rows = {}
    if resume.in_place:
        earlier_rows = tracking.csv_rows_before(trainer.loggers, resume.global_step)
    try:
        if study.module.network.fitted_in_one_pass:  # by its own method, on frozen features
            history, extra = [], fit_on_frozen_features(study, trainer, run_dir)
            best = run_dir / "checkpoints" / "best.ckpt"
        else:
            history, best = fit_by_gradient(study, trainer, resume)
            extra = {}
        if not trainer.is_global_zero:
            # Under DDP every rank holds the metrics of the whole split (torchmetrics syncs
            # them); rank 0 alone writes the run folder.
            metrics = flat_metrics(study.datamodule.classes, study.module.results)
            scores = summary(run_dir, metrics).split("\n", 1)[1]  # without the run folder line
            log.info("rank %d (rank 0 writes the run folder):\n%s", trainer.global_rank, scores)
            return metrics
        tracking.put_back_csv_rows(earlier_rows)
        described = {
            "checkpoint": checkpoint_identity(best, relative_to=run_dir) if best else None,
            "fast_dev_run": bool(trainer.fast_dev_run),
            **floor.assess(
                study.module.results, study.datamodule.load_records(), study.datamodule.classes
            ),
        }
        metrics = write_results(
            run_dir,
            study.datamodule.classes,
            {**study.module.results, **extra},
            history=history,
            split_ids=study.datamodule.split_ids(),
            extra=described,
        )
        tracking.publish_results(trainer.loggers, run_dir, metrics)
        # A Ctrl-C'd run's checkpoint is spent once the run has finished.
        (run_dir / "checkpoints" / "interrupted.ckpt").unlink(missing_ok=True)
    finally:
        tracking.finish(trainer.loggers)
    return metrics


def fit_by_gradient(
    study: Study, trainer: L.Trainer, resume: Resume
) -> tuple[list[dict], Path | None]:
    """Lightning's fit, then validate and test the best checkpoint; the per-epoch history and
    the best checkpoint (None without checkpoints: the last weights were tested)."""
    trainer.fit(study.module, datamodule=study.datamodule, ckpt_path=resume.checkpoint)
    history = list(study.module.history)  # loading the best checkpoint below rewinds it
    checkpoint = trainer.checkpoint_callback  # the first one: best.ckpt
    best = (checkpoint.best_model_path or None) if checkpoint is not None else None
    trainer.validate(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
    trainer.test(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
    return history, Path(best) if best else None


def fit_on_frozen_features(study: Study, trainer: L.Trainer, run_dir: Path) -> dict:
    """A model fitted in one pass on frozen features (the linear probe), not by epochs of
    gradient steps: fit, validate, test, and save it as checkpoints/best.ckpt."""
    selection = study.module.network.fit(study.datamodule, trainer.strategy.root_device)
    log.info("linear probe: C=%g chosen on the validation split", selection["probe/C"])
    trainer.validate(study.module, datamodule=study.datamodule, verbose=False)
    trainer.test(study.module, datamodule=study.datamodule, verbose=False)
    trainer.save_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    return {"probe": selection}


# The default study (conf/experiment/demo.yaml): `emoclip-train` runs it, as `make train` does,
# unless the command line chooses a model, data, experiment or checkpoint (cli.chooses_a_study):
# `emoclip-train seed=1` is the demo with seed 1; `emoclip-train model=clip_fusion` is the
# report's own model.
DEFAULT_STUDY = ("experiment=demo",)


@hydra_entry("train", default_study=DEFAULT_STUDY)
def main(cfg: DictConfig) -> float | None:
    metrics = run_entry(cfg, lambda: train(cfg))
    return metrics.get(cfg.get("monitor"))


if __name__ == "__main__":
    main()
