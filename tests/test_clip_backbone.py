"""The CLIP backbone loads through from_pretrained, and never falls back to random weights."""

import pytest
import torch

from emoclip.errors import BackboneLoadError, ConfigError
from emoclip.models.clip_backbone import load_clip
from emoclip.models.task import TaskSpec
from emoclip.study.build import build_study
from emoclip.train import train
from tests.conftest import QUIET, compose_train, save_tiny_clip


@pytest.fixture
def saved_tiny_clip(tmp_path):
    folder = tmp_path / "tiny-clip"
    return folder, save_tiny_clip(folder)


def test_saved_tiny_clip_loads_back_identically(saved_tiny_clip):
    folder, original = saved_tiny_clip
    loaded = load_clip(str(folder), None, 32, TaskSpec(classes=("a", "b")))
    for (name, a), (_, b) in zip(
        original.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_study_uses_the_saved_folder_for_weights_and_tokenizer(saved_tiny_clip, tmp_path):
    folder, original = saved_tiny_clip
    overrides = [
        f"model.backbone.name_or_path={folder}",
        "model.backbone.image_size=32",
        "debug=fdr",
        *QUIET,
    ]
    cfg = compose_train(overrides, tmp_path / "run")
    study = build_study(cfg)
    assert torch.equal(
        study.module.network.towers["text"].token_embedding().weight,
        original.text_model.embeddings.token_embedding.weight,
    )
    assert study.datamodule.tokenizer.name_or_path == str(folder)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_unreachable_hub_id_stops_with_instructions(tmp_path, monkeypatch):
    # The hub reads HF_HUB_OFFLINE at import time: set the constant, not only the variable.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(BackboneLoadError) as err:
        load_clip("openai/clip-vit-base-patch32", None, 224, TaskSpec(classes=("a", "b")))
    message = str(err.value)
    assert "openai/clip-vit-base-patch32" in message
    assert "model.backbone.name_or_path=" in message and "never falls back" in message


def test_folder_missing_weights_is_refused(saved_tiny_clip, tmp_path):
    folder, _ = saved_tiny_clip
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    dropped = {k: v for k, v in weights.items() if not k.startswith("visual_projection")}
    save_file(dropped, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BackboneLoadError, match="randomly initialised"):
        load_clip(str(folder), None, 32, TaskSpec(classes=("a", "b")))


def test_image_size_must_match_the_checkpoint(saved_tiny_clip):
    folder, _ = saved_tiny_clip
    with pytest.raises(ConfigError, match="model.backbone.image_size=32"):
        load_clip(str(folder), None, 224, TaskSpec(classes=("a", "b")))
