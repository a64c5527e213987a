import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from emoclip.study import config_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(
    os.environ.get("EMOCLIP_SHARED_DATASETS", REPO.parent / "shared" / "datasets")
)

# A small synthetic study: enough examples to learn from, quick on two CPU cores.
SMALL_DATA = [
    "data.dataset.train_size=420",
    "data.dataset.val_size=140",
    "data.dataset.test_size=140",
]
QUIET = ["callbacks.progress_bar.refresh_rate=0", "trainer.enable_model_summary=false"]


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The train config as the CLI would compose it, with the run folder at output_dir."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"no research datasets at {SHARED_DATASETS}")
    return SHARED_DATASETS
