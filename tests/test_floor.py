"""Every run knows its floor: the majority class beside the model, and degenerate models."""

import json
import logging

import pytest

from emoclip.output.floor import assess, constant_scores, floors, noise
from emoclip.report import main as report
from emoclip.train import train
from tests.conftest import QUIET, SMALL_DATA, compose_train
from tests.test_report import table


class R:
    def __init__(self, label):
        self.label = label


def records(**splits):
    return {split: [R(label) for label in labels] for split, labels in splits.items()}


CLASSES = ("neg", "neu", "pos")


def test_the_floor_is_the_train_majority_scored_on_val_and_test():
    data = records(train=["pos"] * 6 + ["neg"] * 4, val=["pos", "neg"], test=["pos"] * 3 + ["neu"])
    floor = floors(data, CLASSES)
    assert floor["majority_class"] == "pos" and floor["majority_of"] == "train"
    assert floor["val_majority/acc"] == 0.5 and floor["test_majority/acc"] == 0.75
    # macro-F1 over the classes present: pos 2*0.75/1.75, neu 0 (absent neg does not count).
    assert floor["test_majority/f1_macro"] == pytest.approx((2 * 0.75 / 1.75) / 2)
    # A set scored whole (cross-data evaluation) has no train split: its own majority.
    assert floors(records(test=["neu", "neu", "pos"]), CLASSES)["majority_class"] == "neu"
    assert constant_scores(["neg", "pos"], "neg", CLASSES)["acc"] == 0.5


def test_one_class_or_within_noise_of_the_floor_is_degenerate():
    data = records(train=["pos"] * 60 + ["neg"] * 40, val=["pos"] * 60 + ["neg"] * 40)
    data["test"] = data["val"]
    floor = floors(data, CLASSES)
    one_class = [[0, 0, 40], [0, 0, 0], [0, 0, 60]]
    fine = [[30, 0, 10], [0, 0, 0], [10, 0, 50]]
    results = {
        "val": {"val/f1_macro": 0.79, "val/confusion_matrix": fine},
        "test": {"test/f1_macro": 0.375, "test/confusion_matrix": one_class},
        "test_text_only": {
            "test_text_only/f1_macro": 0.79,
            "test_text_only/confusion_matrix": fine,
        },
        # Two classes predicted, but macro-F1 only 0.05 above the floor's (2 SE = 0.098).
        "test_image_only": {"test_image_only/f1_macro": floor["test_majority/f1_macro"] + 0.05},
    }
    judged = assess(results, data, CLASSES)
    assert judged["degenerate"] is True
    assert judged["degenerate_ablations"] == {"text_only": False, "image_only": True}
    assert any("predicts one class (pos) for all 100" in w for w in judged["degenerate_why"])
    assert 2 * noise(0.6, 100) == pytest.approx(0.098, abs=1e-3)
    results["test"] = {"test/f1_macro": 0.79, "test/confusion_matrix": fine}
    assert assess(results, data, CLASSES)["degenerate"] is False


def test_a_one_class_model_ends_with_a_warning_in_metrics_and_the_report(tmp_path, caplog):
    # Only the first class's examples weigh in the loss: the model learns to predict it alone.
    weights = "[1,0,0,0,0,0,0]"
    overrides = ["model=text_lstm", "trainer.max_epochs=1", f"model.class_weights={weights}"]
    with caplog.at_level(logging.WARNING):
        metrics = train(compose_train([*overrides, *SMALL_DATA, *QUIET], tmp_path / "run"))
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert stored["degenerate"] is True
    for key in ("val_majority/acc", "val_majority/f1_macro", "test_majority/acc"):
        assert 0 < stored[key] < 1
    assert stored["test_majority/f1_macro"] == metrics["test_majority/f1_macro"]
    assert "WARNING: the model is degenerate" in caplog.text
    report([str(tmp_path)])
    row = table((tmp_path / "report.md").read_text(), "row")[0]
    assert row["degenerate"] == "DEGENERATE (1 of 1)"
    margin = stored["test/f1_macro"] - stored["test_majority/f1_macro"]
    assert row["over majority"] == f"{margin:+.4f}"
