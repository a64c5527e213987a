"""MVSA-Single benchmark (issue 12): does fusing a tweet's text and image help, on real pairs?

    python bench/mvsa.py [--datasets ../shared/datasets] [--only KEY ...]

One fixed 5-fold split of MVSA-Single (`data=mvsa_single data.num_folds=5 data.fold=k`):
stratified by label and grouped by duplicates (identical images, identical texts), so every
model sees the same train / val / test examples of each fold; val is carved from each fold's
training part. The same run trains

- the majority class and a TF-IDF + logistic regression text peer (scikit-learn; its C chosen
  on the val part, plain and class-balanced), on each fold's own examples;
- emoclip's text LSTM, image CNN and tiny-CLIP fusion (from scratch; concat, late and gated
  fusion, each with its text-only and image-only ablation), all with the same budget.

Recipes are chosen on the val parts only: each family's candidates (`families`) run on all
five folds, and the one with the best mean val macro-F1 is the family's result; test scores
of the others are not looked at. The loss weighting (plain or class-balanced) is chosen once,
on the text LSTM, and used by all. Runs use one torch thread each (OMP_NUM_THREADS=1), which
is faster than two on a CPU that other jobs share. Then mean +- standard
deviation over the folds of test accuracy and macro-F1 go into bench/RESULTS.md (between the
mvsa markers) with the exact commands. Each run is a run folder under bench/out/mvsa/;
finished ones are reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from real_data import REPO, Study, run
from results_file import markers, write_section

OUT = Path(__file__).resolve().parent / "out" / "mvsa"
FOLDS = range(5)
SHOWN_DATASETS = "../shared/datasets"  # how RESULTS.md names the data (from a checkout's root)
# The same budget for every emoclip model: epochs, early stopping on val macro-F1 (the
# monitor), image side.
BUDGET = ["trainer.max_epochs=10", "callbacks.early_stopping.patience=3"]
IMAGE_64 = "model.image_tower.image_size=64"  # the CNN tower's; the tiny CLIP's is 64 already
BALANCED = "model.class_weights=balanced"
# The fusion recipe of the paired CK+ x DAIR study (issue 3): auxiliary per-modality losses.
UNIMODAL = "model.network.unimodal_loss_weight=1.0"
# A smaller, more regularised LSTM: half the widths, more dropout, words seen twice or more.
COMPACT_LSTM = [
    "model.network.embed_dim=64",
    "model.network.hidden_size=64",
    "model.network.dropout=0.5",
    "model.text_tower.tokenizer.min_frequency=2",
]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Family:
    key: str
    title: str
    candidates: dict[str, list[str]]  # recipe name -> overrides; chosen on val macro-F1


def families() -> list[Family]:
    """Each family's candidate recipes: plain or class-balanced loss. The choice is made once,
    on the text LSTM's val folds (the cheapest model), and every other family trains with the
    chosen one: the CPU budget of this machine allows one run of each per fold. The LSTM also
    tries a compact recipe (COMPACT_LSTM, plain loss)."""
    weightings = {"plain": [], "balanced": [BALANCED]}
    models = {
        "text_lstm": ("Text LSTM", ["model=text_lstm"]),
        "image_cnn": ("Image CNN (64 px)", ["model=image_cnn", IMAGE_64]),
        "clip_concat": ("Tiny-CLIP fusion, concat", ["model=clip_fusion", UNIMODAL]),
        "clip_late": (
            "Tiny-CLIP fusion, late",
            ["model=clip_fusion", "model/fusion=late", UNIMODAL],
        ),
        "clip_gated": (
            "Tiny-CLIP fusion, gated",
            ["model=clip_fusion", "model/fusion=gated", UNIMODAL],
        ),
    }
    found = [
        Family(key, title, {name: [*model, *extra] for name, extra in weightings.items()})
        for key, (title, model) in models.items()
    ]
    # One more LSTM recipe: the plain one overfits within 2-3 epochs on 2,800 tweets.
    found[0].candidates["compact"] = ["model=text_lstm", *COMPACT_LSTM]
    return found


def data_overrides(datasets: Path) -> list[str]:
    return ["data=mvsa_single", f"data.root={datasets / 'mvsa_single'}", "data.num_folds=5"]


def study(family: Family, recipe: str, datasets: Path) -> Study:
    key = f"{family.key}/{recipe.replace(', ', '_').replace(' ', '_')}"
    overrides = [*family.candidates[recipe], *data_overrides(datasets), *BUDGET]
    return Study(key, f"{family.title} ({recipe})", overrides, [[f"data.fold={k}"] for k in FOLDS])


# ---------------------------------------------------------------- the scikit-learn peers


def fold_records(datasets: Path, fold: int) -> dict:
    """The fold's train / val / test records, from the same data module a run builds."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [*data_overrides(datasets), f"data.fold={fold}", "model=text_lstm"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "paths.output_dir=unused"])
    datamodule = instantiate(cfg.data)
    return datamodule.load_records(), datamodule.classes


def peers(datasets: Path) -> dict[str, list[dict]]:
    """Majority class and TF-IDF + logistic regression (C on val macro-F1) on every fold."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    results: dict[str, list[dict]] = {"majority": [], "tfidf_lr": [], "tfidf_lr_balanced": []}
    for fold in FOLDS:
        records, classes = fold_records(datasets, fold)
        texts = {s: [r.text for r in rs] for s, rs in records.items()}
        labels = {s: np.array([classes.index(r.label) for r in rs]) for s, rs in records.items()}

        def scores(split, predicted, truth=labels):
            return {
                f"{split}/acc": accuracy_score(truth[split], predicted),
                f"{split}/f1_macro": f1_score(truth[split], predicted, average="macro"),
            }

        majority = np.bincount(labels["train"]).argmax()
        results["majority"].append(
            {
                **scores("val", np.full(len(labels["val"]), majority)),
                **scores("test", np.full(len(labels["test"]), majority)),
                "test_ids": [r.id for r in records["test"]],
            }
        )
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        features = {"train": vectorizer.fit_transform(texts["train"])}
        features.update({s: vectorizer.transform(texts[s]) for s in ("val", "test")})
        for key, weight in (("tfidf_lr", None), ("tfidf_lr_balanced", "balanced")):
            best = None
            for c in (0.1, 0.3, 1.0, 3.0, 10.0, 30.0):
                model = LogisticRegression(C=c, max_iter=5000, class_weight=weight)
                model.fit(features["train"], labels["train"])
                val = scores("val", model.predict(features["val"]))
                if best is None or val["val/f1_macro"] > best[0]["val/f1_macro"]:
                    best = (val, model, c)
            val, model, c = best
            test = scores("test", model.predict(features["test"]))
            results[key].append({**val, **test, "C": c})
    return results


# ---------------------------------------------------------------- summary


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {std:.4f}"


def column(runs: list[dict], name: str) -> list[float]:
    return [r[name] for r in runs] if all(name in r for r in runs) else []


def check_same_folds(runs: list[dict], majority: list[dict], key: str) -> None:
    """Every study's test split of fold k is the peers' test split of fold k."""
    for fold, (r, m) in enumerate(zip(runs, majority, strict=True)):
        if r["test_ids"] != m["test_ids"]:
            raise SystemExit(f"{key} fold {fold}: its test split differs from the peers' one")


def markdown(chosen, candidates, peer_results, datasets: Path) -> str:
    begin, end = markers("mvsa")
    shown = str(datasets).rstrip("/")

    def show(text: str) -> str:
        return text.replace(shown, SHOWN_DATASETS)

    head = "| study | recipe (chosen on val) | val macro-F1 | test acc | test macro-F1 |"
    head += " text only acc / macro-F1 | image only acc / macro-F1 | minutes |"
    lines = [
        begin,
        "## MVSA-Single, image + text sentiment (issue 12): `python bench/mvsa.py`",
        "",
        "Mean +- standard deviation over the 5 folds of one fixed split (stratified, grouped by",
        "duplicates); each fold's test part once. Ablations: the fusion model with the image",
        "(text only) or the text (image only) zeroed.",
        "",
        head,
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    titles = {
        "majority": "Majority class (train)",
        "tfidf_lr": "TF-IDF + logistic regression (C on val)",
        "tfidf_lr_balanced": "TF-IDF + logistic regression, class-balanced (C on val)",
    }
    for key, runs in peer_results.items():
        cells = [mean_std(column(runs, m)) for m in ("val/f1_macro", "test/acc", "test/f1_macro")]
        lines.append(f"| {titles[key]} | – | {' | '.join(cells)} |  |  |  |")
    for family, recipe, runs, minutes in chosen:
        cells = [mean_std(column(runs, m)) for m in ("val/f1_macro", "test/acc", "test/f1_macro")]
        ablations = [
            f"{mean_std(column(runs, f'{a}/acc'))} / {mean_std(column(runs, f'{a}/f1_macro'))}"
            if column(runs, f"{a}/acc")
            else ""
            for a in ("test_text_only", "test_image_only")
        ]
        lines.append(
            f"| {family.title} | {recipe} | {' | '.join(cells)} | {' | '.join(ablations)} "
            f"| {minutes:.1f} |"
        )
    lines += [
        "",
        "Recipes tried (validation only: mean val macro-F1 over the 5 folds):",
        "",
        "| study | recipe | val macro-F1 | val acc |",
        "| --- | --- | --- | --- |",
    ]
    for family, recipe, runs in candidates:
        lines.append(
            f"| {family.title} | {recipe} | {mean_std(column(runs, 'val/f1_macro'))} "
            f"| {mean_std(column(runs, 'val/acc'))} |"
        )
    lines += [
        "",
        "Commands (each run adds `data.fold=0` ... `data.fold=4` and `hydra.run.dir=`):",
        "",
    ]
    for family, recipe, _, _ in chosen:
        overrides = show(" ".join(study(family, recipe, datasets).overrides))
        lines.append(f"- {family.title} ({recipe}): `emoclip-train {overrides}`")
    lines.append(
        "- Peers: `python bench/mvsa.py` builds the same folds in-process "
        "(`data=mvsa_single data.num_folds=5`) and fits scikit-learn on each."
    )
    lines.append(end)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--only", nargs="*", help="family keys to run (default: all)")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="family keys left out of this run and of the written section (a CPU budget)",
    )
    args = parser.parse_args()
    datasets = args.datasets.resolve()
    if not (datasets / "mvsa_single").is_dir():
        raise SystemExit(
            f"no MVSA-Single at {datasets / 'mvsa_single'} (see ../shared/datasets/README.md); "
            "pass --datasets PATH"
        )
    cached = OUT / "peers.json"  # the scikit-learn fits on the same folds, from an earlier run
    if cached.is_file():
        peer_results = json.loads(cached.read_text())
    else:
        peer_results = peers(datasets)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(peer_results, default=float))
    for key, runs in peer_results.items():
        print(key, mean_std(column(runs, "test/acc")), mean_std(column(runs, "test/f1_macro")))
    chosen, candidates = [], []
    weighting = None
    for family in families():
        if (args.only and family.key not in args.only) or family.key in args.skip:
            continue
        tried = []
        recipes = list(family.candidates)
        if family.key != "text_lstm" and weighting is not None:
            recipes = [weighting]  # chosen once, on the text LSTM's val folds
        for recipe in recipes:
            runs = []
            for variant in study(family, recipe, datasets).variants:
                result = run(study(family, recipe, datasets), variant, OUT, ONE_THREAD)
                splits = json.loads((Path(result["run_dir"]) / "splits.json").read_text())
                runs.append({**result, "test_ids": splits["test"]})
            check_same_folds(runs, peer_results["majority"], family.key)
            tried.append((recipe, runs))
            candidates.append((family, recipe, runs))
        recipe, runs = max(tried, key=lambda t: statistics.mean(column(t[1], "val/f1_macro")))
        chosen.append((family, recipe, runs, sum(r["seconds"] for r in runs) / 60))
        if family.key == "text_lstm":  # the loss weighting every other family takes
            weightings = [t for t in tried if t[0] in ("plain", "balanced")]
            weighting = max(
                weightings, key=lambda t: statistics.mean(column(t[1], "val/f1_macro"))
            )[0]
    section = markdown(chosen, candidates, peer_results, datasets)
    print(section)
    if not args.only:
        write_section("mvsa", section)


if __name__ == "__main__":
    sys.exit(main())
