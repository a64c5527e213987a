"""Grouped, stratified split assignment and the checks on its result."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from emoclip.data.labels import LabelSpace
from emoclip.data.records import Record
from emoclip.data.splits import check_splits, grouped_kfold, grouped_split, split_ids
from emoclip.errors import ConfigError, DataError

CLASSES = ("anger", "disgust", "happiness", "surprise")


def subjects(num_subjects: int = 40, seed: int = 0) -> list[Record]:
    """CK+-like: each subject shows a few of the emotions, three frames each."""
    rng = random.Random(seed)
    records = []
    for s in range(num_subjects):
        for label in rng.sample(CLASSES, k=rng.randint(1, 3)):
            for frame in range(3):
                records.append(
                    Record(id=f"S{s:03d}_{label}_{frame}", label=label, group=f"S{s:03d}")
                )
    return records


def groups_of(records: list[Record]) -> set[str | None]:
    return {r.group for r in records}


def test_grouped_split_no_subject_in_two_splits() -> None:
    records = subjects()
    splits = grouped_split(records, val_fraction=0.2, test_fraction=0.2, seed=1)
    train, val, test = (groups_of(splits[k]) for k in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert sorted(r.id for rs in splits.values() for r in rs) == sorted(r.id for r in records)
    for part in ("val", "test"):
        assert 0.1 < len(splits[part]) / len(records) < 0.3
    check_splits(splits, CLASSES)


def test_grouped_split_is_deterministic_and_order_free() -> None:
    records = subjects()
    first = split_ids(grouped_split(records, seed=3))
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert split_ids(grouped_split(shuffled, seed=3)) == first
    assert any(split_ids(grouped_split(records, seed=s)) != first for s in (4, 5, 6))


def test_grouped_split_stratifies_labels() -> None:
    # Ungrouped records (group None) with 70/20/10 classes: each part keeps the proportions.
    labels = ["happiness"] * 700 + ["anger"] * 200 + ["surprise"] * 100
    records = [Record(id=f"line:{i}", label=label) for i, label in enumerate(labels)]
    splits = grouped_split(records, val_fraction=0.1, test_fraction=0.1, seed=0)
    for part in ("val", "test"):
        counts = Counter(r.label for r in splits[part])
        assert counts == {"happiness": 70, "anger": 20, "surprise": 10}


def test_grouped_split_stratifies_within_groups() -> None:
    records = subjects(num_subjects=60)
    splits = grouped_split(records, seed=0)
    whole = Counter(r.label for r in records)
    test = Counter(r.label for r in splits["test"])
    for label in CLASSES:
        share = test[label] / len(splits["test"])
        assert abs(share - whole[label] / len(records)) < 0.1


def test_grouped_split_fewer_groups_than_folds_still_splits_by_group() -> None:
    # 3 groups cannot fill round(1 / 0.1) = 10 folds: whole groups are drawn at random instead.
    records = [Record(id=f"{g}{i}", label=CLASSES[i % 2], group=g) for g in "abc" for i in range(4)]
    splits = grouped_split(records, seed=0)
    assert [len(groups_of(splits[k])) for k in ("train", "val", "test")] == [1, 1, 1]
    assert grouped_split(records, seed=0) == splits


def test_grouped_split_bad_fractions_and_one_group() -> None:
    records = subjects()
    with pytest.raises(ConfigError, match="data.val_fraction"):
        grouped_split(records, val_fraction=0)
    with pytest.raises(ConfigError, match=r"data.val_fraction \+ data.test_fraction"):
        grouped_split(records, val_fraction=0.5, test_fraction=0.5)
    one = [Record(id=str(i), label="anger", group="S1") for i in range(5)]
    with pytest.raises(DataError, match="1 group"):
        grouped_split(one)


def test_grouped_kfold_tests_every_group_exactly_once() -> None:
    records = subjects(num_subjects=30)
    seen: Counter[str | None] = Counter()
    for fold in range(5):
        splits = grouped_kfold(records, num_folds=5, fold=fold, val_fraction=0.1, seed=2)
        train, val, test = (groups_of(splits[k]) for k in ("train", "val", "test"))
        assert not train & val and not train & test and not val & test
        assert val and len(splits["test"]) + len(splits["val"]) + len(splits["train"]) == len(
            records
        )
        seen.update(test)
    assert seen == Counter(groups_of(records))


def test_grouped_kfold_errors_name_the_keys() -> None:
    records = subjects(num_subjects=6)
    with pytest.raises(ConfigError, match=r"data.fold=5 is out of range for data.num_folds=5"):
        grouped_kfold(records, num_folds=5, fold=5)
    with pytest.raises(ConfigError, match=r"data.fold=-1"):
        grouped_kfold(records, num_folds=5, fold=-1)
    with pytest.raises(ConfigError, match=r"data.num_folds=10 is larger .* groups .* 6"):
        grouped_kfold(records, num_folds=10, fold=0)
    with pytest.raises(ConfigError, match="data.num_folds must be at least 2"):
        grouped_kfold(records, num_folds=1, fold=0)
    with pytest.raises(ConfigError, match="data.val_fraction"):
        grouped_kfold(records, num_folds=2, fold=0, val_fraction=0.6)


def test_check_splits_missing_class_names_split_and_class() -> None:
    splits = {
        "train": [Record(id="a", label="anger", group="g1")],
        "val": [Record(id="b", label="surprise", group="g2")],
        "test": [Record(id="c", label="anger", group="g3")],
    }
    with pytest.raises(DataError) as error:
        check_splits(splits, LabelSpace("emotion", ["anger", "surprise"]))
    message = str(error.value)
    assert "split 'val' has no examples of class 'anger'" in message
    assert "split 'test' has no examples of class 'surprise'" in message
    assert "split 'train' has no examples of class 'surprise'" in message
    assert "data.num_folds" in message


def test_check_splits_group_in_two_splits() -> None:
    a = Record(id="a", label="anger", group="S1")
    b = Record(id="b", label="anger", group="S1")
    c = Record(id="c", label="anger")
    d = Record(id="d", label="anger")
    check_splits({"train": [a, c], "val": [d], "test": [Record(id="e", label="anger")]}, ["anger"])
    with pytest.raises(DataError, match=r"'S1' in test/train"):
        check_splits({"train": [a, c], "val": [d], "test": [b]}, ["anger"])
    with pytest.raises(DataError, match="record id"):
        check_splits({"train": [c], "val": [c], "test": [d]}, ["anger"])


def test_split_ids_keeps_order() -> None:
    splits = {"train": [Record(id="b", label="anger"), Record(id="a", label="anger")], "val": []}
    assert split_ids(splits) == {"train": ["b", "a"], "val": []}


def test_duplicates_join_subjects_and_are_counted() -> None:
    from emoclip.data.duplicates import join_duplicates

    records = [
        Record("a", "anger", text="So  ANGRY today", group="S1"),
        Record("b", "anger", text="so angry today", group="S2"),  # the same text: ties S1 and S2
        Record("c", "fear", text="other", group="S2"),
        Record("d", "fear", text="alone"),
        Record("e", "anger", text="again", image=np.zeros((2, 2), dtype=np.uint8)),
        Record("f", "fear", text="and again", image=np.zeros((2, 2), dtype=np.uint8)),
    ]
    joined, counts = join_duplicates(records)
    assert [r.group for r in joined] == [
        "S1+S2",
        "S1+S2",
        "S1+S2",
        None,
        "duplicates:e",
        "duplicates:e",
    ]
    assert counts["identical_texts"] == {"groups": 1, "records": 2, "with_conflicting_labels": 0}
    assert counts["identical_images"] == {"groups": 1, "records": 2, "with_conflicting_labels": 1}
    assert counts["joined_groups"] == 2


def test_many_groups_split_in_linear_time_grouped_and_stratified(monkeypatch) -> None:
    # Above SKLEARN_GROUPS groups the folds come from one pass over the groups.
    from emoclip.data import splits as module

    monkeypatch.setattr(module, "SKLEARN_GROUPS", 10)
    rng = random.Random(3)
    records = subjects(num_subjects=200) + [
        Record(id=f"single{i:04d}", label=rng.choice(CLASSES)) for i in range(600)
    ]
    split = grouped_split(records, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert sum(map(len, split.values())) == len(records)
    named = {k: groups_of(v) - {None} for k, v in split.items()}
    assert not named["train"] & named["test"] and not named["train"] & named["val"]
    assert abs(len(split["test"]) - 0.2 * len(records)) < 0.03 * len(records)
    for label in CLASSES:  # each class's share of test within 3 points of its share overall
        overall = sum(r.label == label for r in records) / len(records)
        in_test = sum(r.label == label for r in split["test"]) / len(split["test"])
        assert abs(in_test - overall) < 0.03
    seen: Counter[str | None] = Counter()
    for fold in range(4):
        seen.update(groups_of(grouped_kfold(records, 4, fold, seed=0)["test"]) - {None})
    assert seen == Counter(groups_of(records) - {None})
