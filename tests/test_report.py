"""`emoclip-report`: one row per configuration, mean ± std over seeds or folds."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from emoclip.output.comparison import split_protocol
from emoclip.report import main
from tests.conftest import QUIET, compose_train

CLASSES = ["anger", "happiness", "sadness"]


def fake_run(run_dir: Path, overrides: list[str], acc: float, f1: float, **extra) -> Path:
    """A finished run folder: the composed config and a metrics.json of the given numbers."""
    cfg = compose_train(overrides, run_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    metrics = {
        "classes": CLASSES,
        "test/acc": acc,
        "test/f1_macro": f1,
        **{f"test/f1_{c}": f1 + i / 100 for i, c in enumerate(CLASSES)},
        "test/confusion_matrix": [[3, 1, 0], [0, 4, 0], [1, 1, 2]],
        "history": [{"epoch": e, "val/acc": acc * (e + 1) / 2} for e in range(2)],
        **extra,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def table(markdown: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose first header cell is first_header."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(
            dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
        )
    return rows


def parse_mean_std(cell: str) -> tuple[float, float]:
    mean, _, std = cell.partition(" ± ")
    return float(mean), float(std) if std else float("nan")


def test_seeds_of_one_config_are_one_row(tmp_path):
    sweep = tmp_path / "sweep"
    numbers = {"text_lstm": [(0.5, 0.4), (0.7, 0.6)], "image_cnn": [(0.2, 0.1), (0.3, 0.25)]}
    for model, runs in numbers.items():
        for seed, (acc, f1) in enumerate(runs):
            fake_run(sweep / f"{model}_{seed}", [f"model={model}", f"seed={seed}"], acc, f1)
    main([str(sweep)])

    md = (sweep / "report.md").read_text()
    rows = {row["model"]: row for row in table(md, "row")}
    assert rows.keys() == {"text_lstm", "image_cnn"}
    for model, runs in numbers.items():
        accs, f1s = np.array(runs).T
        assert rows[model]["runs"] == "2"
        assert parse_mean_std(rows[model]["test acc"]) == pytest.approx(
            (accs.mean(), accs.std(ddof=1)), abs=5e-5
        )
        assert parse_mean_std(rows[model]["test macro-F1"]) == pytest.approx(
            (f1s.mean(), f1s.std(ddof=1)), abs=5e-5
        )
    # What every row shares is said once, above the table, not as a column.
    assert "Common to all rows:" in md
    assert "- `data`: synthetic" in md and "- `split protocol`: generated (synthetic)" in md
    assert "data" not in rows["text_lstm"] and "split protocol" not in rows["text_lstm"]
    per_class = {row["row"].split()[1].rstrip(","): row for row in table_after(md, "Per-class")}
    assert per_class["text_lstm"]["happiness"] == "0.5100"  # mean of 0.4 + 0.01, 0.6 + 0.01
    assert "Per-modality ablation" not in md  # no paired study here
    page = (sweep / "report.html").read_text()
    for png in ("report_confusion.png", "report_curves.png"):
        assert (sweep / png).is_file() and f'<img src="{png}"' in page


def test_a_row_and_its_run_folder_are_named_by_the_modality_and_towers_that_ran(tmp_path):
    """model=text_lstm with the Hugging Face text tower is not the LSTM: named text_hf."""
    sweep = tmp_path / "sweep"
    chosen = {
        "text_lstm": ["model=text_lstm"],
        "text_hf": ["model=text_lstm", "model/text_tower=hf"],
        "fusion_clip_cnn": ["model/image_tower=cnn"],
    }
    for name, overrides in chosen.items():
        run = fake_run(sweep / name, overrides, 0.5, 0.4)
        assert compose_train(overrides, run).name == f"{name}_synthetic"  # the run folder's
    main([str(sweep)])
    rows = table((sweep / "report.md").read_text(), "row")
    assert sorted(row["model"] for row in rows) == sorted(chosen)


def table_after(markdown: str, heading: str) -> list[dict[str, str]]:
    return table(markdown[markdown.index(heading) :], "row")


def test_a_swept_key_becomes_a_column_and_ablations_show(tmp_path):
    sweep = tmp_path / "sweep"
    ablations = {"test_text_only/acc": 0.9, "test_image_only/acc": 0.15}
    for job, lr in enumerate(("0.001", "0.01")):
        for seed in (1, 2, 3):
            overrides = [f"model.optimizer.lr={lr}", f"seed={seed}"]
            fake_run(sweep / f"{job}_{seed}", overrides, 0.8, 0.7, **ablations)
    main([str(sweep)])

    md = (sweep / "report.md").read_text()
    rows = table(md, "row")
    assert [row["lr"] for row in rows] == ["0.001", "0.01"]
    assert [row["runs"] for row in rows] == ["3", "3"]
    assert "- `model`: fusion_clip_clip" in md and "- `fusion`: concat" in md
    ablation = table_after(md, "Per-modality ablation")
    assert [row["row"] for row in ablation] == ["#1 lr=0.001", "#2 lr=0.01"]
    assert ablation[0]["text only"] == "0.9000 ± 0.0000"
    assert ablation[0]["image only"] == "0.1500 ± 0.0000"


def test_folds_are_one_row_with_their_protocol(tmp_path):
    cv = tmp_path / "cv"
    base = ["model=image_cnn", "data=ckplus", "data.num_folds=3"]
    for fold, acc in enumerate((0.6, 0.7, 0.8)):
        fake_run(cv / str(fold), [*base, f"data.fold={fold}"], acc, acc - 0.1)
    main([str(cv)])

    md = (cv / "report.md").read_text()
    (row,) = table(md, "row")
    assert row["runs"] == "3"
    assert parse_mean_std(row["test acc"]) == pytest.approx((0.7, 0.1), abs=5e-5)
    assert "- `split protocol`: 3 folds by subject (folds run: 0, 1, 2)" in md


@pytest.mark.parametrize(
    ("overrides", "protocol"),
    [
        ([], "generated (synthetic)"),
        (["data=ckplus", "model=image_cnn"], "subject-grouped"),
        (["data=ckplus", "model=image_cnn", "data.num_folds=10"], "10 folds by subject"),
        (["data=dair_emotion", "model=text_lstm"], "given split"),
        (["data=ckplus_dair"], "images: subject-grouped; texts: given split"),
    ],
)
def test_split_protocol_comes_from_the_data_config(overrides, protocol, tmp_path):
    assert split_protocol(compose_train(overrides, tmp_path)).startswith(protocol)


def test_html_is_escaped(tmp_path):
    for name in ("a<b>", "c&d"):
        fake_run(tmp_path / name[0], [f"name='{name}'"], 0.5, 0.4)
    main([str(tmp_path)])
    page = (tmp_path / "report.html").read_text()
    assert "a&lt;b&gt;" in page and "c&amp;d" in page
    assert "<b>" not in page


def test_folders_that_are_no_finished_run_are_listed_apart_never_counted(tmp_path):
    """Issue 11's item 5: a Ctrl-C'd run used to stop the report ("missing test/acc")."""
    fake_run(tmp_path / "0", [], 0.5, 0.4)
    fake_run(tmp_path / "ctrl_c", [], 0.9, 0.9, status="interrupted", epochs_completed=3)
    fake_run(tmp_path / "diverged", [], 0.9, 0.9, status="diverged")
    fake_run(tmp_path / "smoke", ["debug=fdr"], 0.9, 0.9)
    (tmp_path / "killed" / ".hydra").mkdir(parents=True)
    (tmp_path / "killed" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    fake_run(tmp_path / "empty", [], 0.9, 0.9)
    (tmp_path / "empty" / "metrics.json").write_text("")
    fake_run(tmp_path / "partial", [], 0.9, 0.9)
    (tmp_path / "partial" / "metrics.json").write_text(json.dumps({"classes": CLASSES}))
    evaluation = tmp_path / "eval"
    (evaluation / ".hydra").mkdir(parents=True)
    (evaluation / ".hydra" / "config.yaml").write_text("name: eval\nckpt_path: 0/best.ckpt\n")
    (evaluation / "metrics.json").write_text(json.dumps({"classes": CLASSES, "test/acc": 0.9}))
    main([str(tmp_path)])

    md = (tmp_path / "report.md").read_text()
    assert "1 run in 1 configuration" in md
    (row,) = table(md, "row")
    assert row["test acc"] == "0.5000"  # none of the 0.9s
    assert "7 folders that are not a finished training run are listed at the end" in md
    for heading, item in (
        ("Interrupted runs: 1", "- [`ctrl_c`](ctrl_c/): interrupted (Ctrl-C) after 3 epochs"),
        ("Failed runs: 1", "- [`diverged`](diverged/): status `diverged` in metrics.json"),
        ("Unfinished runs: 3", "- [`killed`](killed/): no metrics.json"),
        ("fast_dev_run smoke tests", "- [`smoke`](smoke/): trainer.fast_dev_run"),
        ("Evaluations of a checkpoint", "- [`eval`](eval/): evaluates `0/best.ckpt`"),
    ):
        assert f"### {heading}" in md and item in md, heading
    assert "- [`empty`](empty/): metrics.json is not readable JSON" in md
    assert "- [`partial`](partial/): missing test/acc, test/f1_macro" in md
    page = (tmp_path / "report.html").read_text()
    assert '<a href="ctrl_c/"><code>ctrl_c</code></a>' in page


def test_only_unfinished_runs_is_a_clear_error(tmp_path):
    fake_run(tmp_path / "0", [], 0.5, 0.4, status="interrupted")
    with pytest.raises(SystemExit, match="no finished training runs to compare .*interrupted"):
        main([str(tmp_path)])


def test_the_budget_and_short_rounded_labels(tmp_path):
    """An Optuna sweep: long unrounded values of dotted keys become short labels; the epochs
    each row trained show, early stopping included, even when the same in every row."""
    lrs = (0.0001329291894316216, 0.0029106359131330704)
    for job, lr in enumerate(lrs):
        overrides = [f"model.optimizer.lr={lr}", "model.network.dropout=0.4753571532049581"]
        overrides += ["trainer.max_epochs=4"]
        history = [{"epoch": e, "val/acc": 0.5} for e in range(4 - job)]
        if job:
            history[-1]["stopped_early"] = True
        fake_run(tmp_path / str(job), overrides, 0.5, 0.4, history=history)
    main([str(tmp_path)])

    md = (tmp_path / "report.md").read_text()
    rows = table(md, "row")
    assert [row["lr"] for row in rows] == ["0.000133", "0.00291"]
    assert [row["epochs"] for row in rows] == ["4 of 4", "3 of 4, stopped early"]
    assert "`lr` is `model.optimizer.lr`" in md
    assert table_after(md, "Per-class")[0]["row"] == "#1 lr=0.000133"


def test_run_folders_can_be_listed_and_the_report_put_elsewhere(tmp_path):
    a = fake_run(tmp_path / "a", ["seed=1"], 0.5, 0.4)
    b = fake_run(tmp_path / "b", ["seed=2"], 0.7, 0.6)
    main([str(a), str(b), "--out", str(tmp_path / "out")])
    (row,) = table((tmp_path / "out" / "report.md").read_text(), "row")
    assert row["runs"] == "2"
    assert parse_mean_std(row["test acc"])[0] == pytest.approx(0.6)


def test_no_run_folders_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match=f"{tmp_path}: no run folders found"):
        main([str(tmp_path)])
    with pytest.raises(SystemExit, match="nowhere: no such folder"):
        main([str(tmp_path / "nowhere")])


def test_an_unreadable_config_is_a_clear_error(tmp_path):
    run = fake_run(tmp_path / "0", [], 0.5, 0.4)
    (run / ".hydra" / "config.yaml").write_text("model: [unclosed\n")
    with pytest.raises(SystemExit, match=re.escape(f"{run / '.hydra' / 'config.yaml'}: not a")):
        main([str(tmp_path)])


# The Done-when: a 3-model x 3-seed sweep through the real entry points, the report's numbers
# checked against the runs' own metrics.json files. A few batches of a tiny synthetic set.
TINY_SWEEP = [
    "debug=limit",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "data.batch_size=8",
    "data.eval_batch_size=35",
    "data.dataset.train_size=28",
    "data.dataset.val_size=14",
    "data.dataset.test_size=35",
]
MODELS = ("clip_fusion", "text_lstm", "image_cnn")
# Each model option's row in the report: its modality and towers (the run folders' names too).
ROWS = {"clip_fusion": "fusion_clip_clip", "text_lstm": "text_lstm", "image_cnn": "image_cnn"}


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=900
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("sweep")
    result = run_module(
        "emoclip.train",
        "-m",
        f"model={','.join(MODELS)}",
        "seed=1,2,3",
        *TINY_SWEEP,
        *QUIET,
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = run_module("emoclip.report", str(sweep_dir))
    assert report.returncode == 0, report.stderr[-3000:]
    return sweep_dir


def runs_by_model(sweep_dir: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json")):
        model = OmegaConf.load(metrics_file.parent / ".hydra" / "config.yaml").model.name
        runs.setdefault(model, []).append(json.loads(metrics_file.read_text()))
    return runs


@pytest.mark.slow
def test_sweep_report_matches_the_runs_metrics(sweep):
    runs = runs_by_model(sweep)
    assert {model: len(r) for model, r in runs.items()} == dict.fromkeys(MODELS, 3)
    md = (sweep / "report.md").read_text()
    rows = table(md, "row")
    assert [row["model"] for row in rows] == [ROWS[m] for m in MODELS]
    for row, model in zip(rows, MODELS, strict=True):
        model_runs = runs[model]
        assert row["runs"] == "3"
        for column, key in (("test acc", "test/acc"), ("test macro-F1", "test/f1_macro")):
            values = np.array([m[key] for m in model_runs])
            assert parse_mean_std(row[column]) == pytest.approx(
                (values.mean(), values.std(ddof=1)), abs=5e-5
            ), (row["model"], column)

    classes = runs["text_lstm"][0]["classes"]
    for row, model in zip(table_after(md, "Per-class F1"), MODELS, strict=True):
        for name in classes:
            expected = np.mean([m[f"test/f1_{name}"] for m in runs[model]])
            assert float(row[name]) == pytest.approx(expected, abs=5e-5)

    (ablation,) = table_after(md, "Per-modality ablation")
    assert ablation["row"].startswith("#1 fusion_clip_clip")
    for column, scope in (("text only", "test_text_only"), ("image only", "test_image_only")):
        values = np.array([m[f"{scope}/acc"] for m in runs["clip_fusion"]])
        assert parse_mean_std(ablation[column]) == pytest.approx(
            (values.mean(), values.std(ddof=1)), abs=5e-5
        )

    assert "- `data`: synthetic" in md
    assert "- `split protocol`: generated (synthetic)" in md
    assert len(table_after(md, "## Runs")) == 9
    for png in ("report_confusion.png", "report_curves.png"):
        with Image.open(sweep / png) as image:
            assert image.width > 600 and image.height > 200
        assert f'src="{png}"' in (sweep / "report.html").read_text()


@pytest.mark.slow
def test_history_from_metrics_csv_matches_metrics_json(sweep):
    """Run folders without metrics.json's history (older ones) get their curves from the csv
    logger's metrics.csv: the same numbers."""
    from emoclip.runs.run_folder import read_history

    for run_dir in sorted(p.parent for p in sweep.glob("*/metrics.json")):
        recorded = json.loads((run_dir / "metrics.json").read_text())["history"]
        rebuilt = read_history(run_dir, {})
        assert len(rebuilt) == len(recorded) == 2
        for row, expected in zip(rebuilt, recorded, strict=True):
            assert row == pytest.approx(expected, abs=1e-6)
