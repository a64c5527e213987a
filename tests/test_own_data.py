"""Bring your own data: every source trains from the command line on files in its real format
(the synthetic demo set written by emoclip.demo.examples, plus tables written here), a
checkpoint evaluates on another data set, and a moved data set is found with data.root."""

import csv
import json
import logging
import re
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from emoclip.cli.entry import run_reporting_errors
from emoclip.demo.examples import write_examples
from emoclip.evaluate import evaluate
from emoclip.study.build import config_dir
from emoclip.train import train
from tests.conftest import QUIET, TINY_CLIP, compose_train

pytestmark = pytest.mark.slow

TEXT = ["model=text_lstm"]
IMAGE = ["model=image_cnn", "model.image_tower.image_size=32"]
BOTH = ["model=clip_fusion", *TINY_CLIP, "model.backbone.image_size=32"]
SMALL_SPLITS = ["data.val_fraction=0.2", "data.test_fraction=0.2"]
POSTS = [
    "data.dataset.text_column=post",
    "data.dataset.label_column=feeling",
    "data.label_space=sentiment",
]


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("examples")
    written = write_examples(root, per_class=12)
    # The posts table again: as parquet with a split column, and as one tsv file per split.
    with open(written["text_table"], newline="") as f:
        rows = list(csv.DictReader(f))
    splits = [("train", "train", "val", "test", "train")[i % 5] for i in range(len(rows))]
    table = {"post": [r["post"] for r in rows], "feeling": [r["feeling"] for r in rows]}
    pq.write_table(pa.table({**table, "part": splits}), root / "posts.parquet")
    folder = root / "posts_by_split"
    folder.mkdir()
    for split in ("train", "val", "test"):
        lines = ["post\tfeeling"] + [
            f"{r['post']}\t{r['feeling']}" for r, s in zip(rows, splits, strict=True) if s == split
        ]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    written["posts.parquet"], written["posts_by_split"] = root / "posts.parquet", folder
    return written


# Every source trains on files its own class writes: tests/test_contracts.py, generated from
# the catalogue. Here: more layouts of one source, and the studies the tests below train.
CASES = {
    "ckplus_class_folders": (lambda ex: ["data=ckplus", f"data.root={ex['ckplus']}"], IMAGE),
    "ckplus_tree": (lambda ex: ["data=ckplus", f"data.root={ex['ckplus_tree']}"], IMAGE),
    "text_table_csv": (
        lambda ex: (
            ["data=text_table", f"data.root={ex['text_table']}", *POSTS]
            + ["data.dataset.group_column=author", *SMALL_SPLITS]
        ),
        TEXT,
    ),
    "text_table_parquet_split_column": (
        lambda ex: (
            ["data=text_table", f"data.root={ex['posts.parquet']}", *POSTS]
            + ["data.dataset.split_column=part"]
        ),
        TEXT,
    ),
    "text_table_folder_integer_labels": (
        lambda ex: (
            ["data=text_table", f"data.root={ex['reviews']}", "data.label_space=sentiment"]
            + ["data.dataset.text_column=review", "data.dataset.label_column=stars"]
            + ["data.dataset.label_names=[negative,neutral,positive]"]
        ),
        TEXT,
    ),
    "text_table_tsv_per_split": (
        lambda ex: ["data=text_table", f"data.root={ex['posts_by_split']}", *POSTS],
        TEXT,
    ),
    "mvsa_single": (
        lambda ex: ["data=mvsa_single", f"data.root={ex['mvsa_single']}", *SMALL_SPLITS],
        BOTH,
    ),
}
OTHER_LAYOUTS = [
    "ckplus_tree",
    "text_table_parquet_split_column",
    "text_table_folder_integer_labels",
    "text_table_tsv_per_split",
]


@pytest.mark.parametrize("case", OTHER_LAYOUTS)
def test_other_layouts_of_a_source_train_from_the_command_line(case, examples, tmp_path):
    data, model = CASES[case]
    metrics = train(compose_train([*data(examples), *model, "debug=fdr", *QUIET], tmp_path))
    assert 0 <= metrics["test/acc"] <= 1
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert all(splits[split] for split in ("train", "val", "test"))
    assert splits["protocol"]["classes"] == metrics["classes"]


def test_mvsa_reads_its_encodings_and_keeps_reposts_together(examples, tmp_path, caplog):
    data, model = CASES["mvsa_single"]
    with caplog.at_level(logging.INFO):
        train(compose_train([*data(examples), *model, "debug=fdr", *QUIET], tmp_path))
    assert "are not UTF-8 and were decoded as gb18030" in caplog.text
    splits = json.loads((tmp_path / "splits.json").read_text())
    where = {i: s for s in ("train", "val", "test") for i in splits[s]}
    last = max(int(i) for i in where)
    assert where[str(last - 1)] == where["1"]  # the same image
    assert where[str(last)] == where["2"]  # the same text
    duplicates = splits["protocol"]["duplicates"]
    assert duplicates["identical_images"]["groups"] == 1
    assert duplicates["identical_texts"]["groups"] == 1
    assert splits["protocol"]["label_space"] == "sentiment"


def compose_eval(overrides: list[str], output_dir: Path):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("eval", overrides=[*overrides, f"paths.output_dir={output_dir}"])


@pytest.fixture(scope="module")
def ckplus_checkpoint(examples, tmp_path_factory) -> Path:
    """An image CNN trained (a few batches) on the CK+ class folders: 7 emotions with contempt."""
    run_dir = tmp_path_factory.mktemp("ckplus_run")
    data, model = CASES["ckplus_class_folders"]
    train(compose_train([*data(examples), *model, "debug=limit", *QUIET], run_dir))
    return run_dir / "checkpoints" / "best.ckpt"


def test_a_model_evaluates_on_another_data_set(ckplus_checkpoint, examples, tmp_path):
    metrics = evaluate(
        compose_eval(
            [
                f"ckpt_path={ckplus_checkpoint}",
                "data=image_folders",
                f"data.root={examples['image_folders']}",
                *SMALL_SPLITS,
            ],
            tmp_path,
        )
    )
    assert metrics["protocol"] == "cross-dataset"
    cross = metrics["cross_dataset"]
    assert cross["trained_on"] == "ckplus" and cross["evaluated_on"] == "image_folders"
    assert cross["root"] == str(examples["image_folders"])
    assert set(cross["dropped_classes"]) == {"neutral"}  # the CK+ model has no neutral class
    assert cross["classes_absent_from_data"] == ["contempt"]
    assert metrics["classes"] == [
        "anger",
        "contempt",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "surprise",
    ]
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert len(splits["test"]) == cross["test_examples"]
    assert all("neutral" not in i for i in splits["test"])


def test_cross_dataset_evaluation_needs_one_label_space(ckplus_checkpoint, examples, tmp_path):
    cfg = compose_eval(
        [
            f"ckpt_path={ckplus_checkpoint}",
            "data=image_folders",
            f"data.root={examples['image_folders']}",
            "data.label_space=sentiment",
        ],
        tmp_path,
    )
    with pytest.raises(SystemExit, match="the model predicts emotion classes .*sentiment"):
        run_reporting_errors(lambda: evaluate(cfg))


def test_a_moved_data_set_is_read_where_data_root_says(ckplus_checkpoint, examples, tmp_path):
    moved = tmp_path / "moved"
    examples["ckplus"].rename(moved)
    try:
        stale = compose_eval([f"ckpt_path={ckplus_checkpoint}"], tmp_path / "stale")
        with pytest.raises(SystemExit, match=f"CK\\+ folder {examples['ckplus']} does not exist"):
            run_reporting_errors(lambda: evaluate(stale))
        found = evaluate(
            compose_eval(
                [f"ckpt_path={ckplus_checkpoint}", f'study_overrides=["data.root={moved}"]'],
                tmp_path / "moved_run",
            )
        )
        assert "test/acc" in found and "protocol" not in found
        old_key = compose_eval(
            [f"ckpt_path={ckplus_checkpoint}", f'study_overrides=["data.image_root={moved}"]'],
            tmp_path / "old_key",
        )
        with pytest.raises(SystemExit, match="study_overrides: .*image_root.*data.root"):
            run_reporting_errors(lambda: evaluate(old_key))
    finally:
        moved.rename(examples["ckplus"])


def test_checkpoints_record_their_label_space(ckplus_checkpoint):
    import torch

    state = torch.load(ckplus_checkpoint, weights_only=True)["emoclip"]
    assert state["label_space"]["name"] == "emotion"
    assert state["classes"] == state["label_space"]["classes"]


def test_the_data_folder_set_once_is_this_machines_at_evaluation(tmp_path):
    """A study trained with data.root unset reads <paths.data_dir>/ckplus48; evaluated where
    the data folder is elsewhere (EMOCLIP_DATA_DIR, paths.data_dir), it reads it there."""
    from tests.test_sources import write_ckplus48

    first, second = tmp_path / "disk1", tmp_path / "disk2"
    write_ckplus48(first / "ckplus48", subjects=8)
    train_overrides = ["data=ckplus", "data.classes=[anger,happy,sadness]", *IMAGE, "debug=limit"]
    train_overrides += [f"paths.data_dir={first}", *QUIET]
    train(compose_train(train_overrides, tmp_path / "run"))
    first.rename(second)
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    metrics = evaluate(
        compose_eval([f"ckpt_path={checkpoint}", f"paths.data_dir={second}"], tmp_path / "eval")
    )
    assert 0 <= metrics["test/acc"] <= 1
    stale = compose_eval([f"ckpt_path={checkpoint}", f"paths.data_dir={first}"], tmp_path / "e2")
    with pytest.raises(SystemExit, match=f"default location {first}/ckplus48 .* does not exist"):
        run_reporting_errors(lambda: evaluate(stale))


def test_a_sentiment_model_predicts_in_its_label_space(examples, tmp_path):
    from emoclip.predict import predict

    data, model = CASES["text_table_csv"]
    train(compose_train([*data(examples), *model, "debug=limit", *QUIET], tmp_path))
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(
            "predict",
            [
                f"ckpt_path={tmp_path / 'checkpoints' / 'best.ckpt'}",
                "expect.classes=[neg,neu,pos]",  # the sentiment space's synonyms
            ],
        )
    cfg.text = "what a lovely day"
    printed = predict(cfg)
    assert printed.split(":")[0] == "sentiment"
    assert {"negative", "neutral", "positive"} <= set(printed.split())


def readme_block(language: str, first_line: str) -> str:
    """The README's fenced block in this language whose code starts with first_line."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for block in re.findall(rf"```{language}\n(.*?)```", readme, flags=re.S):
        code = textwrap.dedent(block)
        if code.startswith(first_line):
            return code
    raise AssertionError(f"no {language} block starting {first_line!r} in the README")


def test_the_readmes_new_source_trains(tmp_path, monkeypatch):
    """The README's steps for a new source: its module and config, as written there."""
    import shutil
    import sys
    import types

    module = types.ModuleType("emoclip.data.sources.lines_per_class")
    exec(readme_block("python", '"""`data=lines_per_class`'), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    (conf / "data" / "lines_per_class.yaml").write_text(
        readme_block("yaml", "# @package data.dataset")
    )
    data = tmp_path / "texts"
    data.mkdir()
    for label, words in (("joy", "glad"), ("sad", "blue"), ("anger", "mad")):
        lines = [f"i am so {words} today, number {i}" for i in range(30)]
        (data / f"{label}.txt").write_text("\n".join(lines) + "\n")
    overrides = ["data=lines_per_class", f"data.root={data}", *TEXT, "debug=fdr", *QUIET]
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={tmp_path / 'run'}"])
    metrics = train(cfg)
    assert metrics["classes"] == ["anger", "happiness", "sadness"]
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert splits["protocol"]["split"] == "grouped" and splits["protocol"]["groups"] is None
