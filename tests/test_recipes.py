"""Each tower trains with its own recipe: the optimiser's parameter groups and schedules."""

import pytest
import torch

from emoclip.errors import ConfigError
from emoclip.models.recipes import Recipe, rate_factor, read_recipe
from emoclip.study.build import build_study
from tests.conftest import SMALL_DATA, compose_train, save_tiny_bert


class FakeTrainer:
    estimated_stepping_batches = 100


def optimizer_of(study):
    module = study.module
    module._trainer = FakeTrainer()  # configure_optimizers asks it for the number of steps
    return module.configure_optimizers()


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert") / "bert"
    save_tiny_bert(folder)
    return folder


def test_a_pretrained_towers_group_carries_its_learning_rate_warmup_and_decay(bert, tmp_path):
    overrides = ["model=text_lstm", "model/text_tower=hf", f"model.text_tower.name_or_path={bert}"]
    study = build_study(compose_train([*overrides, *SMALL_DATA], tmp_path))
    configured = optimizer_of(study)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"head", "text_tower"}
    # The head: model.optimizer (text_lstm's lr); the tower: conf/model/text_tower/hf.yaml's.
    assert groups["head"]["lr"] == pytest.approx(2e-3)
    assert groups["head"]["weight_decay"] == pytest.approx(0.01)
    assert groups["text_tower"]["initial_lr"] == pytest.approx(1e-4)
    tower_ids = {id(p) for p in study.module.network.towers["text"].parameters()}
    assert {id(p) for p in groups["text_tower"]["params"]} == tower_ids
    assert not tower_ids & {id(p) for p in groups["head"]["params"]}
    # Warmup over 6 of the 100 steps, then linear decay to 0; the head stays constant.
    assert configured["lr_scheduler"]["interval"] == "step"
    assert groups["text_tower"]["lr"] < 1e-4 / 5
    for _ in range(6):
        optimizer.step()
        scheduler.step()
    assert groups["text_tower"]["lr"] == pytest.approx(1e-4)
    for _ in range(47):
        optimizer.step()
        scheduler.step()
    assert groups["text_tower"]["lr"] == pytest.approx(0.5e-4, rel=0.02)
    assert groups["head"]["lr"] == pytest.approx(2e-3)


def test_from_scratch_towers_train_as_the_head(tmp_path):
    study = build_study(compose_train(["model=text_lstm", *SMALL_DATA], tmp_path))
    optimizer = optimizer_of(study)
    assert isinstance(optimizer, torch.optim.AdamW)  # no schedule: as before towers had recipes
    assert len(optimizer.param_groups) == 1  # the head's, as before towers had recipes
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)


def test_backbone_lr_replaces_a_pretrained_towers_rate(bert, tmp_path):
    overrides = [
        "model=text_lstm",
        "model/text_tower=hf",
        f"model.text_tower.name_or_path={bert}",
        "model.backbone_lr=3e-5",
        *SMALL_DATA,
    ]
    optimizer = optimizer_of(build_study(compose_train(overrides, tmp_path)))["optimizer"]
    assert {g["name"]: g["initial_lr"] for g in optimizer.param_groups}["text_tower"] == 3e-5


def test_cosine_decay_ends_at_zero_and_a_wrong_recipe_is_named():
    factor = rate_factor(Recipe(lr=1.0, warmup=0.1, decay="cosine"), 100)
    assert factor(0) < 0.2 and factor(10) == pytest.approx(1.0) and factor(100) == 0.0
    assert rate_factor(Recipe(warmup=0.1, decay="linear"), float("inf"))(0) == 1.0
    with pytest.raises(ConfigError, match=r"model.text_tower.optim.decay='step'"):
        read_recipe({"decay": "step"}, "model.text_tower")
    with pytest.raises(ConfigError, match="unknown keys"):
        read_recipe({"learning_rate": 1e-4}, "model.text_tower")
