"""Cross-data evaluation scores every example of the other set by default (emoclip/study/cross_dataset.py)."""

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from emoclip.evaluate import evaluate
from emoclip.study.build import config_dir
from emoclip.train import train
from tests.conftest import QUIET, SMALL_DATA, compose_train


def compose_eval(overrides, output_dir):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("eval", overrides=[*overrides, f"paths.output_dir={output_dir}"])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An image CNN trained for a few batches on the synthetic faces (the seven CK+ emotions)."""
    run_dir = tmp_path_factory.mktemp("cnn")
    overrides = ["model=image_cnn", "model.image_tower.image_size=32", "debug=limit"]
    train(compose_train([*overrides, *SMALL_DATA, *QUIET], run_dir))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def forty_images(tmp_path_factory):
    """A class-folder set of 40 images nobody trained on: 20 happy, 20 sad faces (noise)."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for label in ("happiness", "sadness"):
        (root / label).mkdir()
        for i in range(20):
            pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}_{i}.png")
    return root


def data(root):
    return ["data=image_folders", f"data.root={root}"]


def test_cross_data_evaluation_scores_every_example_of_the_other_set(
    checkpoint, forty_images, tmp_path, capsys
):
    metrics = evaluate(compose_eval([f"ckpt_path={checkpoint}", *data(forty_images)], tmp_path))
    cross = metrics["cross_dataset"]
    assert cross["scored"] == "all" and cross["test_examples"] == 40
    assert sum(map(sum, metrics["test/confusion_matrix"])) == 40
    assert len(json.loads((tmp_path / "splits.json").read_text())["test"]) == 40
    assert "40 examples of data=image_folders scored (every example" in capsys.readouterr().out
    # Its floor: the scored set's own majority class (it has no train split).
    assert metrics["majority_of"] == "the scored set" and metrics["test_majority/acc"] == 0.5


def test_a_key_scores_only_the_test_part_of_its_split(checkpoint, forty_images, tmp_path):
    overrides = [f"ckpt_path={checkpoint}", *data(forty_images), "cross_dataset_split=test"]
    cross = evaluate(compose_eval(overrides, tmp_path))["cross_dataset"]
    assert cross["scored"] == "test" and 0 < cross["test_examples"] < 40
