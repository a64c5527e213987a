"""Offline, what would download fails at once with one message, not minutes of retries."""

import os
import subprocess
import sys

import pytest

from emoclip.system import offline

# A port nothing listens on: the connection is refused at once, as on a machine without network.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    for name in offline.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty cache


def test_an_unreachable_hub_sets_offline_mode(no_hub, monkeypatch):
    model = {"backbone": {"name_or_path": "openai/clip-vit-base-patch32"}}
    assert offline.go_offline_if_hub_unreachable({"model": model})
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_no_probe_when_nothing_would_download(no_hub, monkeypatch):
    def probe(*args):
        raise AssertionError("probed the hub for a run that downloads nothing")

    monkeypatch.setattr(offline, "hub_reachable", probe)
    tiny = {"backbone": {"name_or_path": None, "tokenizer": {"name_or_path": None}}}
    assert not offline.go_offline_if_hub_unreachable({"model": tiny, "ckpt_path": None})
    assert "HF_HUB_OFFLINE" not in os.environ


def test_hub_ids_are_told_from_local_paths(tmp_path, monkeypatch):
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "model").mkdir()
    config = {"a": "openai/clip-vit-base-patch32", "b": ["/models/clip", "x"], "c": None}
    assert list(offline.hub_ids(config)) == ["openai/clip-vit-base-patch32"]
    monkeypatch.chdir(tmp_path)  # a local folder named like a hub id is a folder
    assert list(offline.hub_ids({"a": "org/model"})) == []


@pytest.mark.slow
def test_zero_shot_offline_is_one_message(no_hub, tmp_path):
    """Before: about 20 retry lines over 50 s, then the refusal."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emoclip.evaluate",
            "model=clip_zeroshot",
            "data=synthetic",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("emoclip: could not load the ")
    assert "openai/clip-vit-base-patch32" in result.stderr
    assert "Retrying" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert f"{UNREACHABLE} cannot be reached: working offline" in result.stdout


@pytest.mark.parametrize(
    ("model", "probed"),
    [
        ({"text_tower": {"name": "lstm", "tokenizer": {"name_or_path": None}}}, False),
        ({"backbone": {"name_or_path": "openai/clip-vit-base-patch32"}}, True),
    ],
)
def test_a_checkpoint_is_probed_for_only_if_its_model_names_the_hub(
    no_hub, monkeypatch, tmp_path, model, probed
):
    import torch

    checkpoint = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": {"model": model}, "emoclip": {}}, checkpoint)
    asked = []
    monkeypatch.setattr(offline, "hub_reachable", lambda *a: asked.append(a) or True)
    offline.go_offline_if_hub_unreachable({"model": None, "ckpt_path": str(checkpoint)})
    assert bool(asked) == probed


def test_eval_reads_a_run_folders_best_checkpoint_and_says_a_missing_one_first(tmp_path, caplog):
    from emoclip.cli.entry import checkpoint_to_read
    from emoclip.errors import ConfigError

    run_dir = tmp_path / "my_run"
    (run_dir / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"a folder without checkpoints/best.ckpt"):
        checkpoint_to_read(str(run_dir))
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"")
    caplog.set_level("INFO", logger="emoclip.cli.entry")
    assert checkpoint_to_read(str(run_dir)) == str(run_dir / "checkpoints" / "best.ckpt")
    assert f"ckpt_path={run_dir} is a run folder: reading its checkpoints/best.ckpt" in caplog.text
    with pytest.raises(ConfigError, match=r"ckpt_path=\S+/gone.ckpt: no such file"):
        checkpoint_to_read(str(tmp_path / "gone.ckpt"))


def test_a_missing_checkpoint_is_said_before_the_hub_is_probed(no_hub, tmp_path):
    # The hub unreachable and no checkpoint: the answer is the missing file, at once.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emoclip.evaluate",
            f"ckpt_path={tmp_path}/gone.ckpt",
            f"hydra.run.dir={tmp_path}/eval",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"emoclip: ckpt_path={tmp_path}/gone.ckpt: no such file; expected a .ckpt file or a run "
        "folder of emoclip-train (its checkpoints/best.ckpt is read)"
    )
    assert "cannot be reached" not in result.stderr + result.stdout


@pytest.mark.parametrize("name", ["/models/clip", "./clip", "models/clip/v2"])
def test_a_missing_local_model_folder_is_said_plainly(tmp_path, name):
    from emoclip.data.tokenizer import load_pretrained_tokenizer
    from emoclip.errors import BackboneLoadError

    with pytest.raises(BackboneLoadError) as refusal:
        load_pretrained_tokenizer(name)
    assert str(refusal.value) == (
        f"model.tokenizer.name_or_path={name}: no such folder; expected a local model folder "
        "(saved with save_pretrained) or a hub id such as openai/clip-vit-base-patch32"
    )
    offline.check_model_folder("openai/clip-vit-base-patch32", "k")  # a hub id: not a path
    offline.check_model_folder(str(tmp_path), "k")  # a folder that is there
