"""A config read from a file runs no code: a checkpoint or run folder carrying a chain of
`_target_`s (write a module, put its folder on sys.path, build a class from it) is refused by
every entry that reads one, before anything is written or imported."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from emoclip.errors import ConfigError
from emoclip.evaluate import evaluate
from emoclip.explain import explain
from emoclip.predict import predict
from emoclip.report import main as report_main
from emoclip.study import config_dir
from emoclip.train import train
from emoclip.trust import GUARD_ONLY, Trust, check_untrusted, target_refusal
from tests.conftest import QUIET, compose_train


class Chain:
    """Three `_target_` nodes that, instantiated in order, write a module, put its folder on
    sys.path and build a class from it (whose construction writes a marker file)."""

    def __init__(self, tmp_path: Path):
        self.folder = tmp_path / "payload"
        self.folder.mkdir()
        self.module = f"payload_{uuid.uuid4().hex[:8]}"
        self.source = self.folder / f"{self.module}.py"
        self.marker = tmp_path / "payload_ran"
        code = (
            "class Payload:\n"
            "    def __init__(self, *args, **kwargs):\n"
            f"        open({str(self.marker)!r}, 'w').write('ran')\n"
        )
        self.nodes = [
            {
                "_target_": "pathlib.Path.write_text",
                "_args_": [{"_target_": "pathlib.Path", "_args_": [str(self.source)]}, code],
            },
            {"_target_": "sys.path.insert", "_args_": [0, str(self.folder)]},
            {"_target_": f"{self.module}.Payload"},
        ]

    def assert_nothing_ran(self) -> None:
        assert not self.source.exists()
        assert not self.marker.exists()
        assert self.module not in sys.modules
        assert str(self.folder) not in sys.path


PLACES = ["data", "model.network", "model.optimizer", "callbacks.model_checkpoint", "logger.csv"]


def with_chain(config: dict, place: str, chain: Chain) -> dict:
    node = config
    for key in place.split("."):
        node = node[key]
    node["payload"] = chain.nodes
    return config


def study(tmp_path: Path) -> dict:
    cfg = compose_train(["model=text_lstm", *QUIET], tmp_path / "original")
    return OmegaConf.to_container(cfg, resolve=True)


def crafted_checkpoint(tmp_path: Path, place: str, chain: Chain) -> Path:
    """Shaped like an emoclip checkpoint, the chain inside its stored study config."""
    path = tmp_path / "crafted" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    checkpoint = {
        "hyper_parameters": with_chain(study(tmp_path), place, chain),
        "emoclip": {"classes": ["anger", "happiness"]},
        "state_dict": {},
        "optimizer_states": [],
        "epoch": 0,
        "global_step": 0,
    }
    torch.save(checkpoint, path)
    return path


def test_the_chain_runs_code_where_nothing_checks_it(tmp_path):
    """Without the guard, Hydra's instantiate runs the chain: the threat the tests below stop."""
    chain = Chain(tmp_path)
    script = (
        "import json, sys\n"
        "from hydra.utils import instantiate\n"
        "instantiate({'payload': json.loads(sys.argv[1])})\n"
    )
    subprocess.run([sys.executable, "-c", script, json.dumps(chain.nodes)], check=True)
    assert chain.source.is_file() and chain.marker.read_text() == "ran"


def compose_entry(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose(name, overrides=overrides)


def refused(run) -> str:
    with pytest.raises(ConfigError, match="refused the config stored in") as refusal:
        run()
    return str(refusal.value)


@pytest.mark.parametrize("place", PLACES)
def test_every_entry_refuses_a_checkpoint_carrying_code(place, tmp_path):
    chain = Chain(tmp_path)
    ckpt = crafted_checkpoint(tmp_path, place, chain)
    out = tmp_path / "out"
    entries = {
        "eval": lambda: evaluate(
            compose_entry("eval", [f"ckpt_path={ckpt}", f"paths.output_dir={out}"])
        ),
        "predict": lambda: predict(compose_entry("predict", [f"ckpt_path={ckpt}", "text=hi"])),
        "explain": lambda: explain(
            compose_entry("explain", [f"ckpt_path={ckpt}", f"paths.output_dir={out}"])
        ),
        "resume": lambda: train(compose_train(["model=text_lstm", f"ckpt_path={ckpt}"], out)),
    }
    for entry, run in entries.items():
        message = refused(run)
        assert f"{place}.payload[0]._target_: pathlib.Path.write_text is not emoclip's" in message
        assert f"{place}.payload[1]._args_ (on sys.path.insert)" in message, entry
        assert f"{place}.payload[2]._target_: {chain.module}.Payload" in message, entry
        chain.assert_nothing_ran()
        assert not out.exists(), entry  # no run folder: refused before anything was written


@pytest.mark.parametrize("place", PLACES)
def test_report_refuses_a_run_folder_carrying_code(place, tmp_path, capsys):
    chain = Chain(tmp_path)
    run_dir = tmp_path / "sweep" / "0"
    (run_dir / ".hydra").mkdir(parents=True)
    config = with_chain(study(tmp_path), place, chain)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    metrics = {"status": "finished", "classes": ["a", "b"], "test/acc": 1.0, "test/f1_macro": 1.0}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match=rf"^emoclip: refused the config stored in {run_dir}"):
        report_main([str(tmp_path / "sweep")])
    chain.assert_nothing_ran()
    assert not (tmp_path / "sweep" / "report.md").exists()


def test_the_user_allows_their_own_code_by_name_on_the_command_line(tmp_path):
    config = {"model": {"network": {"_target_": "mylab.nets.MyNet", "_partial_": True}}}
    with pytest.raises(ConfigError, match=r"model\.network\._target_: mylab\.nets\.MyNet is not"):
        check_untrusted(config, "x.ckpt")
    check_untrusted(config, "x.ckpt", Trust(prefixes=("mylab",)))
    check_untrusted(config, "x.ckpt", Trust(everything=True))
    with pytest.raises(ConfigError, match="mylab.nets.MyNet"):
        check_untrusted(config, "x.ckpt", Trust(prefixes=("mylabs", "mylab.other")))
    # The file cannot allow itself: the flag is read from the entry's own config.
    config["trust_config"], config["allow_targets"] = True, ["mylab"]
    with pytest.raises(ConfigError, match="mylab.nets.MyNet"):
        check_untrusted(config, "x.ckpt", Trust.from_entry(compose_entry("eval", [])))
    assert Trust.from_entry(compose_entry("eval", ["allow_targets=[mylab]"])).allows("mylab.X")
    assert Trust.from_entry(compose_entry("eval", ["allow_targets=mylab"])).allows("mylab.X")
    with pytest.raises(ConfigError, match="allow_targets: '' is not a module name"):
        Trust.from_entry(compose_entry("eval", ["allow_targets=['']"]))


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("os.system", "is not emoclip's"),
        ("builtins.exec", "is not emoclip's"),
        ("emoclip.run_folder.subprocess.run", "reaches into another module"),  # via an import
        ("emoclip.study.instantiate", "reaches into another module"),
        ("emoclip.models.module.EmotionClassifier.load_from_checkpoint", "another module"),
        ("emoclip.checkpoint_io.save_atomically", "is a function outside emoclip.data"),
        ("emoclip.run_folder._found_empty", "is private"),
        ("emoclip.data", "is a module"),
        ("emoclip.models.clip_fusion.ClipFusion", None),
        ("emoclip.data.readers.read_manifest", None),  # emoclip.data functions build studies
        ("emoclip.faults.NoLongerThere", None),  # names nothing: building it fails, no code runs
        ("torch.optim.AdamW", None),
        ("lightning.pytorch.callbacks.ModelCheckpoint", None),
    ],
)
def test_what_a_target_may_name(target, why):
    refusal = target_refusal(target)
    assert refusal is None if why is None else why in refusal


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("${emoclip.run_dir:null,/tmp/x}", "the resolver emoclip.run_dir creates folders"),
        ("${oc.env:AWS_SECRET_ACCESS_KEY}", "reads the environment variable AWS_SECRET"),
        ("${oc.decode:'${x}'}", "the resolver oc.decode is not a resolver it may use"),
        ("a ${oc.select:b,'${emoclip.run_dir:c}'}", "emoclip.run_dir creates folders"),
        ("${unknown_resolver:x}", "the resolver unknown_resolver is not"),
        ("x${", "is not a valid interpolation"),
    ],
)
def test_resolvers_that_touch_files_or_secrets_are_refused(value, why):
    with pytest.raises(ConfigError, match=f"trainer.default_root_dir: .*{why}"):
        check_untrusted({"trainer": {"default_root_dir": value}}, "config.yaml")


def test_the_shipped_interpolations_pass():
    shipped = {
        "paths": {"output_dir": "${hydra:runtime.output_dir}", "new": "${now:%H-%M-%S}_${name}"},
        "data": {"normalization": "${oc.select:model.normalization,half}"},
        "logger": {"wandb": {"mode": "${oc.env:WANDB_MODE,offline}"}},
    }
    check_untrusted(shipped, "config.yaml")


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"o": {"_target_": "torch.optim.SGD", "_args_": [1]}}, "positional arguments"),
        ({"o": {"_target_": "lightning.pytorch.Trainer", "_partial_": True}}, "_partial_ is not"),
        ({"o": {"_partial_": True}}, "_partial_ without a _target_"),
        ({"o": {"_target_": "${x}"}}, "is not a literal dotted name"),
        ({"o": torch.zeros(2)}, "a Tensor, not a plain config value"),
        ({1: "x"}, "keys must be strings"),
    ],
)
def test_what_else_a_file_may_not_say(config, why):
    with pytest.raises(ConfigError, match=why):
        check_untrusted(config, "x.ckpt", GUARD_ONLY)


def test_a_checkpoint_whose_study_config_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "x.ckpt"
    yaml_text = "data:\n  _target_: os.system\n"  # OmegaConf.create would parse it as YAML
    torch.save({"hyper_parameters": yaml_text, "emoclip": {}}, path)
    with pytest.raises(ConfigError, match="not an emoclip checkpoint"):
        predict(compose_entry("predict", [f"ckpt_path={path}", "text=hi"]))


def test_the_report_flag_lets_the_users_own_targets_through(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    config = study(tmp_path)
    config["model"]["network"]["_target_"] = "mylab.nets.MyNet"
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    metrics = {"status": "finished", "classes": ["a", "b"], "test/acc": 1.0, "test/f1_macro": 1.0}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match="mylab.nets.MyNet"):
        report_main([str(run_dir)])
    report_main([str(run_dir), "--allow-targets", "mylab"])
    assert (run_dir / "report.md").is_file()


def test_a_checkpoint_with_the_users_own_code_evaluates_with_the_flag(tmp_path, monkeypatch):
    """A run whose network is the user's own class trains; its checkpoint is refused by eval
    unless allow_targets (on the command line) names the user's module."""
    module = f"mylab_{uuid.uuid4().hex[:8]}"
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / f"{module}.py").write_text(
        "from emoclip.models.tower_fusion import TowerFusion\n\nclass MyNet(TowerFusion):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    brief = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", *QUIET]
    mine = ["model=text_lstm", f"model.network._target_={module}.MyNet", *brief]
    trained = train(compose_train(mine, tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    message = refused(
        lambda: evaluate(
            compose_entry("eval", [f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}/refused"])
        )
    )
    assert f"model.network._target_: {module}.MyNet is not emoclip's" in message
    assert "allow_targets=[<module>]" in message
    evaluated = evaluate(
        compose_entry(
            "eval",
            [f"ckpt_path={ckpt}", f"allow_targets=[{module}]", f"paths.output_dir={tmp_path}/e"],
        )
    )
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
