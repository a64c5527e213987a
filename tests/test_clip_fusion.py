"""ClipFusion and its fusions: a missing modality enters as zeros; modality dropout removes one
per example; auxiliary per-modality heads add their loss."""

import pytest
import torch

from emoclip.errors import ConfigError
from emoclip.models.clip_fusion import ClipFusion
from emoclip.models.fusion import ConcatFusion, CrossAttentionFusion, GatedFusion, LateFusion
from emoclip.models.module import EmotionClassifier
from emoclip.models.task import TaskSpec
from tests.conftest import GEOMETRY

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
    features = net.encode({k: v for k, v in full.items() if k != "pixel_values"})
    assert torch.count_nonzero(features.image) == 0 and torch.count_nonzero(features.text) > 0
    assert features.image_present.sum() == 0 and features.text_present.sum() == 6
    features = net.encode({"labels": full["labels"], "pixel_values": full["pixel_values"]})
    assert torch.count_nonzero(features.text) == 0 and torch.count_nonzero(features.image) > 0


def test_modality_dropout_removes_one_modality_per_example_only_in_training():
    net = ClipFusion(TASK, BACKBONE, modality_dropout=0.5)
    torch.manual_seed(0)
    dropped = net._drop_modalities(net.encode(batch(200)))
    text_off = (dropped.text == 0).all(1)
    image_off = (dropped.image == 0).all(1)
    assert torch.equal(text_off, dropped.text_present.squeeze(1) == 0)
    assert not (text_off & image_off).any()
    assert 60 < text_off.sum() < 140 and 60 < image_off.sum() < 140
    with pytest.raises(ConfigError, match="modality_dropout"):
        ClipFusion(TASK, BACKBONE, modality_dropout=0.8)


FUSIONS = [ConcatFusion, LateFusion, GatedFusion, CrossAttentionFusion]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_gives_logits_with_one_or_both_modalities(fusion):
    net = ClipFusion(TASK, BACKBONE, fusion=fusion, hidden_size=16).eval()
    full = batch()
    for dropped in ((), ("pixel_values",), ("input_ids", "attention_mask")):
        logits = net({k: v for k, v in full.items() if k not in dropped})
        assert logits.shape == (6, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_is_trained_by_both_encoders(fusion):
    net = ClipFusion(TASK, BACKBONE, fusion=fusion, hidden_size=16)
    torch.nn.functional.cross_entropy(net(batch()), torch.arange(6) % 3).backward()
    for tower in (net.clip.text_model, net.clip.vision_model):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


def test_late_fusion_averages_only_the_modalities_present():
    net = ClipFusion(TASK, BACKBONE, fusion=LateFusion, hidden_size=16).eval()
    full = batch()
    features = net.encode(full)
    text_logits = net.fusion.text_head(features.text)
    image_logits = net.fusion.image_head(features.image)
    torch.testing.assert_close(net(full), (text_logits + image_logits) / 2)
    text_only = net({k: v for k, v in full.items() if k != "pixel_values"})
    torch.testing.assert_close(text_only, text_logits)


def test_unimodal_heads_give_per_modality_logits_and_add_to_the_training_loss():
    net = ClipFusion(TASK, BACKBONE, unimodal_loss_weight=0.5)
    logits, unimodal = net(batch(), with_unimodal=True)
    assert set(unimodal) == {"text", "image"} and unimodal["image"].shape == logits.shape
    module = EmotionClassifier(net, TASK.classes, optimizer=torch.optim.SGD)
    plain = EmotionClassifier(ClipFusion(TASK, BACKBONE), TASK.classes, optimizer=torch.optim.SGD)
    torch.manual_seed(0)
    b = batch()
    net.eval()  # no dropout: the two losses must differ by exactly the auxiliary term
    with_aux = module._step(b, "train")
    main = module.loss_fn(net(b), b["labels"])
    aux = torch.stack([module.loss_fn(u, b["labels"]) for u in net(b, True)[1].values()]).mean()
    torch.testing.assert_close(with_aux, main + 0.5 * aux)
    assert plain.network.unimodal_heads is not None and len(plain.network.unimodal_heads) == 0
    with pytest.raises(ConfigError, match="unimodal_loss_weight"):
        ClipFusion(TASK, BACKBONE, unimodal_loss_weight=-1)
