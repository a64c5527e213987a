"""A plugin outside the package (tests/plugins/emoclip_example_plugin: the README's worked
source, a bag-of-words text tower and a bilinear fusion, each one module and one config),
installed as a user would install one: a distribution whose entry point in the group
`emoclip.plugins` names the package. Its options are listed by the catalogue, pass the
contract tests generated from it, train through the real entry point, appear in the report by
their names, and resume. A user's own folder of configs works through `hydra.searchpath`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emoclip import catalogue, plugins
from emoclip.report import main as report_main
from emoclip.train import train
from tests.conftest import QUIET, REPO, compose_train
from tests.test_contracts import (
    build_tower,
    check_fusion,
    check_source,
    check_tower_cache,
    check_tower_mode,
)
from tests.test_own_data import readme_block

PLUGINS = Path(__file__).resolve().parent / "plugins"
PACKAGE = "emoclip_example_plugin"
ORIGIN = f"plugin emoclip_example ({PACKAGE})"
OPTIONS = {
    "source": "data=lines_per_class",
    "text tower": "model/text_tower=bow",
    "fusion": "model/fusion=bilinear",
}
# A fused study of the plugin's tower and fusion, small enough for seconds.
SMALL = ["model/image_tower=cnn", "model.image_tower.image_size=32"]
SMALL += ["model.image_tower.channels=[4,8]", "data.dataset.image_size=32"]
SMALL += ["data.dataset.train_size=60", "data.dataset.val_size=30", "data.dataset.test_size=30"]
SMALL += ["debug=limit", "trainer.max_epochs=1"]
FUSED = ["model/text_tower=bow", "model/fusion=bilinear", *SMALL]


def install(site: Path) -> None:
    """The plugin's distribution metadata, as pip would write it: its entry point."""
    info = site / f"{PACKAGE}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: emoclip-example-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[emoclip.plugins]\nemoclip_example = {PACKAGE}\n")


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory):
    """The plugin installed in this process (the package and its metadata on sys.path); the
    folders to put on PYTHONPATH for a new process."""
    site = tmp_path_factory.mktemp("site-packages")
    install(site)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(PLUGINS))
        patch.syspath_prepend(str(site))
        yield [str(site), str(PLUGINS)]
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        del sys.modules[name]


def plugin_entry(kind: str) -> catalogue.Entry:
    found = [e for e in catalogue.entries(kind) if e.origin == ORIGIN]
    assert [e.override for e in found] == [OPTIONS[kind]]
    return found[0]


def test_the_catalogue_lists_an_installed_plugins_options(example_plugin, capsys):
    folders = catalogue.config_folders()
    assert folders[1] == plugins.ConfigFolder((PLUGINS / PACKAGE / "conf").resolve(), ORIGIN)
    for kind in OPTIONS:
        entry = plugin_entry(kind)
        assert entry.target.startswith(f"{PACKAGE}.") and entry.load() is not None
    assert plugin_entry("source").modalities() == ("text",)
    assert plugin_entry("text tower").modalities() == ("text",)
    catalogue.main([])
    listing = capsys.readouterr().out
    assert f"# {ORIGIN}: {PLUGINS / PACKAGE / 'conf'}" in listing
    assert (
        "model/text_tower=bow" in listing
        and "emoclip_example_plugin.bow.BagOfWordsTower" in listing
    )


def test_a_plugin_without_a_config_folder_is_skipped_with_one_warning(tmp_path, caplog):
    (tmp_path / "no_conf_plugin").mkdir()
    (tmp_path / "no_conf_plugin" / "__init__.py").write_text("")
    site = tmp_path / "site"
    info = site / "no_conf_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: no-conf-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[emoclip.plugins]\nbroken = no_conf_plugin\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))
        patch.syspath_prepend(str(site))
        assert all("broken" not in f.origin for f in plugins.plugin_folders())
    assert "emoclip plugin 'broken'" in caplog.text and "conf/ folder" in caplog.text


def test_the_plugins_source_is_the_readmes_worked_source():
    written = (PLUGINS / PACKAGE / "lines_per_class.py").read_text()
    assert readme_block("python", '"""`data=lines_per_class`') == written


@pytest.mark.parametrize("mode", ["full", "partial", "lora", "frozen", "cache"])
def test_the_plugins_tower_passes_the_generated_contract(mode, example_plugin, tmp_path):
    entry = plugin_entry("text tower")
    tower = build_tower(entry, {}, tmp_path)  # a plugin's tower is tested as configured
    if mode == "cache":
        check_tower_cache(entry, tower)
    else:
        check_tower_mode(entry, tower, mode)


def test_the_plugins_fusion_passes_the_generated_contract(example_plugin, tmp_path):
    check_fusion(plugin_entry("fusion"), tmp_path)


def test_the_plugins_source_passes_the_generated_contract(example_plugin, tmp_path):
    metrics = check_source(plugin_entry("source"), tmp_path)
    assert metrics["classes"] == ["anger", "happiness", "sadness"]


def run_entry(module: str, pythonpath: list[str], *overrides: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([*pythonpath, str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides, *QUIET],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_a_study_of_plugin_parts_trains_reports_and_resumes(example_plugin, tmp_path):
    first = tmp_path / "fused"
    result = run_entry("emoclip.train", example_plugin, *FUSED, f"hydra.run.dir={first}")
    assert result.returncode == 0, result.stderr[-3000:]
    choices = _stored_choices(first / "checkpoints" / "last.ckpt")
    assert choices["model/text_tower"] == "bow" and choices["model/fusion"] == "bilinear"
    # Stopped after its first epoch (no metrics.json yet), then continued through the real
    # entry with nothing but a longer schedule: its study is taken from its checkpoint,
    # rebuilt from the plugin's configs (no allow_targets: the catalogue lists its classes).
    (first / "metrics.json").unlink()
    result = run_entry(
        "emoclip.train", example_plugin, f"ckpt_path={first}", "trainer.max_epochs=2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert f"continuing {first} with its own" in log and "continuing from" in log
    resumed = json.loads((first / "metrics.json").read_text())
    assert resumed["status"] == "finished"
    stored = (first / ".hydra" / "config.yaml").read_text()
    assert "emoclip_example_plugin.bow.BagOfWordsTower" in stored
    # What it records is what it ran (the checkpoint's options), not the command line's.
    assert _stored_choices(first / "checkpoints" / "last.ckpt")["model/text_tower"] == "bow"
    recorded = yaml.safe_load((first / ".hydra" / "hydra.yaml").read_text())
    assert recorded["hydra"]["runtime"]["choices"]["model/fusion"] == "bilinear"
    # The plugin's source, in this process; then the report of both runs.
    files = tmp_path / "texts"
    source = catalogue.listed_class("emoclip_example_plugin.lines_per_class.LinesPerClass")
    overrides = ["data=lines_per_class", f"data.root={source.write_examples(files, {})['root']}"]
    overrides += ["model=text_lstm", "model/text_tower=bow", "debug=limit", *QUIET]
    train(compose_train(overrides, tmp_path / "lines"))
    report_main([str(first), str(tmp_path / "lines"), "--out", str(tmp_path / "report")])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "text: bow; image: cnn" in report and "bilinear" in report
    assert "text: bow" in report and "lines_per_class" in report
    assert "unknown" not in report


def _stored_choices(checkpoint: Path) -> dict:
    import torch

    return torch.load(checkpoint, weights_only=True, map_location="cpu")["emoclip"]["choices"]


def test_a_users_own_config_folder_through_hydra_searchpath(example_plugin, tmp_path):
    """hydra.searchpath on the command line adds a folder of config groups: here a fusion
    option of the user's own, naming the plugin's class with other settings."""
    mine = tmp_path / "my_conf" / "model" / "fusion"
    mine.mkdir(parents=True)
    (mine / "my_bilinear.yaml").write_text(
        "_target_: emoclip_example_plugin.bilinear.BilinearFusion\n_partial_: true\n"
    )
    cfg = compose_train(
        [f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "model/fusion=my_bilinear"],
        tmp_path,
    )
    assert cfg.model.fusion._target_ == "emoclip_example_plugin.bilinear.BilinearFusion"
    assert plugins.searchpath_folders([f"file://{tmp_path / 'my_conf'}"]) == [
        plugins.ConfigFolder((tmp_path / "my_conf").resolve(), "hydra.searchpath")
    ]


@pytest.mark.slow
def test_a_run_of_a_users_own_config_folder_resumes_with_its_searchpath(tmp_path):
    """A run that used an option of the user's folder is continued when the command line
    names the folder again, and refused in one line naming hydra.searchpath when it does not."""
    mine = tmp_path / "my_conf" / "model" / "fusion"
    mine.mkdir(parents=True)
    (mine / "my_gated.yaml").write_text(
        "_target_: emoclip.models.fusion.GatedFusion\n_partial_: true\n"
    )
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"
    run = tmp_path / "run"
    study = [*SMALL, "model/text_tower=lstm", "model/fusion=my_gated"]
    result = run_entry("emoclip.train", [], searchpath, *study, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run / "metrics.json").unlink()  # stopped after its first epoch
    refused = run_entry("emoclip.train", [], f"ckpt_path={run}", "trainer.max_epochs=2")
    assert refused.returncode == 1
    assert "model/fusion='my_gated'" in refused.stderr and "hydra.searchpath" in refused.stderr
    resumed = run_entry("emoclip.train", [], f"ckpt_path={run}", "trainer.max_epochs=2", searchpath)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["status"] == "finished"
