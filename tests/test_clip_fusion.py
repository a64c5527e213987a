"""ClipFusion: a missing modality enters as zeros; modality dropout zeros one per example."""

import pytest
import torch

from emoclip.errors import ConfigError
from emoclip.models.clip_fusion import ClipFusion
from emoclip.models.task import TaskSpec
from tests.test_clip_backbone import GEOMETRY

TASK = TaskSpec(
    classes=("a", "b", "c"), vocab_size=50, pad_token_id=0, bos_token_id=2, eos_token_id=3
)
BACKBONE = {"name_or_path": None, "config": GEOMETRY, "image_size": 32}


def batch(n=6):
    ids = torch.randint(4, 50, (n, 7))
    ids[:, 0], ids[:, -1] = 2, 3
    return {
        "labels": torch.zeros(n, dtype=torch.long),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(n, 3, 32, 32),
    }


def test_missing_modality_is_zeros():
    net = ClipFusion(TASK, BACKBONE).eval()
    full = batch()
    z_text, z_image = net.encode({k: v for k, v in full.items() if k != "pixel_values"})
    assert torch.count_nonzero(z_image) == 0 and torch.count_nonzero(z_text) > 0
    z_text, z_image = net.encode({"labels": full["labels"], "pixel_values": full["pixel_values"]})
    assert torch.count_nonzero(z_text) == 0 and torch.count_nonzero(z_image) > 0


def test_modality_dropout_zeros_one_modality_per_example_only_in_training():
    net = ClipFusion(TASK, BACKBONE, modality_dropout=0.5)
    z_text, z_image = net.encode(batch(200))
    torch.manual_seed(0)
    dropped_text, dropped_image = net._drop_modalities(z_text, z_image)
    text_off = (dropped_text == 0).all(1)
    image_off = (dropped_image == 0).all(1)
    assert not (text_off & image_off).any()
    assert 60 < text_off.sum() < 140 and 60 < image_off.sum() < 140
    with pytest.raises(ConfigError, match="modality_dropout"):
        ClipFusion(TASK, BACKBONE, modality_dropout=0.8)


@pytest.mark.parametrize(("freeze", "frozen"), [("all", 2), ("text", 1), ("image", 1), ("none", 0)])
def test_freeze_options(freeze, frozen):
    net = ClipFusion(TASK, BACKBONE, freeze=freeze)
    towers = [net.clip.text_model, net.clip.vision_model]
    assert sum(not any(p.requires_grad for p in t.parameters()) for t in towers) == frozen
    assert all(p.requires_grad for p in net.head.parameters())
