"""Train a study: `python -m emoclip.train [overrides]` or `emoclip-train [overrides]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from emoclip.cli import run_reporting_errors
from emoclip.errors import ConfigError
from emoclip.run_folder import summary, write_results
from emoclip.study import (
    Study,
    build_study,
    build_trainer,
    config_dir,
    is_training_free,
    prepare_process,
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit, then validate and test the best checkpoint; write the run folder; return metrics."""
    if is_training_free(cfg.model):
        raise ConfigError(
            f"model={cfg.model.name} is not trained: evaluate it with "
            f"emoclip-eval model={cfg.model.name} data={cfg.data.name}"
        )
    prepare_process(cfg.seed)
    run_dir = Path(cfg.paths.output_dir)
    study = build_study(cfg)
    network = study.module.network
    trainer = build_trainer(cfg)
    if hasattr(network, "fit"):  # fitted by its own method, on frozen features
        history, extra = [], fit_on_frozen_features(study, trainer, run_dir)
    else:
        history, extra = fit_by_gradient(study, trainer, cfg.get("ckpt_path")), {}
    metrics = write_results(
        run_dir,
        study.datamodule.classes,
        {**study.module.results, **extra},
        history=history,
        split_ids=study.datamodule.split_ids(),
    )
    print(summary(run_dir, metrics), flush=True)
    return metrics


def fit_by_gradient(study: Study, trainer: L.Trainer, resume_from: str | None) -> list[dict]:
    """Lightning's fit, then validate and test the best checkpoint; the per-epoch history."""
    trainer.fit(study.module, datamodule=study.datamodule, ckpt_path=resume_from)
    history = list(study.module.history)  # loading the best checkpoint below rewinds it
    checkpoint = trainer.checkpoint_callback
    best = "best" if checkpoint is not None and checkpoint.best_model_path else None
    trainer.validate(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
    trainer.test(study.module, datamodule=study.datamodule, ckpt_path=best, verbose=False)
    return history


def fit_on_frozen_features(study: Study, trainer: L.Trainer, run_dir: Path) -> dict:
    """A model fitted in one pass on frozen features (the linear probe), not by epochs of
    gradient steps: fit, validate, test, and save it as checkpoints/best.ckpt."""
    selection = study.module.network.fit(study.datamodule, trainer.strategy.root_device)
    log.info("linear probe: C=%g chosen on the validation split", selection["probe/C"])
    trainer.validate(study.module, datamodule=study.datamodule, verbose=False)
    trainer.test(study.module, datamodule=study.datamodule, verbose=False)
    trainer.save_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    return {"probe": selection}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_reporting_errors(lambda: train(cfg))
    return metrics.get(cfg.get("monitor"))


if __name__ == "__main__":
    main()
