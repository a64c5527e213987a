"""Evaluate a checkpoint on the test split of the study it was trained on:
`python -m emoclip.evaluate ckpt_path=PATH` or `emoclip-eval ckpt_path=PATH`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from emoclip.cli import run_reporting_errors
from emoclip.errors import ConfigError
from emoclip.run_folder import summary, write_results
from emoclip.study import build_study, build_trainer, config_dir, prepare_process

log = logging.getLogger(__name__)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r} is not a file")
    # weights_only: a checkpoint is data; never run pickled code from it.
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "emoclip" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ConfigError(f"{path} is not an emoclip checkpoint (no study config inside)")
    return checkpoint


def evaluate(cfg: DictConfig) -> dict:
    checkpoint = load_checkpoint(cfg.ckpt_path)
    study_cfg = OmegaConf.create(checkpoint["hyper_parameters"])
    study_cfg.merge_with_dotlist(list(cfg.get("study_overrides") or []))
    prepare_process(study_cfg.seed)
    study = build_study(study_cfg, saved_tokenizer=checkpoint["emoclip"].get("tokenizer"))
    study.module.load_state_dict(checkpoint["state_dict"])
    trainer = build_trainer(
        cfg, with_callbacks=False, with_loggers=False, study_callbacks=study.callbacks
    )
    trainer.test(study.module, datamodule=study.datamodule, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    metrics = write_results(run_dir, study.datamodule.classes, study.module.results)
    print(summary(run_dir, metrics), flush=True)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
