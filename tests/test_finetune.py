"""How much of CLIP trains (`model/finetune=`): each mode moves exactly its weights."""

import copy
import re

import pytest
import torch

from emoclip.errors import ConfigError
from emoclip.models.clip_fusion import ClipFusion
from emoclip.models.fusion import CrossAttentionFusion
from emoclip.study import build_study
from tests.conftest import GEOMETRY, compose_train
from tests.test_clip_fusion import TASK, batch

TWO_LAYERS = copy.deepcopy(GEOMETRY)
TWO_LAYERS["text"]["num_hidden_layers"] = TWO_LAYERS["vision"]["num_hidden_layers"] = 2
BACKBONE = {"name_or_path": None, "config": TWO_LAYERS, "image_size": 32}
LORA = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}

# Which CLIP weights each mode trains (with trainable_layers=1 of 2); the head always trains.
TRAINS = {
    "full": lambda name: "logit_scale" not in name,
    "partial": lambda name: (
        re.search(r"layers\.1\.|final_layer_norm|post_layernorm|_projection", name) is not None
    ),
    "lora": lambda name: re.search(r"self_attn\.(q|v)_proj\.lora_(A|B)\.", name) is not None,
    "frozen": lambda name: False,
}


def network(mode, **kwargs):
    torch.manual_seed(0)
    return ClipFusion(
        TASK, BACKBONE, finetune=mode, trainable_layers=1, lora=LORA, hidden_size=16, **kwargs
    )


def train_steps(net, steps=2):
    """Two AdamW steps: LoRA's B starts at zero, so A only gets a gradient in the second."""
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    b = batch()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(b), torch.arange(6) % 3).backward()
        optimizer.step()


@pytest.mark.parametrize("mode", list(TRAINS))
def test_a_training_step_moves_exactly_the_weights_the_mode_trains(mode):
    net = network(mode)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    train_steps(net)
    for name, p in net.named_parameters():
        expected = not name.startswith("clip.") or TRAINS[mode](name.removeprefix("clip."))
        assert p.requires_grad == expected, name
        assert (not torch.equal(p, before[name])) == expected, name
    if mode == "lora":
        adapted = [n for n, _ in net.named_modules() if n.endswith(("q_proj", "v_proj"))]
        assert len(adapted) == 2 * 2 * 2  # 2 projections x 2 layers x 2 encoders


def test_finetune_towers_leaves_the_other_encoder_frozen():
    net = network("full", finetune_towers=["image"])
    assert not any(p.requires_grad for p in net.clip.text_model.parameters())
    assert all(p.requires_grad for p in net.clip.vision_model.parameters())
    net = network("lora", finetune_towers=["text"])
    assert any("lora_" in n for n, _ in net.clip.text_model.named_parameters())
    assert not any("lora_" in n for n, _ in net.clip.vision_model.named_parameters())
    net = network("full", finetune_towers=[])
    assert not any(p.requires_grad for p in net.clip.parameters())
    assert not net.caches_features  # frozen encoders without the cache: augmentation works


@pytest.mark.parametrize("mode", ["partial", "lora"])
def test_gradient_checkpointing_still_trains_the_layers_behind_frozen_ones(mode):
    net = network(mode, gradient_checkpointing=True)
    torch.nn.functional.cross_entropy(net(batch()), torch.arange(6) % 3).backward()
    trained = [(n, p) for n, p in net.clip.named_parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for _, p in trained)
    assert any(p.grad.abs().sum() > 0 for n, p in trained if "layers.1." in n)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"finetune": "half"}, "model.network.finetune='half'"),
        ({"finetune": "partial", "trainable_layers": 3}, "trainable_layers=3.*0..2"),
        ({"finetune_towers": ["audio"]}, "finetune_towers"),
        ({"finetune": "lora", "lora": {"rank": 4}}, "model.network.lora.*rank"),
        ({"finetune": "frozen", "fusion": CrossAttentionFusion}, "frozen.*CrossAttentionFusion"),
    ],
)
def test_bad_finetune_settings_name_their_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ClipFusion(TASK, BACKBONE, **kwargs)


def test_frozen_mode_turns_augmentation_off_in_the_config(tmp_path):
    cfg = compose_train(["model/finetune=frozen"], tmp_path)
    assert cfg.model.network.finetune == "frozen" and cfg.data.augment is None
    assert compose_train([], tmp_path).data.augment is not None
    with pytest.raises(ConfigError, match="data.augment=null"):
        build_study(compose_train(["model.network.finetune=frozen"], tmp_path))
