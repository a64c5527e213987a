"""One go on a lent GPU machine (issue 22), in under 10 minutes:

    python bench/gpu_check.py            # prints the figures and writes them to RESULTS.md
    python bench/gpu_check.py --quick    # fewer steps, nothing written (a smoke test)

1. precision: what `trainer=gpu` (trainer.precision=auto) chooses on this card (bf16-mixed
   where the card has native bf16, Ampere and newer; else 16-mixed, fp16 autocast with a
   GradScaler, e.g. a T4), and a short training of the default study in 32-true, 16-mixed and
   (where supported) bf16-mixed: finite losses, the GradScaler present exactly under 16-mixed.
2. throughput: the CLIP fusion at ViT-B/32's geometry (random weights), batch 32, full
   fine-tuning against frozen towers from the feature cache, under the auto precision
   (bench/throughput.py's worker, one process each, peak GPU memory its own); and full
   fine-tuning with torch.use_deterministic_algorithms, to see what repeatability costs.
3. the default study: `emoclip-train experiment=demo trainer=gpu`, its 10 epochs, timed, with
   its test numbers (fused, text only, image only) beside chance.

On a machine without a CUDA GPU it stops at once with one line saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import markers, write_section
from throughput import QUIET, REPO, clip_job, compose, measure

SECTION = "gpu-check"
CHANCE = 1 / 7  # the synthetic set's seven balanced classes


def require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "bench/gpu_check.py needs a CUDA GPU and none is visible here "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); nothing was run"
        )


def check_precisions(quick: bool) -> list[dict]:
    """A few steps of the default study in each precision the card can run."""
    import torch

    from emoclip.study.build import build_study, build_trainer, prepare_process, resolve_precision

    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    modes = ["auto", "32-true", "16-mixed"] + (["bf16-mixed"] if bf16 else [])
    rows = []
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="emoclip-gpu-check-") as tmp:
            cfg = compose(  # training steps only (throughput.TRAIN_ONLY)
                [
                    "experiment=demo",
                    "trainer=gpu",
                    f"trainer.precision={mode}",
                    "trainer.max_epochs=1",
                    f"++trainer.limit_train_batches={5 if quick else 20}",
                ],
                Path(tmp),
            )
            prepare_process(cfg.seed)
            study = build_study(cfg)
            trainer = build_trainer(cfg, study_callbacks=study.callbacks)
            started = time.perf_counter()
            trainer.fit(study.module, datamodule=study.datamodule)
            seconds = time.perf_counter() - started
            loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            rows.append(
                {
                    "asked": mode,
                    "ran": str(trainer.precision),
                    "chosen_by_auto": resolve_precision("auto", "gpu") if mode == "auto" else "",
                    "grad_scaler": scaler is not None,
                    "train_loss": loss,
                    "finite": math.isfinite(loss),
                    "seconds": seconds,
                }
            )
        print("   ", rows[-1], flush=True)
    for row in rows:
        if not row["finite"]:
            raise SystemExit(f"trainer.precision={row['asked']}: the training loss is {row}")
        if row["grad_scaler"] != (row["ran"] == "16-mixed"):
            raise SystemExit(f"trainer.precision={row['asked']}: GradScaler {row['grad_scaler']}")
    return rows


def throughput(precision: str, quick: bool) -> list[tuple[dict, dict]]:
    """ViT-B/32 geometry, batch 32: full fine-tuning and frozen towers (from the cache)."""
    jobs = []
    # "full deterministic": torch.use_deterministic_algorithms (trainer.deterministic=true, as
    # on CPU) costs what here? trainer=gpu leaves it off until this says it costs little.
    for mode, extra in (("full", []), ("frozen", []), ("full", ["trainer.deterministic=true"])):
        job = clip_job("vit_b32", mode, epochs=2 if mode == "frozen" else 1)
        job["overrides"] = [
            o
            for o in job["overrides"]
            if not o.startswith(("data.batch_size", "data.eval_batch_size", "data.dataset"))
        ] + [
            "trainer=gpu",
            f"trainer.precision={precision}",
            "data.batch_size=32",
            "data.eval_batch_size=128",
            f"data.dataset.train_size={320 if quick else 1344}",  # 10 or 42 steps of 32
            "data.dataset.val_size=70",
            "data.dataset.test_size=70",
        ]
        job["overrides"] += extra
        label = f"{mode} deterministic" if extra else mode
        job.update(name=f"{job['name']} {precision}", batch=32, precision=precision, label=label)
        jobs.append(job)
    return [(job, measure("throughput", job, None)) for job in jobs]


def default_study(quick: bool) -> dict:
    """`emoclip-train experiment=demo trainer=gpu` as a user types it, timed as a whole."""
    with tempfile.TemporaryDirectory(prefix="emoclip-gpu-demo-") as tmp:
        command = [
            sys.executable,
            "-m",
            "emoclip.train",
            "experiment=demo",
            "trainer=gpu",
            *(["trainer.max_epochs=2"] if quick else []),
            *QUIET,
            f"hydra.run.dir={tmp}/run",
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.time()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.time() - started
        if done.returncode != 0:
            raise SystemExit(f"the default study failed on the GPU:\n{done.stderr[-3000:]}")
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    printed = [line for line in done.stdout.splitlines() if re.match(r"^(val|test\S*): ", line)]
    return {
        "seconds": seconds,
        "epochs": len(metrics.get("history", [])),
        "printout": printed,
        **{k: metrics[k] for k in ("test/acc", "test_text_only/acc", "test_image_only/acc")},
    }


def section(device: str, precisions, speeds, demo) -> str:
    begin, end = markers(SECTION)
    lines = [
        begin,
        "## GPU check (issue 22): `python bench/gpu_check.py`",
        "",
        f"{device}; torch {__import__('torch').__version__}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| trainer.precision | ran as | GradScaler | train loss after the steps | s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in precisions:
        asked = f"auto (chose {r['chosen_by_auto']})" if r["asked"] == "auto" else r["asked"]
        lines.append(
            f"| {asked} | {r['ran']} | {'yes' if r['grad_scaler'] else 'no'} | "
            f"{r['train_loss']:.4f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "| ViT-B/32 geometry, batch 32 | precision | examples/s | epoch s | peak GPU MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for job, r in speeds:
        lines.append(
            f"| {job['label']} | {job['precision']} | {r['examples_per_s']:,.1f} | "
            f"{r['epoch_seconds']:.2f} | {r.get('peak_gpu_mb', 0):,.0f} |"
        )
    lines += [
        "",
        f"`emoclip-train experiment=demo trainer=gpu`: {demo['seconds']:.0f} s wall "
        f"({demo['epochs']} epochs); test {demo['test/acc']:.4f}, text only "
        f"{demo['test_text_only/acc']:.4f}, image only {demo['test_image_only/acc']:.4f}, "
        f"chance {CHANCE:.2f}.",
        "",
        "```",
        *demo["printout"],
        "```",
        end,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps; nothing written")
    args = parser.parse_args()
    require_gpu()
    import torch

    sys.path.insert(0, str(REPO))
    from emoclip.study.build import resolve_precision

    started = time.time()
    device = f"{torch.cuda.get_device_name(0)} (compute capability {torch.cuda.get_device_capability(0)})"
    print(f"[{time.strftime('%H:%M:%S')}] {device}", flush=True)
    print(f"[{time.strftime('%H:%M:%S')}] 1. precision modes", flush=True)
    precisions = check_precisions(args.quick)
    auto = resolve_precision("auto", "gpu")
    print(f"[{time.strftime('%H:%M:%S')}] 2. throughput, ViT-B/32 geometry, {auto}", flush=True)
    speeds = throughput(auto, args.quick)
    print(f"[{time.strftime('%H:%M:%S')}] 3. the default study on the GPU", flush=True)
    demo = default_study(args.quick)
    text = section(device, precisions, speeds, demo)
    print(text)
    print(f"gpu_check: {time.time() - started:.0f} s in all", flush=True)
    if not args.quick:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
