"""Config mistakes Hydra lets through are one clear error, before the heavy imports."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import open_dict

from emoclip.cli.config_checks import (
    check_gpu_available,
    check_target_parameters,
    check_value_types,
    unread_added_keys,
)
from emoclip.cli.entry import config_dir, expand_home
from emoclip.errors import ConfigError

CONF = Path(config_dir())


@contextlib.contextmanager
def hydra_job(overrides: list[str], config_name: str = "train"):
    """The job config as Hydra hands it to the task function, with HydraConfig set."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            yield cfg
        finally:
            HydraConfig.instance().cfg = None


def check(overrides: list[str], config_name: str = "train") -> None:
    with hydra_job(overrides, config_name) as cfg:
        check_target_parameters(cfg, unread_added_keys(cfg))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # Hydra's own advice for `data.dataset.text_column=...` on the synthetic set; followed,
        # it would train on the synthetic set as if nothing had been said.
        (
            ["+data.dataset.text_column=post"],
            r"data.dataset.text_column is read by data=[a-z_|]*text_table[a-z_|]*, not by "
            r"data=synthetic.*`data=\w+ data.dataset.text_column=post`",
        ),
        (
            ["model=text_lstm", "+model.network.unimodal_loss_weight=1"],
            r"model.network.unimodal_loss_weight is read by model=clip_fusion, not by "
            r"model=text_lstm",
        ),
        (["+model.fusion.num_heads=2"], r"read by model/fusion=cross_attention, not by .*concat"),
        (["+sed=1"], r"sed: nothing reads this key.*did you mean seed\?"),
        (["+data.dataset.sede=1"], r"data.dataset.sede: .*takes no 'sede'.*did you mean seed\?"),
        (["+trainer.max_epoch=3"], r"lightning.pytorch.Trainer, which takes no 'max_epoch'"),
        (["+model.backbone.colour=1"], r"model.backbone.colour: nothing reads this key"),
    ],
)
def test_an_added_key_that_nothing_reads_is_an_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check(overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["+trainer.num_sanity_val_steps=0"],  # a Trainer parameter the configs leave out
        ["++trainer.max_epochs=3"],  # ++ on a key that is there: an ordinary override
        ["data=dair_emotion", "data.root=/data/dair", "model=text_lstm"],
        ["+callbacks.early_stopping.min_delta=0.01"],  # a parameter of its node's _target_
    ],
)
def test_added_keys_that_are_read_pass(overrides):
    check(overrides)


def test_eval_checks_its_own_config():
    with pytest.raises(ConfigError, match="ckpt: nothing reads this key"):
        check(["+ckpt=x.ckpt"], config_name="eval")


@pytest.mark.parametrize("group", ["data", "model", "trainer"])
def test_base_configs_are_not_offered_as_choices(group, tmp_path):
    """`model=default` was offered by --help and failed with a 226-line traceback: the bases
    live outside the groups now (conf/base_<group>.yaml), and every option names its base."""
    options = {p.stem for p in (CONF / group).glob("*.yaml")}
    assert "default" not in options and (CONF / f"base_{group}.yaml").is_file()
    for path in (CONF / group).glob("*.yaml"):
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
        starts_from = [d for d in defaults if isinstance(d, str) and d != "_self_"]
        assert starts_from, f"{path} has no base in its defaults"
        bases = (f"/base_{group}@_here_", f"/base_{group}@_global_.{group}")  # a source: at data
        assert starts_from[0] in (*bases, *options), path
    with (
        initialize_config_dir(str(CONF), version_base="1.3"),
        pytest.raises(HydraException, match=f"Could not find '{group}/default'"),
    ):
        compose("train", overrides=[f"{group}=default"])


LIGHT_ENTRY = """
import runpy, sys
for module, *args in ({runs}):
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as done:
        print(module, "->", done.code, flush=True)
heavy = [m for m in ("torch", "lightning", "transformers", "matplotlib") if m in sys.modules]
print("heavy modules imported:", heavy)
"""


def test_config_errors_come_before_the_heavy_imports(tmp_path):
    """Each entry's config error is printed before torch, Lightning or transformers load."""
    runs = [
        ("emoclip.train", "+data.dataset.text_column=x", f"hydra.run.dir={tmp_path}/train"),
        ("emoclip.evaluate", "+ckpt=x", f"hydra.run.dir={tmp_path}/eval"),
        ("emoclip.explain", "+ckpt=x", f"hydra.run.dir={tmp_path}/explain"),
        ("emoclip.predict", "+ckpt=x"),
    ]
    result = subprocess.run(
        [sys.executable, "-c", LIGHT_ENTRY.format(runs=repr(runs))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("emoclip.train -> emoclip: data.dataset.text_column is read by")
    for line, module in zip(lines[1:4], ("evaluate", "explain", "predict"), strict=True):
        assert line.startswith(f"emoclip.{module} -> emoclip: ckpt: nothing reads this key")
    assert lines[-1] == "heavy modules imported: []"
    # A refused command writes nothing anywhere: no train.log, no run folder left behind.
    assert not (tmp_path / "train").exists()
    assert not (tmp_path / "eval").exists() and not (tmp_path / "explain").exists()


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["trainer.max_epochs=2.5"],
            "trainer.max_epochs=2.5: expected a whole number, got a decimal number",
        ),
        (
            ["data.batch_size=3.5"],
            "data.batch_size=3.5: expected a whole number, got a decimal number",
        ),
        (["data.batch_size=abc"], "data.batch_size=abc: expected a whole number, got text"),
        (["seed=1.5"], "seed=1.5: expected a whole number, got a decimal number"),
        (["model.optimizer.lr=fast"], "model.optimizer.lr=fast: expected a number, got text"),
        (["data.skip_bad=1"], "data.skip_bad=1: expected true or false, got a whole number"),
        (["data.batch_size=null"], "data.batch_size=null: expected a whole number, got null"),
    ],
)
def test_a_value_of_the_wrong_kind_is_one_line_naming_the_key_the_value_and_the_kind(
    overrides, line
):
    with hydra_job(overrides) as cfg, pytest.raises(ConfigError) as refusal:
        check_value_types(cfg)
    assert str(refusal.value) == line


def test_values_of_the_right_kind_pass():
    right = ["trainer.max_epochs=3", "model.optimizer.lr=1", "data.eval_batch_size=null"]
    with hydra_job(right) as cfg:
        check_value_types(cfg)


@pytest.mark.parametrize(
    ("overrides", "config_name", "line"),
    [
        (
            ["trainer=gpu"],
            "train",
            "trainer.accelerator=gpu asks for a CUDA GPU and this machine "
            "has none that torch can use: run on the CPU with trainer=cpu",
        ),
        (
            ["device=cuda"],
            "explain",
            "device=cuda asks for a CUDA GPU and this machine has none "
            "that torch can use: run on the CPU with device=cpu",
        ),
    ],
)
def test_a_gpu_asked_for_where_there_is_none_names_the_cpu_choice(overrides, config_name, line):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with hydra_job(overrides, config_name) as cfg, pytest.raises(ConfigError) as refusal:
        check_gpu_available(cfg)
    assert str(refusal.value) == line


def test_a_home_path_is_expanded_before_hydra_reads_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_home("data.root=~/faces") == f"data.root={tmp_path}/faces"
    assert expand_home("hydra.run.dir=~") == f"hydra.run.dir={tmp_path}"
    assert expand_home("data.root=a~b") == "data.root=a~b"  # not a home path
    assert expand_home("--cfg") == "--cfg"
    monkeypatch.setenv("HOME", str(tmp_path / "my faces"))  # a space: quoted for Hydra
    expanded = expand_home("data.root=~/x")
    assert expanded == f"data.root='{tmp_path}/my faces/x'"
    with hydra_job(["data=dair_emotion", expanded]) as cfg:
        assert cfg.data.root == f"{tmp_path}/my faces/x"


@pytest.mark.parametrize(
    ("slip", "where", "line"),
    [
        (
            "data.batch_size=3.5",
            "hydra.run.dir={tmp}/run",
            "expected a whole number, got a decimal number",
        ),
        (
            "seed=1.5",
            "paths.output_root={tmp}/out",
            "expected a whole number, got a decimal number",
        ),
    ],
)
def test_a_type_slip_on_the_command_line_is_one_line_and_leaves_no_folder(
    slip, where, line, tmp_path
):
    # hydra.run.dir: the run folder named; paths.output_root: the date folder made for it too.
    result = subprocess.run(
        [sys.executable, "-m", "emoclip.train", slip, where.format(tmp=tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"emoclip: {slip}: {line}"]
    assert list(tmp_path.iterdir()) == []  # a refusal leaves no folder behind


def test_each_entrys_help_says_what_it_does(tmp_path):
    for module, first in (
        ("emoclip.train", "emoclip-train: train a study"),
        ("emoclip.evaluate", "emoclip-eval: test a trained checkpoint"),
        ("emoclip.predict", "emoclip-predict: print the emotion"),
        ("emoclip.explain", "emoclip-explain: Integrated Gradients maps"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.startswith(first), result.stdout[:300]
        assert "powered by Hydra" not in result.stdout
    assert list(tmp_path.iterdir()) == []  # --help makes no run folder
