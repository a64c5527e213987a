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

A cache file is data from disk like any other: what it holds is checked before it is used. Each
file records, when written, its entries' shapes and dtypes and a digest of their content keyed
by a secret kept in the user's own config folder (emoclip.system.integrity; a forger cannot make it); on
reading, the entries must be float32 rows of features, one per example of the split, match
what was recorded, and a few rows recomputed with the encoders must match the cached ones (a
file forged with the right key and a fitting hash still fails that). A file that fails any check
is logged and rebuilt.

A smoke test encodes only what it reads: under fast_dev_run (`debug=fdr`) each split is cut to
the examples of its batches, and with an integer trainer.limit_val_batches (test) the
validation (test) split to that many batches; those features stay in memory, never cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from emoclip.contract import INPUT_IDS, PIXEL_VALUES, PIXELS
from emoclip.data.datamodule import EmotionDataModule, EncodedSplit, FeatureSplit
from emoclip.data.images import normalize
from emoclip.errors import ConfigError, WriteError
from emoclip.models.base import Network
from emoclip.system.atomic import atomic_path
from emoclip.system.integrity import keyed_digest, same_digest

log = logging.getLogger(__name__)
FORMAT = 2  # bump when what a file holds changes
SPOT_CHECKS = 3  # rows recomputed to check a cache file against the encoders


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
            rows = reachable_rows(trainer, datamodule, split, len(data))
            if rows < len(data):  # a smoke test's few batches: encode those, cache nothing
                data = _first_rows(data, rows)
                start = time.perf_counter()
                tensors = encoder(data)
                self.build_seconds[split] = time.perf_counter() - start
                log.info("encoded the first %d %s examples, all this run reads", rows, split)
                datamodule.encoded[split] = _with_features(data, tensors, cached)
                continue
            ids = [r.id for r in datamodule.records[split]]
            digest = data_digest(ids, data, cached)
            key = json.dumps({**shared, "split": split, "data": digest}, sort_keys=True)
            path = self.cache_dir / f"{split}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"
            path = path.with_suffix(".safetensors")
            tensors = _read(path, key, expected_rows(cached, data))
            if tensors is not None and not encoder.reproduces(tensors, data):
                log.warning("%s holds features the encoders do not give; recomputing", path)
                tensors = None
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


def reachable_rows(trainer: L.Trainer, datamodule: EmotionDataModule, split: str, rows: int) -> int:
    """How many of a split's examples, its first ones, this run can read: under fast_dev_run
    one batch (or n) of every split; with an integer trainer.limit_val_batches (test,
    predict) that many batches of the split, which is read in order. Otherwise all of it: a
    limited training epoch draws its batches from the whole split."""
    if split == "train":
        limit, size = trainer.fast_dev_run, datamodule.batch_size
    else:
        limit, size = getattr(trainer, f"limit_{split}_batches", None), datamodule.eval_batch_size
    if isinstance(limit, bool):
        limit = int(limit)
    if not isinstance(limit, int) or limit <= 0:
        return rows
    return min(rows, limit * size)


def _first_rows(data: EncodedSplit, rows: int) -> EncodedSplit:
    return EncodedSplit(
        data.labels[:rows],
        None if data.pixels is None else data.pixels[:rows],
        None if data.input_ids is None else data.input_ids.first(rows),
        text_pool=data.text_pool,
        seed=data.seed,
    )


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
        # How close recomputed features must be to cached ones: other batches round otherwise.
        self.tolerance = 1e-4 if str(trainer.precision).startswith("32") else 3e-2

    def __call__(self, data: EncodedSplit) -> dict[str, torch.Tensor]:
        items = [data[i] for i in range(len(data))]
        out = {m: self._run(items, m) for m in self.modalities}
        if data.text_pool is not None and "text" in self.modalities:
            for c, texts in enumerate(data.text_pool):
                pool_items = [
                    {"index": j, "labels": torch.tensor(c), INPUT_IDS: ids}
                    for j, ids in enumerate(texts)
                ]
                out[f"pool.{c}"] = self._run(pool_items, "text")
        return out

    def reproduces(self, tensors: dict[str, torch.Tensor], data: EncodedSplit) -> bool:
        """Whether a few rows (first, middle, last) recomputed match the cached ones."""
        rows = sorted({round(i * (len(data) - 1) / (SPOT_CHECKS - 1)) for i in range(SPOT_CHECKS)})
        items = [data[i] for i in rows]
        for m in self.modalities:
            cached, expected = tensors[m][rows], self._run(items, m)
            scale = float(expected.abs().max()) or 1.0
            if cached.shape != expected.shape or not torch.allclose(
                cached, expected, rtol=self.tolerance, atol=self.tolerance * scale
            ):
                return False
        return True

    @torch.no_grad()
    def _run(self, items: list[dict], modality: str) -> torch.Tensor:
        keep = {"index", "labels", PIXELS if modality == "image" else INPUT_IDS}
        items = [{k: v for k, v in item.items() if k in keep} for item in items]
        order = list(range(len(items)))
        if modality == "text":
            order.sort(key=lambda i: -len(items[i][INPUT_IDS]))
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
                if PIXELS in batch:
                    batch[PIXEL_VALUES] = normalize(batch.pop(PIXELS), dm.mean, dm.std)
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


def expected_rows(modalities: Sequence[str], data: EncodedSplit) -> dict[str, int]:
    """The entries a split's cache file holds, with their number of rows."""
    rows = {m: len(data) for m in modalities}
    if data.text_pool is not None and "text" in modalities:
        rows.update({f"pool.{c}": len(texts) for c, texts in enumerate(data.text_pool)})
    return rows


def content_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A digest of a cache file's content keyed by this user's secret (emoclip.system.integrity): a
    forger who rewrites the file cannot compute it, as anyone can a plain sha256."""

    def chunks():
        for name in sorted(tensors):
            t = tensors[name].contiguous()
            yield f"{name}:{t.dtype}:{tuple(t.shape)};".encode()
            yield t.reshape(-1).view(torch.uint8).numpy().tobytes()

    return keyed_digest(chunks())


def _read(path: Path, key: str, rows: dict[str, int]) -> dict[str, torch.Tensor] | None:
    """The file's tensors if it exists, is readable, holds exactly this key and passes
    _check; else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("key") != key:
                log.warning("%s holds features for another key; recomputing", path)
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, SafetensorError) as err:
        log.warning("cannot read the feature cache %s (%s); recomputing", path, err)
        return None
    problem = _check(tensors, metadata, rows)
    if problem:
        log.warning("the feature cache %s %s; recomputing", path, problem)
        return None
    return tensors


def _check(tensors: dict[str, torch.Tensor], metadata: dict, rows: dict[str, int]) -> str | None:
    """What is wrong with a cache file's content, or None."""
    if set(tensors) != set(rows):
        return f"holds the entries {sorted(tensors)}, not {sorted(rows)}"
    for name, t in sorted(tensors.items()):
        if t.dtype != torch.float32 or t.dim() != 2:
            return f"holds {name} as {t.dtype} of shape {tuple(t.shape)}, not float32 rows"
        if t.shape[0] != rows[name]:
            return f"holds {t.shape[0]} rows of {name}, and the split has {rows[name]} examples"
    try:
        recorded = json.loads(metadata.get("shapes", "null"))
    except ValueError:
        recorded = None
    if recorded != {name: list(t.shape) for name, t in tensors.items()}:
        return f"holds shapes other than those recorded when it was written ({recorded})"
    if not same_digest(metadata.get("digest"), content_digest(tensors)):
        return "holds other content than was written (its keyed digest differs)"
    return None


def _write(path: Path, key: str, tensors: dict[str, torch.Tensor]) -> None:
    """Write beside the target, then rename: a crash never leaves a half-written cache file."""
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {
        "key": key,
        "shapes": json.dumps({name: list(t.shape) for name, t in tensors.items()}),
        "digest": content_digest(tensors),
    }
    try:
        with atomic_path(path) as partial:
            save_file(tensors, str(partial), metadata)
    except WriteError as err:
        raise ConfigError(f"{err}; set paths.cache_dir to a writable folder") from err
