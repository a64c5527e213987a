"""Frozen towers' features, computed once per example and cached on disk (a tower whose
finetune mode is `frozen`, e.g. `model/finetune=frozen`).

When a tower's weights do not train, an example's features from it never change: they are
computed once, written under `paths.cache_dir`, and the rest of the network trains from them
(a mixed study caches its frozen tower and runs the other one on every batch). A cache file is
named by a digest of everything its contents depend on: each cached tower's identity (its class,
its settings such as pooling and image preprocessing, its encoder's config, and a hash of its
weights as they are, seeded random weights included), the pixel normalisation, the numeric
precision, and the split's example ids and exact encoder inputs (the resized pixels and the
token ids, which fix the image size, the tokenizer and its max_length). Change any of them and
the name changes, so a stale file is never read; the full key is also stored in the file and
checked on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import lightning as L
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from emoclip.data.datamodule import EmotionDataModule, EncodedSplit, FeatureSplit
from emoclip.data.images import normalize
from emoclip.errors import ConfigError
from emoclip.models.base import Network

log = logging.getLogger(__name__)
FORMAT = 2  # bump when what a file holds changes


class FeatureCache(L.Callback):
    """At setup, before any dataloader exists, swaps each split of the datamodule for one
    carrying the frozen towers' features: read from the cache, or computed with the study's
    own (final) weights and written there."""

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir) / "features"
        self.build_seconds: dict[str, float] = {}  # split -> time spent encoding it
        self.reused: list[str] = []  # splits read from the cache

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule: EmotionDataModule = trainer.datamodule
        pending = [s for s, d in datamodule.encoded.items() if not isinstance(d, FeatureSplit)]
        if not pending:
            return
        network: Network = pl_module.network
        cached = [m for m in network.cached_modalities() if m in datamodule.modalities]
        if not cached:
            return
        shared = {
            "format": FORMAT,
            "towers": {m: network.cache_identity(m) for m in cached},
            "normalization": [datamodule.mean, datamodule.std] if "image" in cached else None,
            "precision": str(trainer.precision),
        }
        encoder = _Encoder(network, datamodule, trainer, cached)
        for split in pending:
            data = datamodule.encoded[split]
            ids = [r.id for r in datamodule.records[split]]
            digest = data_digest(ids, data, cached)
            key = json.dumps({**shared, "split": split, "data": digest}, sort_keys=True)
            path = self.cache_dir / f"{split}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"
            path = path.with_suffix(".safetensors")
            tensors = _read(path, key)
            if tensors is None:
                start = time.perf_counter()
                tensors = encoder(data)
                self.build_seconds[split] = time.perf_counter() - start
                _write(path, key, tensors)
                log.info(
                    "encoded %d %s examples in %.1f s; cached in %s",
                    len(data),
                    split,
                    self.build_seconds[split],
                    path,
                )
            else:
                self.reused.append(split)
                log.info("%s features read from the cache %s", split, path)
            datamodule.encoded[split] = _with_features(data, tensors, cached)


def _with_features(
    data: EncodedSplit, tensors: dict[str, torch.Tensor], cached: list[str]
) -> FeatureSplit:
    """The split with the cached modalities' inputs replaced by their features; a modality
    whose tower trains keeps its pixels or token ids."""
    pool = sorted((k for k in tensors if k.startswith("pool.")), key=_pool_index)
    split = FeatureSplit(
        data.labels,
        tensors["image"] if "image" in cached else data.pixels,
        tensors["text"] if "text" in cached else data.input_ids,
        text_pool=[tensors[k] for k in pool] if pool else data.text_pool,
        seed=data.seed,
    )
    if "image" not in cached:
        split.image_key = EncodedSplit.image_key
    if "text" not in cached:
        split.text_key = EncodedSplit.text_key
    return split


class _Encoder:
    """Runs the frozen towers over a split's inputs, in eval mode, on the trainer's device
    and under its precision, texts sorted by length (less padding); returns float32 CPU
    tensors in the split's order."""

    def __init__(
        self,
        network: Network,
        datamodule: EmotionDataModule,
        trainer: L.Trainer,
        modalities: list[str],
    ):
        self.network, self.datamodule, self.modalities = network, datamodule, modalities
        self.device = trainer.strategy.root_device
        self.context = trainer.precision_plugin.forward_context

    def __call__(self, data: EncodedSplit) -> dict[str, torch.Tensor]:
        items = [data[i] for i in range(len(data))]
        out = {m: self._run(items, m) for m in self.modalities}
        if data.text_pool is not None and "text" in self.modalities:
            for c, texts in enumerate(data.text_pool):
                pool_items = [
                    {"index": j, "labels": torch.tensor(c), "input_ids": ids}
                    for j, ids in enumerate(texts)
                ]
                out[f"pool.{c}"] = self._run(pool_items, "text")
        return out

    @torch.no_grad()
    def _run(self, items: list[dict], modality: str) -> torch.Tensor:
        keep = {"index", "labels", "pixels" if modality == "image" else "input_ids"}
        items = [{k: v for k, v in item.items() if k in keep} for item in items]
        order = list(range(len(items)))
        if modality == "text":
            order.sort(key=lambda i: -len(items[i]["input_ids"]))
        collate, size = self.datamodule.collate(), self.datamodule.eval_batch_size
        dm = self.datamodule
        was_training = self.network.training
        self.network.to(self.device)
        self.network.eval()
        features = []
        try:
            for start in range(0, len(order), size):
                chunk = [items[i] for i in order[start : start + size]]
                batch = {k: v.to(self.device) for k, v in collate(chunk).items()}
                if "pixels" in batch:
                    batch["pixel_values"] = normalize(batch.pop("pixels"), dm.mean, dm.std)
                with self.context():
                    features.append(self.network.encode(batch, modality).float().cpu())
        finally:
            self.network.train(was_training)
        encoded = torch.cat(features)
        return encoded[torch.argsort(torch.tensor(order))]


def data_digest(ids: list[str], data: EncodedSplit, modalities: list[str]) -> str:
    """A hash of a split's example ids and exactly what its cached towers would be fed."""
    digest = hashlib.sha256()
    digest.update("\n".join(ids).encode())
    if data.pixels is not None and "image" in modalities:
        digest.update(f"pixels{tuple(data.pixels.shape)};".encode())
        digest.update(data.pixels.contiguous().reshape(-1).numpy())
    pools = (
        [] if data.text_pool is None else [(f"pool{c}", t) for c, t in enumerate(data.text_pool)]
    )
    texts = (data.input_ids or []) if "text" in modalities else []
    for name, sequences in [("texts", texts), *(pools if "text" in modalities else [])]:
        digest.update(f"{name}{len(sequences)};".encode())
        for ids_ in sequences:
            digest.update(f"{len(ids_)};".encode())
            digest.update(ids_.contiguous().numpy())
    return digest.hexdigest()


def _pool_index(key: str) -> int:
    return int(key.split(".", 1)[1])


def _read(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The file's tensors if it exists, is readable and holds exactly this key; else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                log.warning("%s holds features for another key; recomputing", path)
                return None
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, SafetensorError) as err:
        log.warning("cannot read the feature cache %s (%s); recomputing", path, err)
        return None


def _write(path: Path, key: str, tensors: dict[str, torch.Tensor]) -> None:
    """Write beside the target, then rename: a crash never leaves a half-written cache file."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial), {"key": key})
        os.replace(partial, path)
    except OSError as err:
        raise ConfigError(
            f"cannot write the feature cache in {path.parent} ({err}); set paths.cache_dir to "
            "a writable folder"
        ) from err
