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

# The smallest CLIP geometry that still has every part: for tests of the machinery, not of learning.
GEOMETRY = {
    "projection_dim": 32,
    "text": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    },
    "vision": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "patch_size": 8,
    },
}
# The same geometry as overrides of model/backbone=clip_tiny.
TINY_CLIP = [
    f"model.backbone.config.{side}.{key}={value}"
    for side in ("text", "vision")
    for key, value in GEOMETRY[side].items()
] + [f"model.backbone.config.projection_dim={GEOMETRY['projection_dim']}"]


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The train config as the CLI would compose it, with the run folder at output_dir."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"no research datasets at {SHARED_DATASETS}")
    return SHARED_DATASETS


def save_tiny_clip(folder: Path, image_size: int = 32):
    """A tiny random CLIP and its word-level tokenizer, saved as a hub model would be."""
    from transformers import CLIPModel

    from emoclip.data.sources.synthetic import SyntheticEmotions
    from emoclip.data.tokenizer import train_word_tokenizer
    from emoclip.models.clip_backbone import tiny_clip_config
    from emoclip.models.task import TaskSpec

    texts = [
        r.text for r in SyntheticEmotions(train_size=200, val_size=7, test_size=7).splits()["train"]
    ]
    tokenizer = train_word_tokenizer(texts, max_length=77)
    task = TaskSpec(
        classes=("a", "b"),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = CLIPModel(tiny_clip_config(GEOMETRY, image_size, task))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model
