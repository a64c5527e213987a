"""Smaller frictions of issue 19: text tables' file names, empty texts, label_map as written."""

import pytest
from hydra.utils import instantiate

from emoclip.errors import ConfigError, DataError
from tests.conftest import compose_train

ROWS = {
    "train": [("so happy today", "joy"), ("this is awful", "sadness")] * 4,
    "dev": [("what a day", "joy"), ("I miss you", "sadness")],
    "test": [("lovely", "joy"), ("gloomy", "sadness")],
}


def write_tables(folder, names):
    folder.mkdir()
    for split, name in names.items():
        lines = ["text,label"] + [f'"{t}",{label}' for t, label in ROWS[split]]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def records(root, tmp_path, *overrides):
    cfg = compose_train(
        ["model=text_lstm", "data=text_table", f"data.root={root}", *overrides], tmp_path
    )
    return instantiate(cfg.data).load_records()


def test_a_dev_file_with_a_suffix_is_the_validation_split(tmp_path):
    names = {s: f"{s}_sent_emo.csv" for s in ROWS}
    found = records(write_tables(tmp_path / "t", names), tmp_path)
    assert [len(found[s]) for s in ("train", "val", "test")] == [8, 2, 2]


def test_a_key_names_the_files(tmp_path):
    root = write_tables(tmp_path / "t", {"train": "a.csv", "dev": "b.csv", "test": "c.csv"})
    with pytest.raises(DataError, match="no file for the train, val, test"):
        records(root, tmp_path)
    found = records(root, tmp_path, "data.dataset.files={train: a.csv, dev: b.csv, test: c.csv}")
    assert [len(found[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    with pytest.raises(ConfigError, match="names no file for test"):
        records(root, tmp_path, "data.dataset.files={train: a.csv, val: b.csv}")


def test_an_empty_text_stops_the_run_or_is_skipped(tmp_path):
    root = write_tables(tmp_path / "t", {s: f"{s}.csv" for s in ROWS})
    with open(root / "train.csv", "a") as f:
        f.write('"",joy\n')
    with pytest.raises(DataError, match=r"train.csv:10 has no text .*data.skip_bad=true"):
        records(root, tmp_path)
    assert len(records(root, tmp_path, "data.skip_bad=true")["train"]) == 8


def test_label_map_as_the_readme_writes_it(tmp_path):
    root = write_tables(tmp_path / "t", {s: f"{s}.csv" for s in ROWS})
    for split in ROWS:
        path = root / f"{split}.csv"
        path.write_text(path.read_text().replace("sadness", "grr"))
    found = records(root, tmp_path, "data.label_map={grr: anger}")
    assert {r.label for r in found["train"]} == {"happiness", "anger"}
