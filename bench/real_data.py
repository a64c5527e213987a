"""Benchmarks on the real datasets (issue 3): not part of CI; about an hour on 2 CPU cores.

    python bench/real_data.py [--datasets ../shared/datasets] [--only dair|ckplus|paired]
    python bench/real_data.py --suite fusions   # issue 6: the four fusions, same paired data

Runs each study through the real entry point (`python -m emoclip.train ...`), one run folder
per seed or fold under bench/out/, then writes mean and standard deviation over seeds or folds
into bench/RESULTS.md (between the real-data markers) with the exact commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from results_file import markers, write_section

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out" / "real_data"
QUIET = ["callbacks.progress_bar.refresh_rate=0", "trainer.enable_model_summary=false"]
REPORT_VAL_ACC = 0.273  # the report's final validation accuracy (its Table 1, epoch 5)


# The same training budget for the fusion model and both baselines on the paired data.
PAIRED_BUDGET = ["trainer.max_epochs=50", "callbacks.early_stopping.patience=15"]
# Training of the fusion model: the auxiliary per-modality losses make the image tower learn
# (without them the head uses the text and the tiny ViT stays near chance).
FUSION_TRAINING = [
    "model.network.unimodal_loss_weight=1.0",
    *PAIRED_BUDGET,
]


@dataclass
class Study:
    key: str
    title: str
    overrides: list[str]
    variants: list[list[str]]  # one run per entry: the seed or fold overrides
    metrics: list[str] = field(default_factory=lambda: ["test/acc", "test/f1_macro"])


def studies(datasets: Path) -> list[Study]:
    ck = f"data.root={datasets / 'ckplus48'}"
    dair = f"data.root={datasets / 'dair_emotion'}"
    pair = [
        f"data.root.image={datasets / 'ckplus48'}",
        f"data.root.text={datasets / 'dair_emotion'}",
    ]
    seeds = [[f"seed={s}"] for s in (1, 2, 3)]
    paired = ["experiment=paper_tiny", *pair, *FUSION_TRAINING]
    # The baselines see the same paired study (data, classes, split, pairing seed,
    # augmentation) but one modality; paper_tiny itself pins the CLIP backbone, so they start
    # from its data config.
    paired_data = ["data=ckplus_dair", *pair]
    ablation = ["test/acc", "test/f1_macro", "test_text_only/acc", "test_image_only/acc"]
    return [
        Study(
            "dair",
            "Text LSTM, DAIR emotion (6 classes, given split)",
            [
                "model=text_lstm",
                "data=dair_emotion",
                dair,
                "data.batch_size=64",
                "trainer.max_epochs=5",
            ],
            seeds,
        ),
        Study(
            "ckplus",
            "Image CNN, CK+48 (7 classes, 10-fold by subject)",
            [
                "model=image_cnn",
                "data=ckplus",
                ck,
                "data.num_folds=10",
                "trainer.max_epochs=40",
                "callbacks.early_stopping.patience=10",
            ],
            [[f"data.fold={k}"] for k in range(10)],
        ),
        Study(
            "paired_fusion",
            "CLIP fusion (tiny CLIP from scratch), CK+48 x DAIR (5 classes)",
            paired,
            seeds,
            ablation,
        ),
        Study(
            "paired_text",
            "Text LSTM on the same paired examples (text only)",
            [
                *paired_data,
                "model=text_lstm",
                "data.modalities=[text]",
                *PAIRED_BUDGET,
            ],
            seeds,
        ),
        Study(
            "paired_image",
            "Image CNN on the same paired examples (image only)",
            [
                *paired_data,
                "model=image_cnn",
                "data.modalities=[image]",
                *PAIRED_BUDGET,
            ],
            seeds,
        ),
    ]


def fusion_studies(datasets: Path) -> list[Study]:
    """The four fusions on the paired study of `studies`, same recipe, data and seeds."""
    paired = next(s for s in studies(datasets) if s.key == "paired_fusion")
    titles = {
        "concat": "concatenation (the report's)",
        "late": "late (average of per-modality logits)",
        "gated": "gated multimodal unit",
        "cross_attention": "cross-attention over tokens and patches",
    }
    return [
        Study(
            # concat is the paired study itself: the same run folders serve both tables.
            paired.key if name == "concat" else f"fusion_{name}",
            f"Tiny-CLIP fusion, {title}",
            paired.overrides if name == "concat" else [*paired.overrides, f"model/fusion={name}"],
            paired.variants,
            paired.metrics,
        )
        for name, title in titles.items()
    ]


def run(
    study: Study, variant: list[str], out: Path = OUT, env: dict | None = None, start: bool = True
) -> dict | None:
    """One run through the real entry point (its output in <run folder>.log beside it), or the
    metrics of the same run finished earlier; `env` adds environment variables. With
    `start=False`, only a finished run's metrics (None if it has not finished)."""
    # The folder name carries a hash of the study's overrides, so a changed study reruns.
    digest = hashlib.sha1(" ".join(study.overrides).encode()).hexdigest()[:8]
    name = "_".join(v.replace("=", "").replace(".", "_") for v in variant)
    run_dir = out / study.key / f"{name}_{digest}"
    metrics_file, seconds_file = run_dir / "metrics.json", run_dir / "bench_seconds.txt"
    found = {"run_dir": str(run_dir)}
    if metrics_file.is_file() and seconds_file.is_file():  # finished earlier: reuse
        seconds = float(seconds_file.read_text())
        return {**json.loads(metrics_file.read_text()), "seconds": seconds, **found}
    if not start:
        return None
    # An earlier attempt that did not finish: start afresh (a run never writes another's folder).
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "emoclip.train",
        *study.overrides,
        *variant,
        *QUIET,
        f"hydra.run.dir={run_dir}",
    ]
    print("$", " ".join(command[1:]), flush=True)
    started = time.time()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.with_suffix(".log"), "w") as log:
        subprocess.run(
            command,
            check=True,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    seconds = time.time() - started
    seconds_file.write_text(f"{seconds:.1f}\n")
    metrics = json.loads(metrics_file.read_text())
    print(f"  {seconds:.0f} s  test/acc {metrics['test/acc']:.4f}", flush=True)
    return {**metrics, "seconds": seconds, **found}


def summarise(study: Study, runs: list[dict]) -> dict[str, tuple[float, float]]:
    out = {}
    for name in study.metrics:
        values = [r[name] for r in runs]
        out[name] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    return out


def markdown(suite: str, results: list[tuple[Study, dict, float]]) -> str:
    begin, end = markers(suite)
    lines = [
        begin,
        f"## {SUITES[suite][0]}",
        "",
        "Mean +- standard deviation over seeds 1, 2, 3 (or over the 10 folds), test split.",
        f"The report's final validation accuracy was **{REPORT_VAL_ACC}** (ViT-B/32 CLIP, its",
        "Table 1), about what predicting the majority class gives.",
        "",
        "| study | runs | accuracy | macro-F1 | text only (image zeroed) | image only (text zeroed) | minutes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    columns = ("test/acc", "test/f1_macro", "test_text_only/acc", "test_image_only/acc")
    for study, summary, minutes in results:
        cells = [
            f"{summary[name][0]:.4f} +- {summary[name][1]:.4f}" if name in summary else ""
            for name in columns
        ]
        lines.append(
            f"| {study.title} | {len(study.variants)} | {' | '.join(cells)} | {minutes:.1f} |"
        )
    lines += [
        "",
        "Commands (each run adds one of its seed/fold overrides and `hydra.run.dir=`):",
        "",
    ]
    for study, _, _ in results:
        variants = ", ".join(" ".join(v) for v in study.variants)
        lines.append(
            f"- {study.title}: `emoclip-train {' '.join(study.overrides)}` with {variants}"
        )
    lines.append(end)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--suite", choices=sorted(SUITES), default="real-data")
    parser.add_argument("--only", nargs="*", help="study keys to run (default: all)")
    args = parser.parse_args()
    datasets = args.datasets.resolve()
    if not (datasets / "ckplus48").is_dir() or not (datasets / "dair_emotion").is_dir():
        raise SystemExit(
            f"no research datasets at {datasets} (expected ckplus48/ and dair_emotion/); "
            "pass --datasets PATH"
        )
    results = []
    for study in SUITES[args.suite][1](datasets):
        if args.only and not any(study.key.startswith(k) for k in args.only):
            continue
        runs = [run(study, variant) for variant in study.variants]
        results.append((study, summarise(study, runs), sum(r["seconds"] for r in runs) / 60))
    section = markdown(args.suite, results)
    print(section)
    if not args.only:
        write_section(args.suite, section)


SUITES = {
    "real-data": ("Real data (issue 3): `python bench/real_data.py`", studies),
    "fusions": (
        "Fusion methods (issue 6): `python bench/real_data.py --suite fusions`",
        fusion_studies,
    ),
}


if __name__ == "__main__":
    main()
