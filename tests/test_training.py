"""Short real trainings on the synthetic set: each model learns, and runs are repeatable."""

import pytest

from emoclip.train import train
from tests.conftest import QUIET, SMALL_DATA, compose_train

CHANCE = 1 / 7  # seven balanced classes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "epochs"), [("clip_fusion", 6), ("text_lstm", 6), ("image_cnn", 8)]
)
def test_each_model_beats_chance_by_a_clear_margin(model, epochs, tmp_path):
    cfg = compose_train(
        [f"model={model}", f"trainer.max_epochs={epochs}", "logger=csv", *SMALL_DATA, *QUIET],
        tmp_path,
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 3 * CHANCE, metrics["test/acc"]
    assert metrics["test/f1_macro"] > 2.5 * CHANCE, metrics["test/f1_macro"]


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    overrides = ["model=text_lstm", "trainer.max_epochs=2", *SMALL_DATA, *QUIET]
    first = train(compose_train(overrides, tmp_path / "a"))
    second = train(compose_train(overrides, tmp_path / "b"))
    assert first == second
    third = train(compose_train([*overrides, "seed=7"], tmp_path / "c"))
    assert third["test/confusion_matrix"] != first["test/confusion_matrix"]
