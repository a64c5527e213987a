"""emoclip-explain and emoclip-predict on checkpoints of the three kinds of model (two
modalities, text only, image only), each trained briefly once for this module."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import emoclip.system.atomic
from emoclip.errors import ConfigError, DataError, EmoclipError
from emoclip.explain import explain
from emoclip.predict import predict, predict_probabilities
from emoclip.study.build import config_dir
from emoclip.study.restore import restore_for_prediction, restore_study
from emoclip.train import train
from tests.conftest import QUIET, REPO, TINY_CLIP, compose_train

DATA = ["data.dataset.train_size=140", "data.dataset.val_size=35", "data.dataset.test_size=35"]
BRIEF = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2"]
MODELS = {
    "clip_fusion": ["model=clip_fusion", *TINY_CLIP, "model.network.hidden_size=32"],
    "text_lstm": ["model=text_lstm"],
    "image_cnn": ["model=image_cnn"],
}
TAKES = {"clip_fusion": ("text", "image"), "text_lstm": ("text",), "image_cnn": ("image",)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for name, overrides in MODELS.items():
        train(compose_train([*overrides, *DATA, *BRIEF, *QUIET], root / name))
        paths[name] = root / name / "checkpoints" / "best.ckpt"
    return paths


@pytest.fixture(scope="module")
def test_examples(checkpoints, tmp_path_factory):
    """The first test examples of the (shared) synthetic study: texts, faces saved as PNG
    files under faces/, and the clip_fusion module's own probabilities for them."""
    study, _ = restore_study(checkpoints["clip_fusion"])
    study.datamodule.setup("test")
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "faces").mkdir()
    records = study.datamodule.records["test"][:6]
    for i, r in enumerate(records):
        Image.fromarray(r.image).save(folder / "faces" / f"{i}.png")
    with torch.no_grad():
        batch = study.datamodule.batch_of("test", range(len(records)))
        expected = study.module.eval()(batch).softmax(-1)
    return folder, records, expected, study.module.classes


def compose_entry(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.mark.parametrize("model", list(MODELS))
def test_explain_writes_maps_token_colours_and_a_page(model, checkpoints, tmp_path):
    cfg = compose_entry(
        "explain",
        [f"ckpt_path={checkpoints[model]}", "n=2", "steps=8", f"paths.output_dir={tmp_path}"],
    )
    explained = explain(cfg)
    page = (tmp_path / "index.html").read_text()
    assert [i for i, _ in explained] == [0, 1]
    for i, result in explained:
        assert np.isclose(result.probabilities.sum(), 1.0, atol=1e-5)
        assert f"#{i} " in page and "true: <b>" in page
        if "image" in TAKES[model]:
            assert (tmp_path / "examples" / f"{i:03d}.png").is_file()
            assert result.image.shape == ((64, 64) if model == "clip_fusion" else (48, 48))
            assert np.isfinite(result.image).all() and np.abs(result.image).sum() > 0
            assert f'src="examples/{i:03d}.png"' in page
        else:
            assert result.image is None and not (tmp_path / "examples" / f"{i:03d}.png").exists()
        if "text" in TAKES[model]:
            assert len(result.tokens) == len(result.token_scores) > 2
            assert np.isfinite(result.token_scores).all() and np.abs(result.token_scores).sum() > 0
            assert 'class="tok"' in page
        else:
            assert result.tokens is None and 'class="tok"' not in page


def test_predict_one_pair_gives_the_module_s_probabilities(checkpoints, test_examples):
    folder, records, expected, classes = test_examples
    study, _ = restore_for_prediction(checkpoints["clip_fusion"])
    probabilities = predict_probabilities(
        study, [r.text for r in records], [folder / "faces" / f"{i}.png" for i in range(6)]
    )
    torch.testing.assert_close(probabilities, expected, atol=1e-5, rtol=1e-4)

    cfg = compose_entry("predict", [f"ckpt_path={checkpoints['clip_fusion']}"])
    cfg.text, cfg.image = records[0].text, str(folder / "faces" / "0.png")
    printed = predict(cfg)
    assert printed.startswith(f"emotion: {classes[int(expected[0].argmax())]}\n")
    assert all(c in printed for c in classes)


def test_predict_a_csv_writes_one_row_of_probabilities_per_input(checkpoints, test_examples):
    folder, records, expected, classes = test_examples
    source = folder / "batch.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "image"])
        writer.writerows([r.id, r.text, f"faces/{i}.png"] for i, r in enumerate(records))
    out = predict(
        compose_entry("predict", [f"ckpt_path={checkpoints['clip_fusion']}", f"input={source}"])
    )
    assert out == folder / "batch_predictions.csv"
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == [r.id for r in records]
    for row, probs in zip(rows, expected, strict=True):
        written = np.array([float(row[f"prob_{c}"]) for c in classes])
        assert written.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(written, probs.numpy(), atol=1e-5)
        assert row["predicted"] == classes[int(probs.argmax())]


def test_one_modality_checkpoints_take_their_one_input(checkpoints, test_examples, tmp_path):
    folder, records, _, _ = test_examples
    cfg = compose_entry(
        "predict", [f"ckpt_path={checkpoints['image_cnn']}", f"image={folder}/faces/1.png"]
    )
    assert predict(cfg).startswith("emotion: ")
    cfg = compose_entry("predict", [f"ckpt_path={checkpoints['text_lstm']}"])
    cfg.text = records[1].text
    assert predict(cfg).startswith("emotion: ")
    cfg.image = str(folder / "faces" / "1.png")
    with pytest.raises(ConfigError, match="takes only text, not image"):
        predict(cfg)
    cfg = compose_entry("predict", [f"ckpt_path={checkpoints['clip_fusion']}", "text=so happy"])
    with pytest.raises(ConfigError, match="image is missing"):
        predict(cfg)
    text_csv = tmp_path / "texts.csv"
    text_csv.write_text("text,image\nhello,faces/0.png\n")
    cfg = compose_entry("predict", [f"ckpt_path={checkpoints['text_lstm']}", f"input={text_csv}"])
    with pytest.raises(ConfigError, match="columns: the model takes only text, not image"):
        predict(cfg)


def test_bad_csv_inputs_name_the_file_and_line(checkpoints, tmp_path):
    source = tmp_path / "texts.csv"
    source.write_text("id,text\n1,fine\n2, \n3,fine again\n")
    with pytest.raises(DataError, match=r"texts.csv:3: the text column is empty"):
        predict(
            compose_entry("predict", [f"ckpt_path={checkpoints['text_lstm']}", f"input={source}"])
        )
    source.write_text("image\nnot_there.png\n")
    with pytest.raises(DataError, match="not_there.png"):
        predict(
            compose_entry("predict", [f"ckpt_path={checkpoints['image_cnn']}", f"input={source}"])
        )


@pytest.mark.parametrize(
    ("content", "line", "found"),
    [
        ("id,text\n1,so happy\n2,happy, then sad\n", 3, 3),  # an unquoted comma in the text
        ("id,text\n1,so happy,extra\n", 2, 3),
        ("id,text\n1\n", 2, 1),
    ],
    ids=["unquoted comma", "extra field", "missing field"],
)
def test_a_csv_row_with_the_wrong_field_count_writes_nothing(
    content, line, found, checkpoints, tmp_path
):
    source, out = tmp_path / "texts.csv", tmp_path / "texts_predictions.csv"
    source.write_text(content)
    out.write_text("an earlier output\n")
    expected = rf"texts.csv:{line}: expected 2 fields \(id, text\), found {found}"
    with pytest.raises(DataError, match=expected):
        predict(
            compose_entry("predict", [f"ckpt_path={checkpoints['text_lstm']}", f"input={source}"])
        )
    assert out.read_text() == "an earlier output\n"  # not half-written, not replaced


def test_the_predictions_csv_is_written_whole_or_not_at_all(checkpoints, tmp_path, monkeypatch):
    source, out = tmp_path / "texts.csv", tmp_path / "texts_predictions.csv"
    source.write_text("id,text\n1,so happy\n2,so sad\n")
    out.write_text("an earlier output\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emoclip.system.atomic.os, "fsync", full_disk)
    with pytest.raises(EmoclipError, match=f"cannot write {out}: No space left on device"):
        predict(
            compose_entry("predict", [f"ckpt_path={checkpoints['text_lstm']}", f"input={source}"])
        )
    assert out.read_text() == "an earlier output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.csv", "texts_predictions.csv"]


def test_wrong_checkpoints_and_label_spaces_are_clear_errors(checkpoints, tmp_path):
    not_torch = tmp_path / "notes.ckpt"
    not_torch.write_text("not a checkpoint")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    for path, message in (
        (not_torch, "is not a checkpoint"),
        (foreign, "not an emoclip checkpoint"),
    ):
        with pytest.raises(EmoclipError, match=message):
            predict(compose_entry("predict", [f"ckpt_path={path}", "text=hi"]))
    ckpt = checkpoints["text_lstm"]
    with pytest.raises(ConfigError, match=r"lacks \['love'\]"):
        predict(
            compose_entry(
                "predict", [f"ckpt_path={ckpt}", "text=hi", "expect.classes=[anger,love]"]
            )
        )
    with pytest.raises(
        ConfigError, match="model=text_lstm checkpoint, not expect.model=clip_fusion"
    ):
        predict(
            compose_entry("predict", [f"ckpt_path={ckpt}", "text=hi", "expect.model=clip_fusion"])
        )
    with pytest.raises(ConfigError, match="trained on the classes"):
        restore_study(ckpt, ["data.classes=[anger,fear,happiness]"])


def run(module: str, *overrides: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    if cwd is not None:  # the checkout, for `python -m` from elsewhere
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.slow
def test_the_entry_points_run_as_modules(checkpoints, test_examples, tmp_path):
    folder = test_examples[0]
    result = run(
        "emoclip.predict",
        f"ckpt_path={checkpoints['image_cnn']}",
        f"image={folder}/faces/2.png",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The first line of the prediction (a notice that the hub is unreachable may come before).
    printed = [line for line in result.stdout.splitlines() if "cannot be reached" not in line]
    assert printed[0].startswith("emotion: ")
    assert not list(tmp_path.iterdir())  # prediction leaves no run folder behind
    explained = tmp_path / "explained"
    result = run(
        "emoclip.explain",
        f"ckpt_path={checkpoints['text_lstm']}",
        "n=1",
        "steps=4",
        f"hydra.run.dir={explained}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"explanations of 1 test examples: {explained / 'index.html'}" in result.stdout
