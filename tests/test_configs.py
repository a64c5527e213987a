"""Every config in conf/ composes, and every value resolves."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from emoclip.cli.entry import run_reporting_errors
from emoclip.output.comparison import load_run
from emoclip.study.build import config_dir
from emoclip.study.stored_study import RENAMED_TARGETS, read_stored_study
from emoclip.train import train
from tests.conftest import REPO, compose_train

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
    for group in ("backbone", "text_tower", "image_tower", "fusion", "finetune")
    for p in (CONF / "model" / group).glob("*.yaml")
]


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_option_composes_and_resolves(group, name, tmp_path):
    cfg = compose_train([f"{group}={name}"], tmp_path)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["paths"]["output_dir"] == str(tmp_path)
    assert container["model"]["name"]
    # Read back from a file, it is rebuilt as the same study: as a checkpoint stores it
    # (resolved, with its recorded choice) and as a run folder's .hydra/config.yaml holds it
    # (unresolved, its choices inferred from its _target_s).
    recorded = None if group in ("hparams_search", "debug") else {group: name}
    for stored, choices in (
        (container, recorded),
        (OmegaConf.to_container(cfg, resolve=False), None),
    ):
        rebuilt = read_stored_study(stored, "a file", choices=choices, entry_paths=cfg.paths)
        for key in ("data", "model", "seed", "monitor"):
            assert OmegaConf.to_container(rebuilt, resolve=True)[key] == container[key], key


def test_a_config_naming_classes_by_their_old_module_paths_is_read(tmp_path):
    """Files written before the top-level modules moved into wings (issue 20) name their
    classes by the old dotted paths (emoclip.faults.StopOnDivergence): read as today's."""
    cfg = compose_train([], tmp_path)
    today = {new: old for old, new in RENAMED_TARGETS.items() if old.startswith("emoclip.")}
    current = OmegaConf.to_container(cfg, resolve=False)
    text = json.dumps(current)
    assert {t for t in today if f'"{t}"' in text} >= {
        "emoclip.system.checkpoint_io.RunCheckpoint",
        "emoclip.runs.faults.StopOnDivergence",
        "emoclip.runs.early_stopping.EarlyStopping",
    }
    for new, old in today.items():
        text = text.replace(f'"{new}"', f'"{old}"')
    old_file = json.loads(text)
    assert "emoclip.faults.StopOnDivergence" in text
    for choices in (None, {"callbacks": "default", "trainer": "cpu"}):
        rebuilt = read_stored_study(old_file, "an old run folder", choices=choices)
        assert OmegaConf.to_container(rebuilt.callbacks) == current["callbacks"]
        assert OmegaConf.to_container(rebuilt.trainer) == current["trainer"]


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        ([], "demo"),
        (["seed=3", "trainer.max_epochs=2"], "demo"),
        (["model=text_lstm"], "text_lstm_synthetic"),
        (["model=clip_fusion", "seed=3"], "fusion_clip_clip_synthetic"),
        (["model/image_tower=cnn"], "fusion_clip_cnn_synthetic"),
        (["data=dair_emotion"], "fusion_clip_clip_dair_emotion"),
    ],
)
def test_emoclip_train_runs_the_default_study_of_make_train_unless_told_another(
    argv, name, tmp_path
):
    """One default study: `emoclip-train` is `make train` (experiment=demo), also with
    overrides that only adjust it (a seed, epochs); a command line that chooses a model, data
    or experiment composes exactly what it names."""
    assert "$(BIN)/emoclip-train $(ARGS)\n" in (REPO / "Makefile").read_text()
    # emoclip-train's own entry (emoclip.cli.entry.hydra_entry, emoclip.train.DEFAULT_STUDY)
    # around a task that prints the run's name, in a process of its own (Hydra sets up logging).
    probe = (
        "from emoclip.cli.entry import hydra_entry\n"
        "from emoclip.train import DEFAULT_STUDY\n"
        "@hydra_entry('train', default_study=DEFAULT_STUDY)\n"
        "def composed(cfg):\n"
        "    print('name:', cfg.name)\n"
        "composed()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"name: {name}\n" in done.stdout
    assert name in str(next((tmp_path / "outputs").glob("*/*")))  # its run folder's name


@pytest.mark.parametrize("entry", ["eval", "explain"])
def test_the_other_entries_run_folders_are_set_aside_by_the_report(entry, tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(entry, overrides=["ckpt_path=x.ckpt", "paths.output_dir=/tmp/e"])
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    assert load_run(tmp_path).kind == "evaluation"


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
            ["data=ckplus", "data.root=/no/such/folder", "data.num_folds=5", "data.fold=5"],
            r"data.fold=5 is out of range for data.num_folds=5; expected 0..4",
        ),
        (["data.classes=[anger,grumpy]"], r"unknown emotion label 'grumpy' in data.classes"),
        (
            [
                "model=text_lstm",
                "data=dair_emotion",
                "data.root=/no/such/folder",
                "data.classes=[anger,grumpy]",
            ],
            r"unknown emotion label 'grumpy' in data.classes\. The emotion label space knows: anger",
        ),
        (
            ["model=text_lstm", "data=text_table", "data.label_space=sentiment"],
            r"data.root is not set: point it at a csv, tsv, jsonl or parquet table",
        ),
        (
            ["data=synthetic", "data.root=/some/folder"],
            r"data=synthetic reads no files, so data.root=/some/folder does not apply",
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

    from emoclip.study.build import resolve_precision

    assert resolve_precision("16-mixed", "gpu") == "16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"


def test_every_data_key_an_error_message_names_exists():
    """Messages in emoclip's data code that tell the user to set data.<key> name keys that the
    data configs have (an old message suggested data.val_fraction when there was none)."""
    from emoclip.study.build import config_dir as conf

    named = set()
    for path in Path(conf()).parent.joinpath("emoclip").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named |= set(re.findall(r"(?<![\w.])data\.[a-z_]+(?:\.[a-z_]+)*", node.value))
    named = {key for key in named if not key.startswith("data.sources.")}  # module names
    available = set()
    for option in GROUPS["data"]:
        if option == "default":
            continue
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[f"data={option}", "paths.output_dir=/tmp/x"])
        flat = OmegaConf.to_container(cfg.data, resolve=False)

        def keys(node, prefix="data"):
            yield prefix
            if isinstance(node, dict):
                for key, value in node.items():
                    yield from keys(value, f"{prefix}.{key}")

        available |= set(keys(flat))
    missing = sorted(key for key in named if key not in available)
    assert not missing, f"messages name data keys no config has: {missing}"


@pytest.mark.parametrize("option", [n for n in GROUPS["data"] if n != "default"])
def test_every_data_config_key_is_a_parameter_of_what_reads_it(option, tmp_path):
    """No key a config sets is unknown to its class (a manifest key once stopped the run with
    a TypeError), and none is there only to be ignored."""
    import inspect

    from hydra.utils import get_class

    cfg = compose_train([f"data={option}"], tmp_path)

    def check(node, where):
        if not isinstance(node, dict):
            return
        if "_target_" in node:
            params = inspect.signature(get_class(node["_target_"]).__init__).parameters
            unknown = sorted(set(node) - set(params) - {"_target_"})
            assert not unknown, f"{where}: {node['_target_']} takes no {unknown}"
        for key, value in node.items():
            check(value, f"{where}.{key}")

    check(OmegaConf.to_container(cfg.data, resolve=False), "data")


def test_the_data_folder_is_set_once_by_env_or_a_local_config(tmp_path, monkeypatch):
    import shutil

    conf = tmp_path / "conf"  # the shipped configs, without this checkout's own conf/local
    shutil.copytree(CONF, conf, ignore=shutil.ignore_patterns("local"))

    def data_dir(*overrides):
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose("train", overrides=[*overrides, "paths.output_dir=/tmp/x"])
        assert cfg.data.data_dir == cfg.paths.data_dir
        return cfg.paths.data_dir

    monkeypatch.delenv("EMOCLIP_DATA_DIR", raising=False)
    assert data_dir("data=mvsa_single") == "data"
    monkeypatch.setenv("EMOCLIP_DATA_DIR", "/srv/datasets")
    assert data_dir("data=mvsa_single") == "/srv/datasets"
    (conf / "local").mkdir()
    (conf / "local" / "default.yaml").write_text(
        "# @package _global_\npaths:\n  data_dir: /home/me/data\n"
    )
    assert data_dir("data=ckplus") == "/home/me/data"


def test_a_checkpoint_records_the_group_choices_of_its_own_app_only(tmp_path):
    """A study composed in a process where another Hydra app ran before (its state stays
    behind) must not record that app's group choices as its own, in its checkpoint or its run
    folder's hydra.yaml: the stored-study reader would rebuild the other study from them."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from emoclip.runs.run_folder import write_config_files
    from emoclip.study.stored_study import recorded_choices

    with initialize_config_dir(config_dir(), version_base="1.3"):
        app = compose("train", overrides=["experiment=demo"], return_hydra_config=True)
    with open_dict(app):
        app.hydra.runtime.output_dir = str(tmp_path / "demo_run")
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(app)
    try:
        other = compose_train(["model=image_cnn"], tmp_path / "other")
        assert recorded_choices(other) is None
        write_config_files(tmp_path / "other", other)  # its run folder: no hydra.yaml of the app
        assert (tmp_path / "other" / ".hydra" / "config.yaml").is_file()
        assert not (tmp_path / "other" / ".hydra" / "hydra.yaml").exists()
        own = compose_train(["experiment=demo"], tmp_path / "demo_run")
        assert recorded_choices(own)["experiment"] == "demo"
    finally:
        HydraConfig.instance().cfg = saved
