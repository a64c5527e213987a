"""Frozen towers (model/finetune=frozen, or one tower's own finetune=frozen): their features
computed once, cached on disk under a key of the towers (class, settings, weights),
preprocessing and data; a changed key recomputes, a stale file is never read."""

import csv
import hashlib
import json
import logging
import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors import safe_open
from safetensors.torch import save_file

from emoclip.data.datamodule import FeatureSplit
from emoclip.data.images import normalize
from emoclip.errors import ConfigError
from emoclip.evaluate import evaluate
from emoclip.study.build import build_study, build_trainer, config_dir, prepare_process
from emoclip.study.feature_cache import content_digest
from emoclip.train import train
from tests.conftest import QUIET, compose_train, save_tiny_bert

SPLITS = {"train", "val", "test"}
FROZEN = [
    "model/finetune=frozen",
    "data.dataset.train_size=140",
    "data.dataset.val_size=70",
    "data.dataset.test_size=70",
    "model.backbone.image_size=32",
    "model.backbone.config.text.num_hidden_layers=1",
    "model.backbone.config.vision.num_hidden_layers=1",
    *QUIET,
]


def set_up(run_dir, cache_dir, *overrides, change_weights=False, change=None):
    """Build the study and let a validation (the head on cached features: quick) run its
    setup, which fills the cache; `change` edits the built study first."""
    cfg = compose_train([*FROZEN, f"paths.cache_dir={cache_dir}", *overrides], run_dir)
    prepare_process(cfg.seed)
    study = build_study(cfg)
    if change_weights:
        with torch.no_grad():
            study.module.network.towers["text"].encoder.text_projection.weight[0, 0] += 0.01
    if change is not None:
        change(study)
    trainer = build_trainer(
        cfg, with_callbacks=False, with_loggers=False, study_callbacks=study.callbacks
    )
    study.datamodule.setup("validate")
    raw = dict(study.datamodule.encoded)
    trainer.validate(study.module, datamodule=study.datamodule, verbose=False)
    return study, study.callbacks[0], raw


def cache_files(cache_dir):
    return {p.name: p.stat().st_mtime_ns for p in (cache_dir / "features").glob("*.safetensors")}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One filled cache, shared by the tests that only add to it."""
    root = tmp_path_factory.mktemp("feature_cache")
    study, cache, _ = set_up(root / "run", root / "cache")
    assert set(cache.build_seconds) == SPLITS and cache.reused == []
    return root / "cache", cache_files(root / "cache"), study


def test_the_same_key_reads_the_cache_back_without_recomputing(base, tmp_path):
    cache_dir, files, first = base
    assert len(files) == 3
    study, cache, _ = set_up(tmp_path / "run", cache_dir)
    assert cache.build_seconds == {} and sorted(cache.reused) == sorted(SPLITS)
    assert cache_files(cache_dir) == files  # nothing rewritten
    for split in SPLITS:
        read, built = study.datamodule.encoded[split], first.datamodule.encoded[split]
        assert isinstance(read, FeatureSplit)
        assert torch.equal(read.pixels, built.pixels) and torch.equal(
            read.input_ids, built.input_ids
        )


@pytest.mark.parametrize(
    "change",
    [
        ["model.backbone.normalization=clip"],  # preprocessing: pixel statistics
        ["model.backbone.image_size=48"],  # preprocessing: image size
        ["model.backbone.tokenizer.max_length=8"],  # preprocessing: tokenizer truncation
        ["seed=1"],  # weights: another random initialisation
        ["data.dataset.seed=1"],  # data: other examples under the same ids
    ],
    ids=lambda change: change[0].split("=")[0],
)
def test_a_changed_key_recomputes_every_split(base, change, tmp_path):
    cache_dir, files, _ = base
    _, cache, _ = set_up(tmp_path / "run", cache_dir, *change)
    assert set(cache.build_seconds) == SPLITS and cache.reused == []
    after = cache_files(cache_dir)
    assert {k: after[k] for k in files} == files  # the old entries are left as they were
    assert len(after) >= len(files) + 3


def test_changed_weights_with_the_same_seed_recompute(base, tmp_path):
    cache_dir, _, _ = base
    _, cache, _ = set_up(tmp_path / "run", cache_dir, change_weights=True)
    assert set(cache.build_seconds) == SPLITS


def test_a_corrupt_or_foreign_file_is_never_read(base, tmp_path):
    cache_dir = tmp_path / "cache"
    (cache_dir / "features").mkdir(parents=True)
    for name in base[1]:  # the base study's own files, not those other tests added
        shutil.copy(base[0] / "features" / name, cache_dir / "features" / name)
    train_file, val_file, test_file = (
        next(cache_dir.glob(f"features/{split}-*")) for split in ("train", "val", "test")
    )
    train_file.write_bytes(b"not a safetensors file")
    shutil.copy(test_file, val_file)  # a valid file, but for another key
    study, cache, _ = set_up(tmp_path / "run", cache_dir)
    assert set(cache.build_seconds) == {"train", "val"} and cache.reused == ["test"]
    torch.testing.assert_close(
        study.datamodule.encoded["val"].pixels, base[2].datamodule.encoded["val"].pixels
    )


def test_an_unwritable_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="paths.cache_dir"):
        set_up(tmp_path / "run", blocker)


def test_cached_features_are_the_encoders_output(base, tmp_path):
    study, _, raw = set_up(tmp_path / "run", base[0])
    network, dm = study.module.network.eval(), study.datamodule
    items = [raw["val"][i] for i in range(16)]
    batch = dm.collate()(items)
    batch["pixel_values"] = normalize(batch.pop("pixels"), dm.mean, dm.std)
    with torch.no_grad():
        image, text = network.encode(batch, "image"), network.encode(batch, "text")
    cached = dm.encoded["val"]
    torch.testing.assert_close(cached.pixels[:16], image)
    torch.testing.assert_close(cached.input_ids[:16], text)
    cached_batch = dm.collate()([cached[i] for i in range(16)])
    assert {"text_features", "image_features"} <= cached_batch.keys()
    assert "pixels" not in cached_batch and "input_ids" not in cached_batch
    with torch.no_grad():
        torch.testing.assert_close(network(cached_batch), network(batch))


@pytest.mark.slow
def test_the_head_learns_from_cached_features_and_evaluates_from_the_cache(tmp_path):
    # A random tiny CLIP's features say little about the class (its pooled text feature mostly
    # encodes the sentence's length), so the head learns slowly; it must still fit the
    # training set and beat chance on the test split.
    overrides = [
        *FROZEN,
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.dataset.train_size=420",
        "data.dataset.test_size=140",
        "data.batch_size=16",
        "trainer.max_epochs=8",
        "callbacks.early_stopping=null",
        "model.optimizer.lr=3e-3",
    ]
    metrics = train(compose_train(overrides, tmp_path / "run"))
    losses = [float(r["train/loss"]) for r in history(tmp_path / "run")]
    assert losses[-1] < 0.9 * losses[0], losses
    # 140 balanced test examples: chance is 0.14 +- 0.03.
    assert metrics["test/acc"] > 0.2, metrics["test/acc"]
    files = cache_files(tmp_path / "cache")

    with initialize_config_dir(config_dir(), version_base="1.3"):
        eval_cfg = compose(
            "eval",
            overrides=[
                f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'best.ckpt'}",
                f"paths.output_dir={tmp_path / 'eval'}",
            ],
        )
    evaluated = evaluate(eval_cfg)
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert cache_files(tmp_path / "cache") == files


def history(run_dir):
    return [r for r in csv.DictReader((run_dir / "metrics.csv").open()) if r.get("train/loss")]


def forge(path, change, fit_the_record=False):
    """Rewrite a cache file under its own key with other content; the file's record of what it
    held is kept (a careless forger) or made to fit (a careful one)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    tensors = {k: change(v).contiguous() for k, v in tensors.items()}
    if fit_the_record:
        metadata["shapes"] = json.dumps({k: list(v.shape) for k, v in tensors.items()})
        metadata["digest"] = content_digest(tensors)  # with the key: only the user could
    if fit_the_record == "unkeyed":  # what anyone can compute: a plain sha256 of the content
        digest = hashlib.sha256()
        for name in sorted(tensors):
            digest.update(f"{name}:{tensors[name].dtype}:{tuple(tensors[name].shape)};".encode())
            digest.update(tensors[name].reshape(-1).view(torch.uint8).numpy())
        metadata["digest"] = digest.hexdigest()
    save_file(tensors, str(path), metadata)


@pytest.mark.parametrize(
    ("change", "fit_the_record", "reason"),
    [
        (lambda t: t.flip(0), False, "other content than was written"),
        (lambda t: t.flip(0), True, "features the encoders do not give"),
        (lambda t: t[:, :-1], False, "shapes other than those recorded"),
        (lambda t: t[:, :-1], True, "features the encoders do not give"),
        (lambda t: t.half(), True, "not float32 rows"),
        (lambda t: t[:-1], True, "holds 69 rows of image, and the split has 70"),
        # The three spot-checked rows (first, middle, last) kept, two others swapped.
        (lambda t: t[[0, 2, 1, *range(3, len(t))]], "unkeyed", "keyed digest differs"),
    ],
    ids=[
        "reversed",
        "reversed, fitting record",
        "width",
        "width, fitting record",
        "dtype",
        "rows",
        "spot rows kept, plain sha256",
    ],
)
def test_a_forged_cache_file_is_detected_and_rebuilt(
    base, change, fit_the_record, reason, tmp_path, caplog
):
    cache_dir = tmp_path / "cache"
    (cache_dir / "features").mkdir(parents=True)
    for name in base[1]:
        shutil.copy(base[0] / "features" / name, cache_dir / "features" / name)
    val_file = next(cache_dir.glob("features/val-*"))
    forge(val_file, change, fit_the_record)
    with caplog.at_level(logging.WARNING):
        study, cache, _ = set_up(tmp_path / "run", cache_dir)
    assert reason in caplog.text and val_file.name in caplog.text
    assert sorted(cache.reused) == ["test", "train"] and set(cache.build_seconds) == {"val"}
    rebuilt, expected = study.datamodule.encoded["val"], base[2].datamodule.encoded["val"]
    torch.testing.assert_close(rebuilt.pixels, expected.pixels)
    torch.testing.assert_close(rebuilt.input_ids, expected.input_ids)


def test_a_mixed_study_caches_its_frozen_tower_only(tmp_path):
    """Text tower frozen (cached), image tower trained: batches carry the text's features and
    the pixels; the key covers the frozen tower alone."""
    mixed = ["model.network.finetune=full", "model.text_tower.finetune=frozen"]
    study, cache, _ = set_up(tmp_path / "run", tmp_path / "cache", *mixed)
    assert set(cache.build_seconds) == SPLITS
    train_split = study.datamodule.encoded["train"]
    assert (train_split.text_key, train_split.image_key) == ("text_features", "pixels")
    batch = next(iter(study.datamodule.train_dataloader()))
    assert {"text_features", "pixels"} <= batch.keys() and "input_ids" not in batch
    network = study.module.network
    assert network.cached_modalities() == ("text",)
    trainable = [n for n, p in network.named_parameters() if p.requires_grad]
    assert not any(n.startswith("towers.text.") for n in trainable)
    assert any(n.startswith("towers.image.") for n in trainable)

    def change_image_tower(s):
        with torch.no_grad():
            s.module.network.towers["image"].encoder.visual_projection.weight[0, 0] += 0.5

    _, again, _ = set_up(tmp_path / "run2", tmp_path / "cache", *mixed, change=change_image_tower)
    assert again.build_seconds == {} and sorted(again.reused) == sorted(SPLITS)
    _, changed, _ = set_up(tmp_path / "run3", tmp_path / "cache", *mixed, change_weights=True)
    assert set(changed.build_seconds) == SPLITS


def test_a_hugging_face_towers_pooling_is_part_of_the_key(tmp_path):
    save_tiny_bert(tmp_path / "bert")
    hf = [
        "model/text_tower=hf",
        f"model.text_tower.name_or_path={tmp_path / 'bert'}",
        "data.modalities=[text]",
    ]
    _, first, _ = set_up(tmp_path / "run", tmp_path / "cache", *hf)
    assert set(first.build_seconds) == SPLITS
    _, same, _ = set_up(tmp_path / "run2", tmp_path / "cache", *hf)
    assert same.build_seconds == {}
    _, other, _ = set_up(tmp_path / "run3", tmp_path / "cache", *hf, "model.text_tower.pooling=cls")
    assert set(other.build_seconds) == SPLITS


@pytest.mark.parametrize(
    "finetune",
    [
        ["model/finetune=frozen"],
        ["model.network.finetune=full", "model.text_tower.finetune=frozen"],
    ],
    ids=["frozen", "text frozen"],
)
def test_fast_dev_run_encodes_one_batch_of_each_split_and_caches_nothing(
    finetune, tmp_path, monkeypatch
):
    from emoclip.models.tower_fusion import TowerFusion

    encoded = []  # (modality, rows) of each encoder call
    encode = TowerFusion.encode

    def counted(self, batch, modality):
        features = encode(self, batch, modality)
        encoded.append((modality, len(features)))
        return features

    monkeypatch.setattr(TowerFusion, "encode", counted)
    overrides = [*FROZEN, *finetune, "debug=fdr", "data.batch_size=16", "data.eval_batch_size=16"]
    cfg = compose_train([*overrides, f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path / "run")
    train(cfg)
    cached = ("image", "text") if finetune == ["model/finetune=frozen"] else ("text",)
    # One batch of 16 for each of train, val and test: 48 rows per cached modality, where the
    # whole data set is 280; the trained image tower of the mixed study runs on its batches.
    for modality in cached:
        assert sum(n for m, n in encoded if m == modality) <= 3 * 16, encoded
    assert not (tmp_path / "cache" / "features").exists() or not any(
        (tmp_path / "cache" / "features").iterdir()
    )
