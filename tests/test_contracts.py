"""Contract tests generated from the catalogue (emoclip.catalogue.entries): every tower through
every finetune mode and the feature cache, every fusion with one and both modalities, every
source through `debug=fdr` on example files its own class writes. A new option (in conf/ or
an installed plugin) is tested here without a line added; tests/test_plugins.py runs the same
checks on a plugin's options."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emoclip.catalogue import Entry, entries
from emoclip.contract import FEATURE_KEYS
from emoclip.errors import ConfigError
from emoclip.models.base import FINETUNE_MODES
from emoclip.models.tower_fusion import TowerFusion
from emoclip.train import train
from tests.conftest import QUIET, TINY_CLIP, compose_train, save_tiny_bert, save_tiny_vit
from tests.test_open_clip import VOCAB as OPEN_CLIP_VOCAB
from tests.test_open_clip import tiny_open_clip  # noqa: F401 (a fixture)
from tests.test_tower_fusion import TASK

LORA = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": None}
SMALL_CLIP = [*TINY_CLIP, "model.backbone.image_size=32"]
LSTM = ["model.text_tower.embed_dim=8", "model.text_tower.hidden_size=8"]
CNN = ["model.image_tower.image_size=32", "model.image_tower.channels=[4,8]"]
# The model each source trains in its contract test, by the modalities its class declares.
MODELS = {
    ("text",): ["model=text_lstm", *LSTM],
    ("image",): ["model=image_cnn", *CNN],
    ("text", "image"): ["model=clip_fusion", *SMALL_CLIP],
}


def tiny_settings(entry: Entry, files: dict[str, Path]) -> list[str]:
    """Overrides that make a shipped tower tiny (or give it the weights it needs); a tower
    not named here (a plugin's) is tested with its config as it is."""
    place = f"model.{entry.kind.split()[0]}_tower"
    open_clip = files.get("open_clip")
    settings = {
        "clip": [],
        "lstm": LSTM,
        "cnn": CNN,
        "hf": [f"{place}.name_or_path={files.get(entry.kind.split()[0])}"],
        "open_clip": [
            f"{place}.model_name=tiny",
            f"{place}.checkpoint={open_clip}/epoch_3.pt",
            f"{place}.model_config={open_clip}/tiny.json",
        ],
    }
    return settings.get(entry.option, []) if entry.origin == "emoclip" else []


@pytest.fixture(scope="module")
def tower_files(tmp_path_factory, tiny_open_clip) -> dict[str, Path]:  # noqa: F811
    root = tmp_path_factory.mktemp("towers")
    save_tiny_bert(root / "bert")
    save_tiny_vit(root / "vit")
    return {"text": root / "bert", "image": root / "vit", "open_clip": tiny_open_clip[0]}


def build_tower(entry: Entry, files: dict[str, Path], tmp_path: Path):
    """The tower's config composed as a user would (`model/<m>_tower=<option>`), as a partial."""
    overrides = [entry.override, *SMALL_CLIP, *tiny_settings(entry, files)]
    cfg = compose_train(overrides, tmp_path)
    return tower_of(cfg.model[entry.group.split("/")[1]])


def tower_of(node) -> object:
    """A tower config as the study builds it: its `tokenizer` node is the tower's declaration
    of its tokenizer (read by the study), not an argument."""
    node = OmegaConf.to_container(node, resolve=True)
    node.pop("tokenizer", None)
    return instantiate(node)


def inputs(modality: str, net: TowerFusion, n: int = 6) -> dict[str, torch.Tensor]:
    if modality == "text":
        ids = torch.randint(4, 50, (n, 7))
        ids[:, 0], ids[:, -1] = 2, 3
        return {
            "labels": torch.arange(n) % 3,
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
        }
    size = net.towers["image"].preprocessing.size
    return {"labels": torch.arange(n) % 3, "pixel_values": torch.randn(n, 3, size, size)}


def one_tower(entry: Entry, tower, mode: str, cache: bool = False) -> TowerFusion:
    torch.manual_seed(0)
    modality = entry.kind.split()[0]
    # The study sizes the task's vocabulary by the tower's tokenizer: open_clip's is its BPE's.
    vocab = OPEN_CLIP_VOCAB if (entry.origin, entry.option) == ("emoclip", "open_clip") else 50
    return TowerFusion(
        dataclasses.replace(TASK, vocab_size=vocab),
        **{f"{modality}_tower": tower},
        finetune=mode,
        trainable_layers=1,
        lora=LORA,
        hidden_size=16,
        cache_frozen_towers=cache,
    )


def check_tower_mode(entry: Entry, tower, mode: str) -> None:
    """The mode trains exactly its share of the tower's weights: all (full), none (frozen),
    the last layer and what follows (partial), only the adapters (lora); a step moves them."""
    modality = entry.kind.split()[0]
    net = one_tower(entry, tower, mode)
    params = dict(net.towers[modality].named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if mode == "full":
        assert trainable == set(params)
    elif mode == "frozen":
        assert not trainable
    elif mode == "lora":
        assert trainable and all("lora_" in n for n in trainable)
    else:  # partial
        layers = net.towers[modality].layers()
        last = {id(p) for p in layers[-1]}
        assert trainable and trainable != set(params)
        assert all(p.requires_grad for p in params.values() if id(p) in last)
        if len(layers) > 1:
            assert not any(p.requires_grad for p in layers[0])
    before = {n: p.detach().clone() for n, p in params.items()}
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    batch = inputs(modality, net)
    for _ in range(2):  # LoRA's B starts at zero: A gets its gradient in the second step
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(batch), batch["labels"]).backward()
        optimizer.step()
    moved = {n for n, p in params.items() if not torch.equal(p, before[n])}
    assert moved <= trainable
    assert bool(moved) == bool(trainable), f"{entry.override} {mode}: no trainable weight moved"


def check_tower_cache(entry: Entry, tower) -> None:
    """Frozen and cached: the network reads the cached features (what `encode` gives, the
    feature cache's content) and computes from them what it computes from the raw inputs."""
    modality = entry.kind.split()[0]
    net = one_tower(entry, tower, "frozen", cache=True).eval()
    assert net.cached_modalities() == (modality,)
    batch = inputs(modality, net)
    with torch.no_grad():
        features = net.encode(batch, modality)
        assert features.shape == (6, net.towers[modality].width)
        cached = {"labels": batch["labels"], FEATURE_KEYS[modality]: features}
        torch.testing.assert_close(net(cached), net(batch))
    identity = net.cache_identity(modality)
    assert json.dumps(identity, sort_keys=True) == json.dumps(
        net.cache_identity(modality), sort_keys=True
    )
    assert entry.target in json.dumps(identity)


def check_fusion(entry: Entry, tmp_path: Path) -> None:
    """With both towers: logits for examples with both modalities or either one alone, and a
    step trains both towers; with one tower: logits, or a ConfigError saying it needs two."""
    cfg = compose_train([entry.override], tmp_path)
    fusion = instantiate(cfg.model.fusion)
    lstm = tower_of(compose_train(["model=text_lstm", *LSTM], tmp_path).model.text_tower)
    cnn = tower_of(compose_train(["model=image_cnn", *CNN], tmp_path).model.image_tower)
    torch.manual_seed(0)
    net = TowerFusion(TASK, text_tower=lstm, image_tower=cnn, fusion=fusion, hidden_size=16)
    batch = {**inputs("text", net), **inputs("image", net)}
    for dropped in ((), ("pixel_values",), ("input_ids", "attention_mask")):
        logits = net.eval()({k: v for k, v in batch.items() if k not in dropped})
        assert logits.shape == (6, 3) and torch.isfinite(logits).all()
    net.train()
    torch.nn.functional.cross_entropy(net(batch), batch["labels"]).backward()
    for tower in net.towers.values():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())
    for modality, tower in (("text", lstm), ("image", cnn)):
        try:
            alone = TowerFusion(TASK, **{f"{modality}_tower": tower}, fusion=fusion, hidden_size=16)
        except ConfigError as err:
            assert re.search("text and an image|two towers", str(err)), err
            continue
        logits = alone.eval()(inputs(modality, alone))
        assert logits.shape == (6, 3) and torch.isfinite(logits).all()


def check_source(entry: Entry, tmp_path: Path) -> dict:
    """The source trains with debug=fdr on the example files its class writes."""
    kind = entry.load()
    assert kind is not None, f"{entry.override}: its class {entry.target} does not import"
    composed = compose_train([entry.override], tmp_path / "composed")
    node = OmegaConf.to_container(composed.data.dataset, resolve=False)
    written = kind.write_examples(tmp_path / "files", node)
    model = MODELS[tuple(m for m in ("text", "image") if m in kind.modalities)]
    data = [entry.override, *(f"data.{key}={override_value(v)}" for key, v in written.items())]
    metrics = train(compose_train([*data, *model, "debug=fdr", *QUIET], tmp_path / "run"))
    assert 0 <= metrics["test/acc"] <= 1
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert all(splits[split] for split in ("train", "val", "test"))
    assert splits["protocol"]["classes"] == metrics["classes"]
    return metrics


def override_value(value) -> str:
    """A value as Hydra's override grammar reads it (a quoted string where it must be)."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    text = str(value)
    if isinstance(value, str | Path) and not re.fullmatch(r"[\w./\-+@:]+", text):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text


def ids(entry: Entry) -> str:
    return entry.override


TOWERS = entries("text tower") + entries("image tower")


@pytest.mark.parametrize("mode", FINETUNE_MODES)
@pytest.mark.parametrize("entry", TOWERS, ids=ids)
def test_every_tower_trains_in_every_finetune_mode(entry, mode, tower_files, tmp_path):
    check_tower_mode(entry, build_tower(entry, tower_files, tmp_path), mode)


@pytest.mark.parametrize("entry", TOWERS, ids=ids)
def test_every_tower_runs_from_the_feature_cache(entry, tower_files, tmp_path):
    check_tower_cache(entry, build_tower(entry, tower_files, tmp_path))


@pytest.mark.parametrize("entry", entries("fusion"), ids=ids)
def test_every_fusion_with_one_and_both_modalities(entry, tmp_path):
    check_fusion(entry, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("entry", entries("source"), ids=ids)
def test_every_source_trains_on_example_files_its_class_writes(entry, tmp_path):
    check_source(entry, tmp_path)


def test_the_catalogue_lists_every_kind_with_its_class_and_modalities():
    kinds = {e.kind for e in entries()}
    assert kinds == {"source", "text tower", "image tower", "fusion", "network"}
    for entry in entries():
        assert entry.target and entry.load() is not None, entry
        if entry.kind in ("source", "network") or entry.kind.endswith("tower"):
            assert set(entry.modalities()) <= {"text", "image"} and entry.modalities(), entry
