"""GPU-only: the gpu trainer config trains in mixed precision. Skipped without CUDA."""

import pytest
import torch

from emoclip.train import train
from tests.conftest import QUIET, SMALL_DATA, compose_train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32-true"])
@pytest.mark.parametrize("model", ["clip_fusion", "text_lstm", "image_cnn"])
def test_gpu_trainer_learns(model, precision, tmp_path):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = compose_train(
        [
            f"model={model}",
            "trainer=gpu",
            f"trainer.precision={precision}",
            "trainer.max_epochs=6",
            "data.dataset.train_size=700",
            *SMALL_DATA[1:],
            *QUIET,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 2 / 7, metrics
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))


def test_frozen_features_are_encoded_on_the_gpu_under_auto_precision(tmp_path):
    cache = tmp_path / "cache"
    cfg = compose_train(
        [
            "trainer=gpu",
            "model/finetune=frozen",
            "trainer.max_epochs=2",
            f"paths.cache_dir={cache}",
            *SMALL_DATA,
            *QUIET,
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
    assert len(list((cache / "features").glob("*.safetensors"))) == 3
