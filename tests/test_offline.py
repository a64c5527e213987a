"""Offline, what would download fails at once with one message, not minutes of retries."""

import os
import subprocess
import sys

import pytest

from emoclip import offline

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
