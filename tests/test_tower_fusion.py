"""The tower-fusion network and its fusions: a missing modality enters as zeros; modality
dropout removes one per example; auxiliary per-modality heads add their loss; towers of any
kind pair with each other, and one tower alone is a baseline."""

from functools import partial

import pytest
import torch

from emoclip.catalogue import entries
from emoclip.errors import ConfigError
from emoclip.models.fusion import CrossAttentionFusion, GatedFusion, LateFusion
from emoclip.models.module import EmotionClassifier
from emoclip.models.task import TaskSpec
from emoclip.models.tower_fusion import TowerFusion
from emoclip.models.towers.cnn import CNNImageTower
from emoclip.models.towers.lstm import LSTMTextTower
from tests.conftest import GEOMETRY, clip_towers

TASK = TaskSpec(
    classes=("a", "b", "c"), vocab_size=50, pad_token_id=0, bos_token_id=2, eos_token_id=3
)
BACKBONE = {"name_or_path": None, "config": GEOMETRY, "image_size": 32}
LSTM = partial(LSTMTextTower, embed_dim=8, hidden_size=8)
CNN = partial(CNNImageTower, image_size=32, channels=[4, 8], pooled_grid=2)


def clip_fusion(**kwargs) -> TowerFusion:
    return TowerFusion(TASK, **clip_towers(BACKBONE), **kwargs)


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
    net = clip_fusion().eval()
    full = batch()
    features = net.features({k: v for k, v in full.items() if k != "pixel_values"})
    assert torch.count_nonzero(features.image) == 0 and torch.count_nonzero(features.text) > 0
    assert features.image_present.sum() == 0 and features.text_present.sum() == 6
    features = net.features({"labels": full["labels"], "pixel_values": full["pixel_values"]})
    assert torch.count_nonzero(features.text) == 0 and torch.count_nonzero(features.image) > 0


def test_modality_dropout_removes_one_modality_per_example_only_in_training():
    net = clip_fusion(modality_dropout=0.5)
    torch.manual_seed(0)
    dropped = net._drop_modalities(net.features(batch(200)))
    text_off = (dropped.text == 0).all(1)
    image_off = (dropped.image == 0).all(1)
    assert torch.equal(text_off, dropped.text_present.squeeze(1) == 0)
    assert not (text_off & image_off).any()
    assert 60 < text_off.sum() < 140 and 60 < image_off.sum() < 140
    with pytest.raises(ConfigError, match="modality_dropout"):
        clip_fusion(modality_dropout=0.8)
    with pytest.raises(ConfigError, match="modality_dropout needs two towers"):
        TowerFusion(TASK, text_tower=LSTM, modality_dropout=0.2)


# Every fusion the catalogue lists (conf/model/fusion/, and installed plugins').
FUSIONS = [entry.load() for entry in entries("fusion")]


@pytest.mark.parametrize("fusion", FUSIONS, ids=lambda f: f.__name__)
def test_each_fusion_gives_logits_with_one_or_both_modalities(fusion):
    net = clip_fusion(fusion=fusion, hidden_size=16).eval()
    full = batch()
    for dropped in ((), ("pixel_values",), ("input_ids", "attention_mask")):
        logits = net({k: v for k, v in full.items() if k not in dropped})
        assert logits.shape == (6, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("fusion", FUSIONS, ids=lambda f: f.__name__)
def test_each_fusion_is_trained_by_both_towers(fusion):
    net = clip_fusion(fusion=fusion, hidden_size=16)
    torch.nn.functional.cross_entropy(net(batch()), torch.arange(6) % 3).backward()
    for tower in net.towers.values():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


@pytest.mark.parametrize("fusion", FUSIONS, ids=lambda f: f.__name__)
def test_towers_of_other_kinds_pair_under_each_fusion(fusion):
    """An LSTM text tower and a CNN image tower: different widths, and per-token outputs of
    their own kind (LSTM states, the CNN's grid cells)."""
    net = TowerFusion(TASK, text_tower=LSTM, image_tower=CNN, fusion=fusion, hidden_size=16)
    assert net.dims.pooled == {"text": 2 * 16, "image": 8 * 4}
    torch.nn.functional.cross_entropy(net(batch()), torch.arange(6) % 3).backward()
    for tower in net.towers.values():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


def test_embed_dim_projects_every_tower_to_a_common_width():
    net = TowerFusion(TASK, text_tower=LSTM, image_tower=CNN, embed_dim=24, hidden_size=16)
    assert net.dims.pooled == {"text": 24, "image": 24}
    features = net.eval().features(batch())
    assert features.text.shape == features.image.shape == (6, 24)


def test_one_tower_is_the_baseline_network_and_two_tower_fusions_refuse_it():
    lstm = TowerFusion(TASK, text_tower=LSTM, hidden_size=16).eval()
    assert lstm.modalities == ("text",) and lstm.image_preprocessing() is None
    text_only = {k: v for k, v in batch().items() if k != "pixel_values"}
    head_input = lstm.towers["text"](text_only).pooled
    torch.testing.assert_close(lstm(text_only), lstm.fusion.head(head_input))
    cnn = TowerFusion(TASK, image_tower=CNN, hidden_size=16)
    assert cnn.modalities == ("image",) and cnn.token_embedding() is None
    assert cnn.image_preprocessing().size == 32
    for fusion in (GatedFusion, CrossAttentionFusion):
        with pytest.raises(ConfigError, match="combines a text and an image tower"):
            TowerFusion(TASK, text_tower=LSTM, fusion=fusion)
    with pytest.raises(ConfigError, match="no tower"):
        TowerFusion(TASK)


def test_late_fusion_averages_only_the_modalities_present():
    net = clip_fusion(fusion=LateFusion, hidden_size=16).eval()
    full = batch()
    features = net.features(full)
    text_logits = net.fusion.heads["text"](features.text)
    image_logits = net.fusion.heads["image"](features.image)
    torch.testing.assert_close(net(full), (text_logits + image_logits) / 2)
    text_only = net({k: v for k, v in full.items() if k != "pixel_values"})
    torch.testing.assert_close(text_only, text_logits)


def test_unimodal_heads_give_per_modality_logits_and_add_to_the_training_loss():
    net = clip_fusion(unimodal_loss_weight=0.5)
    logits, unimodal = net(batch(), with_unimodal=True)
    assert set(unimodal) == {"text", "image"} and unimodal["image"].shape == logits.shape
    module = EmotionClassifier(net, TASK.classes, optimizer=torch.optim.SGD)
    plain = EmotionClassifier(clip_fusion(), TASK.classes, optimizer=torch.optim.SGD)
    torch.manual_seed(0)
    b = batch()
    net.eval()  # no dropout: the two losses must differ by exactly the auxiliary term
    with_aux = module._step(b, "train")
    main = module.loss_fn(net(b), b["labels"])
    aux = torch.stack([module.loss_fn(u, b["labels"]) for u in net(b, True)[1].values()]).mean()
    torch.testing.assert_close(with_aux, main + 0.5 * aux)
    # train/loss counts the fused prediction's loss only, as val/loss does: the curves compare.
    train_loss = module.scores["train_"].compute_and_reset("train")[0]["train/loss"]
    torch.testing.assert_close(train_loss, main.detach())
    assert plain.network.unimodal_heads is not None and len(plain.network.unimodal_heads) == 0
    with pytest.raises(ConfigError, match="unimodal_loss_weight"):
        clip_fusion(unimodal_loss_weight=-1)


def test_a_frozen_tower_stays_in_eval_mode_and_keeps_its_batch_norm_statistics():
    net = TowerFusion(TASK, text_tower=LSTM, image_tower=partial(CNN, finetune="frozen"))
    net.train()
    assert not net.towers["image"].training and net.towers["text"].training
    before = {k: v.clone() for k, v in net.towers["image"].state_dict().items()}
    net(batch())
    after = net.towers["image"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.cached_modalities() == ("image",)
