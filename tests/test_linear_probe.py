"""The linear probe: logistic regression on frozen CLIP features, C chosen on validation,
fitted by emoclip-train, and then a checkpoint like any other. On the tiny random CLIP it
probes random features: a real, weak model."""

import json

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from emoclip.errors import ConfigError
from emoclip.models.linear_probe import ClipLinearProbe
from emoclip.models.task import TaskSpec
from emoclip.study.restore import restore_study
from emoclip.train import train
from tests.conftest import GEOMETRY, QUIET, TINY_CLIP, compose_train

BACKBONE = {"name_or_path": None, "config": GEOMETRY, "image_size": 32}


def blobs(n_classes: int, n: int, seed: int, spread: float = 1.5):
    """Gaussian clusters in the probe's feature size (2 x 32), one per class."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(n_classes, 64))
    labels = np.arange(n) % n_classes
    return (centres[labels] + spread * rng.normal(size=(n, 64))).astype(np.float32), labels


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_torch_layer_reproduces_the_chosen_logistic_regression(n_classes):
    task = TaskSpec(classes=tuple("abcd"[:n_classes]), vocab_size=20)
    probe = ClipLinearProbe(task, BACKBONE, c_grid=[0.001, 0.1, 10.0])
    train_set, val_set = blobs(n_classes, 200, seed=1), blobs(n_classes, 100, seed=2)
    selection = probe.select(train_set, val_set)
    scores = selection["probe/val_f1_macro_by_C"]
    assert set(scores) == {"0.001", "0.1", "10.0"}
    assert scores[str(selection["probe/C"])] == max(scores.values())
    reference = LogisticRegression(C=selection["probe/C"], max_iter=1000).fit(*train_set)
    with torch.no_grad():
        probabilities = probe.classifier(torch.from_numpy(val_set[0])).softmax(-1).numpy()
    np.testing.assert_allclose(probabilities, reference.predict_proba(val_set[0]), atol=1e-5)
    with pytest.raises(ConfigError, match="c_grid"):
        ClipLinearProbe(task, BACKBONE, c_grid=[0.0, 1.0])


def test_emoclip_train_fits_the_probe_and_its_checkpoint_evaluates_the_same(tmp_path):
    overrides = [
        "model=clip_linear_probe",
        "model/backbone=clip_tiny",
        *TINY_CLIP,
        "model.network.c_grid=[0.1,10.0]",
        "data.dataset.train_size=140",
        "data.dataset.val_size=70",
        "data.dataset.test_size=70",
        *QUIET,
    ]
    metrics = train(compose_train(overrides, tmp_path))
    assert metrics["probe/C"] in (0.1, 10.0)
    # The network's own validation score is the one the choice of C was made on.
    chosen = metrics["probe/val_f1_macro_by_C"][str(metrics["probe/C"])]
    assert metrics["val/f1_macro"] == pytest.approx(chosen, abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["probe/C"] == metrics["probe/C"]
    assert (tmp_path / "plots" / "confusion_test.png").is_file()

    study, _ = restore_study(tmp_path / "checkpoints" / "best.ckpt")
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).test(
        study.module, datamodule=study.datamodule, verbose=False
    )
    assert study.module.results["test"]["test/acc"] == pytest.approx(metrics["test/acc"])
    assert not any(p.requires_grad for p in study.module.network.clip.parameters())
