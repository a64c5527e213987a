import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from emoclip.study import config_dir

REPO = Path(__file__).resolve().parents[1]
# The key that signs caches (emoclip/integrity.py): the tests' own, never the user's.
os.environ.setdefault(
    "EMOCLIP_SECRET_FILE", str(Path(tempfile.mkdtemp(prefix="emoclip-key-")) / "secret.key")
)
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


def clip_towers(backbone: dict, **tower_settings) -> dict:
    """TowerFusion's tower arguments for CLIP's two halves of `backbone` (a dict as in
    model.backbone), each with `tower_settings` (e.g. finetune)."""
    from functools import partial

    from emoclip.models.towers.clip import ClipImageTower, ClipTextTower

    text = tower_settings.pop("text", {})
    image = tower_settings.pop("image", {})
    return {
        "text_tower": partial(ClipTextTower, backbone=backbone, **tower_settings, **text),
        "image_tower": partial(
            ClipImageTower, backbone=backbone, normalization="half", **tower_settings, **image
        ),
    }


def synthetic_texts(n: int = 200) -> list[str]:
    from emoclip.data.sources.synthetic import SyntheticEmotions

    return [
        r.text for r in SyntheticEmotions(train_size=n, val_size=7, test_size=7).splits()["train"]
    ]


def save_tiny_bert(folder: Path, layers: int = 2):
    """A tiny random BERT and a WordPiece tokenizer of the synthetic set's words, saved as a
    hub model is (config.json, model.safetensors, vocab.txt, tokenizer files)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from emoclip.data.tokenizer import train_word_tokenizer

    words = [w for w in train_word_tokenizer(synthetic_texts()).get_vocab() if w.isalpha()]
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(specials + sorted(words)) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    model = BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def save_tiny_vit(folder: Path, image_size: int = 32, mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3)):
    """A tiny random ViT and its image processor's config (size, mean, std), saved."""
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size,
        patch_size=8,
    )
    model = ViTModel(config)
    model.save_pretrained(folder)
    processor = ViTImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=list(mean), image_std=list(std)
    )
    processor.save_pretrained(folder)
    return model
