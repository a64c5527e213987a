"""How much of each tower trains (`model/finetune=`, or a tower's own `finetune`): each mode
moves exactly its weights, whatever the tower's architecture calls its layers."""

import copy
import re
from functools import partial

import pytest
import torch

from emoclip.errors import ConfigError
from emoclip.models.fusion import CrossAttentionFusion
from emoclip.models.tower_fusion import TowerFusion
from emoclip.models.towers.cnn import CNNImageTower
from emoclip.models.towers.hf import HFImageTower, HFTextTower
from emoclip.models.towers.lstm import LSTMTextTower
from emoclip.study.build import build_study
from tests.conftest import GEOMETRY, clip_towers, compose_train, save_tiny_bert, save_tiny_vit
from tests.test_tower_fusion import TASK, batch

TWO_LAYERS = copy.deepcopy(GEOMETRY)
TWO_LAYERS["text"]["num_hidden_layers"] = TWO_LAYERS["vision"]["num_hidden_layers"] = 2
BACKBONE = {"name_or_path": None, "config": TWO_LAYERS, "image_size": 32}
LORA = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": None}

# Which CLIP weights each mode trains (with trainable_layers=1 of 2); the head always trains.
TRAINS = {
    "full": lambda name: True,
    "partial": lambda name: (
        re.search(r"layers\.1\.|final_layer_norm|post_layernorm|_projection", name) is not None
    ),
    "lora": lambda name: re.search(r"self_attn\.(q|v)_proj\.lora_(A|B)\.", name) is not None,
    "frozen": lambda name: False,
}


def network(mode, **kwargs):
    torch.manual_seed(0)
    return TowerFusion(
        TASK,
        **clip_towers(BACKBONE),
        finetune=mode,
        trainable_layers=1,
        lora=LORA,
        hidden_size=16,
        **kwargs,
    )


def train_steps(net, b=None, steps=2):
    """Two AdamW steps: LoRA's B starts at zero, so A only gets a gradient in the second."""
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    b = batch() if b is None else b
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(b), torch.arange(len(b["labels"])) % 3).backward()
        optimizer.step()


def check_moves_exactly(net, trains, b=None):
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    train_steps(net, b)
    for name, p in net.named_parameters():
        in_tower = name.startswith("towers.")
        expected = not in_tower or trains(name.split(".", 2)[2])
        assert p.requires_grad == expected, name
        assert (not torch.equal(p, before[name])) == expected, name


@pytest.mark.parametrize("mode", list(TRAINS))
def test_a_training_step_moves_exactly_the_weights_the_mode_trains(mode):
    net = network(mode, cache_frozen_towers=False)
    check_moves_exactly(net, TRAINS[mode])
    if mode == "lora":
        adapted = [n for n, _ in net.named_modules() if n.endswith(("q_proj", "v_proj"))]
        assert len(adapted) == 2 * 2 * 2  # 2 projections x 2 layers x 2 towers


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    save_tiny_bert(root / "bert")
    save_tiny_vit(root / "vit")
    return root


def text_batch(n=6):
    b = batch(n)
    del b["pixel_values"]
    return b


def image_batch(n=6):
    b = batch(n)
    del b["input_ids"], b["attention_mask"]
    return b


# For towers of other architectures, what `partial` (last 1 layer) and `lora` train: the
# names are each architecture's own (BERT's encoder.layer.N, ViT's too, LSTM's *_lN, the
# CNN's blocks).
OTHER_TOWERS = {
    "hf_bert": (
        "text",
        lambda root: partial(HFTextTower, name_or_path=str(root / "bert")),
        {
            "partial": r"encoder\.layers?\.1\.",
            "lora": r"attention\.(self\.)?(query|value|q_proj|v_proj)\.lora_",
        },
    ),
    "hf_vit": (
        "image",
        lambda root: partial(HFImageTower, name_or_path=str(root / "vit")),
        {
            # transformers 5 names ViT's layers encoder.layers.N.attention.q_proj, ...
            "partial": r"encoder\.layers?\.1\.|^encoder\.layernorm\.",
            "lora": r"attention\.(query|value|q_proj|v_proj)\.lora_",
        },
    ),
    "lstm": (
        "text",
        lambda root: partial(LSTMTextTower, embed_dim=8, hidden_size=8, num_layers=2),
        {"partial": r"^lstm\..*_l1(_reverse)?$", "lora": r"^embedding\.lora_"},
    ),
    "cnn": (
        "image",
        lambda root: partial(CNNImageTower, image_size=32, channels=[4, 8]),
        {"partial": r"^features\.1\.", "lora": r"^features\.\d\.(0|3)\.lora_"},
    ),
}


@pytest.mark.parametrize("mode", ["full", "partial", "lora", "frozen"])
@pytest.mark.parametrize("kind", list(OTHER_TOWERS))
def test_every_mode_works_for_every_kind_of_tower(kind, mode, tiny_hf):
    modality, tower, expected = OTHER_TOWERS[kind]
    torch.manual_seed(0)
    net = TowerFusion(
        TASK,
        **{f"{modality}_tower": tower(tiny_hf)},
        finetune=mode,
        trainable_layers=1,
        lora=LORA,
        hidden_size=16,
        cache_frozen_towers=False,
    )
    rules = {"full": lambda n: True, "frozen": lambda n: False}
    trains = rules.get(mode) or (lambda n: re.search(expected[mode], n) is not None)
    check_moves_exactly(net, trains, text_batch() if modality == "text" else image_batch())


def test_a_mixed_study_freezes_one_tower_and_trains_the_other():
    net = TowerFusion(TASK, **clip_towers(BACKBONE, text={"finetune": "frozen"}), finetune="full")
    assert not any(p.requires_grad for p in net.towers["text"].parameters())
    assert all(p.requires_grad for p in net.towers["image"].parameters())
    assert net.cached_modalities() == ("text",)
    assert not any(p.requires_grad for p in net.backbone_parameters() if p is None)
    backbone = {id(p) for p in net.backbone_parameters()}
    assert backbone == {id(p) for p in net.towers["image"].parameters()}
    net = TowerFusion(TASK, **clip_towers(BACKBONE, image={"finetune": "lora"}), lora=LORA)
    assert not any("lora_" in n for n, _ in net.towers["text"].named_parameters())
    assert any("lora_" in n for n, _ in net.towers["image"].named_parameters())
    net = network("frozen", cache_frozen_towers=False)
    assert not any(p.requires_grad for p in net.towers.parameters())
    assert net.cached_modalities() == ()  # frozen towers without the cache: augmentation works


@pytest.mark.parametrize("mode", ["partial", "lora"])
def test_gradient_checkpointing_still_trains_the_layers_behind_frozen_ones(mode):
    net = network(mode, gradient_checkpointing=True)
    torch.nn.functional.cross_entropy(net(batch()), torch.arange(6) % 3).backward()
    trained = [(n, p) for n, p in net.towers.named_parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for _, p in trained)
    assert any(p.grad.abs().sum() > 0 for n, p in trained if "layers.1." in n)
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        TowerFusion(TASK, text_tower=LSTMTextTower, gradient_checkpointing=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"finetune": "half"}, "model.network.finetune='half'"),
        ({"finetune": "partial", "trainable_layers": 3}, "trainable_layers=3.*0..2"),
        ({"towers": {"text": {"finetune": "some"}}}, "model.text_tower.finetune='some'"),
        ({"finetune": "lora", "lora": {"rank": 4}}, "model.network.lora.*rank"),
        (
            {"finetune": "lora", "lora": {"target_modules": ["no_such_layer"]}},
            "model.network.lora, in model.text_tower",
        ),
        ({"finetune": "frozen", "fusion": CrossAttentionFusion}, "frozen.*CrossAttentionFusion"),
    ],
)
def test_bad_finetune_settings_name_their_key(kwargs, match):
    own = kwargs.pop("towers", {})
    with pytest.raises(ConfigError, match=match):
        TowerFusion(TASK, **clip_towers(BACKBONE, **own), **kwargs)


def test_frozen_mode_turns_augmentation_off_in_the_config(tmp_path):
    cfg = compose_train(["model/finetune=frozen"], tmp_path)
    assert cfg.model.network.finetune == "frozen" and cfg.data.augment is None
    assert compose_train([], tmp_path).data.augment is not None
    with pytest.raises(ConfigError, match="data.augment=null"):
        build_study(compose_train(["model.network.finetune=frozen"], tmp_path))
    # A frozen text tower beside a trained image tower caches the text only: augmentation stays.
    cfg = compose_train(["model.text_tower.finetune=frozen"], tmp_path)
    assert build_study(cfg).module.network.cached_modalities() == ("text",)
