import os
import tempfile
from pathlib import Path

# Each pytest-xdist worker gets its share of the CPUs for torch's threads (emoclip/system/threads.py
# reads OMP_NUM_THREADS, and so do the entry points the tests start): two workers with a
# thread per core each would oversubscribe the cores and run the suite about 40% slower.
# Set before torch is first imported, which reads it then.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    from emoclip.system.threads import available_cpus

    _share = available_cpus()[0] // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from emoclip.study.build import config_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The key that signs caches (emoclip/system/integrity.py): the tests' own, never the user's.
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


# --- Scheduling and sharing: what keeps `make test` within its ten minutes -----------------


def pytest_itemcollected(item):
    """With `pytest -n N --dist loadgroup` (make test): the tests of a file that share a
    module-scoped fixture (a trained run; the workspace the README's commands run in, in
    order) run together on one worker, in order; every other test is scheduled on its own, so
    that a heavy file's trainings spread over the workers."""
    if _uses_module_state(item):
        item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """pytest-xdist (3.8) names a test's group by suffixing `item._nodeid`, which pytest 9 no
    longer reads (it keeps the id in `item._id`): without this, --dist loadgroup would spread
    a group's tests over the workers."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = sorted({str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args})
        if groups and "@" not in item.nodeid and not isinstance(getattr(item, "_id", ""), str):
            item._id = type(item._id).parse(f"{item.nodeid}@{'_'.join(groups)}")


def _uses_module_state(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return True  # not a plain test function: keep it with its file
    return any(
        str(getattr(definition, "scope", "function")) in ("module", "package", "class")
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


@pytest.fixture(scope="session", autouse=True)
def synthetic_splits_drawn_once():
    """Each synthetic split drawn once per test process: a draw is a function of the source's
    settings alone (records are frozen), and drawing the faces was a fifth of a small run."""
    from emoclip.data.sources.synthetic import SyntheticEmotions

    draw = SyntheticEmotions._split
    drawn = {}

    def drawn_once(self, split, index):
        key = (self.classes, self.image_size, self.text_noise, self.seed, self.sizes[split], index)
        if key not in drawn:
            drawn[key] = draw(self, split, index)
        return list(drawn[key])

    patch = pytest.MonkeyPatch()
    patch.setattr(SyntheticEmotions, "_split", drawn_once)
    yield
    patch.undo()
