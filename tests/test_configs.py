"""Every config in conf/ composes, and every value resolves."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from emoclip.cli import run_reporting_errors
from emoclip.study import config_dir
from emoclip.train import train
from tests.conftest import compose_train

CONF = Path(config_dir())
GROUPS = {
    group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    for group in (
        "data",
        "model",
        "trainer",
        "callbacks",
        "logger",
        "debug",
        "experiment",
        "hparams_search",
    )
}
OPTIONS = [(group, name) for group, names in GROUPS.items() for name in names]
OPTIONS += [
    (f"model/{group}", p.stem)
    for group in ("backbone", "fusion", "finetune")
    for p in (CONF / "model" / group).glob("*.yaml")
]


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_option_composes_and_resolves(group, name, tmp_path):
    cfg = compose_train([f"{group}={name}"], tmp_path)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["paths"]["output_dir"] == str(tmp_path)
    assert container["model"]["name"]


def test_default_study_is_clip_fusion_with_tiny_clip_on_synthetic(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.model.name == "clip_fusion"
    assert cfg.model.backbone.name_or_path is None  # the config-defined tiny CLIP
    assert cfg.data.name == "synthetic"
    assert cfg.trainer.accelerator == "cpu"


def test_eval_config_composes():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=["ckpt_path=x.ckpt", "paths.output_dir=/tmp/e"])
    assert cfg.ckpt_path == "x.ckpt"


@pytest.mark.parametrize(
    ("override", "hydra_says"),
    [
        ("model.no_such_key=1", "Could not override 'model.no_such_key'"),
        ("model=no_such_model", "Could not find 'model/no_such_model'.*Available options"),
    ],
)
def test_unknown_key_or_option_fails_at_composition_with_hydras_message(
    override, hydra_says, tmp_path
):
    with pytest.raises(HydraException, match=f"(?s){hydra_says}"):
        compose_train([override], tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data=ckplus", "data.image_root=/no/such/folder", "data.num_folds=5", "data.fold=5"],
            r"data.fold=5 is out of range for data.num_folds=5; expected 0..4",
        ),
        (["data.classes=[anger,grumpy]"], r"unknown emotion label 'grumpy' in data.classes"),
        (
            [
                "model=text_lstm",
                "data=dair_emotion",
                "data.text_root=/no/such/folder",
                "data.classes=[anger,grumpy]",
            ],
            r"unknown emotion label 'grumpy' in data.classes\. Known labels: anger",
        ),
    ],
)
def test_bad_config_values_stop_before_any_work(overrides, message, tmp_path):
    cfg = compose_train(overrides, tmp_path)
    with pytest.raises(SystemExit, match=f"^emoclip: .*{message}"):
        run_reporting_errors(lambda: train(cfg))
    assert list(tmp_path.iterdir()) == []  # no data read (the folders do not exist), no files


def test_precision_auto_picks_bf16_only_where_the_gpu_has_it(monkeypatch):
    import torch

    from emoclip.study import resolve_precision

    assert resolve_precision("16-mixed", "gpu") == "16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"
