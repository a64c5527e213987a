"""Short real trainings on the synthetic set: each model learns, and runs are repeatable."""

import pytest

from emoclip.train import train
from tests.conftest import QUIET, SMALL_DATA, compose_train

CHANCE = 1 / 7  # seven balanced classes


# The image baseline's CNN at the default study's size (conf/experiment/demo.yaml): 32 px,
# narrow channels; a fifth of the 48 px CNN's time, and it learns the drawn faces as well.
SMALL_CNN = ["model.image_tower.image_size=32", "model.image_tower.channels=[16,32,64]"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "epochs", "train_size", "extra"),
    [
        ("clip_fusion", 6, 420, []),
        ("text_lstm", 6, 420, []),
        ("image_cnn", 10, 700, SMALL_CNN),
    ],
    ids=["clip_fusion", "text_lstm", "image_cnn"],
)
def test_each_model_beats_chance_by_a_clear_margin(model, epochs, train_size, extra, tmp_path):
    overrides = [f"model={model}", f"trainer.max_epochs={epochs}", *SMALL_DATA, *QUIET, *extra]
    cfg = compose_train([*overrides, f"data.dataset.train_size={train_size}"], tmp_path)
    metrics = train(cfg)
    # 140 balanced test examples: chance accuracy is 0.14 +- 0.03, so 2x chance is > 4 sigma.
    assert metrics["test/acc"] > 2 * CHANCE, metrics["test/acc"]
    assert metrics["test/f1_macro"] > 1.5 * CHANCE, metrics["test/f1_macro"]


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    overrides = ["model=text_lstm", "trainer.max_epochs=2", *SMALL_DATA, *QUIET]
    first = train(compose_train(overrides, tmp_path / "a"))
    second = train(compose_train(overrides, tmp_path / "b"))
    # The same best epoch; its files differ only in naming their own run folder.
    assert first.pop("checkpoint")["epoch"] == second.pop("checkpoint")["epoch"]
    assert first == second
    third = train(compose_train([*overrides, "seed=7"], tmp_path / "c"))
    assert third["test/confusion_matrix"] != first["test/confusion_matrix"]
