"""Split assignment: grouped (no subject in two splits) and stratified by label where possible.

Fractions are of the whole record list. Records whose group is None are each their own
group. Splits depend only on the set of records and the seed, not on the order they come in;
each split lists its records in id order. The settings are the data config's num_folds, fold,
val_fraction, test_fraction and split_seed (`GroupedSplit`).
"""

from __future__ import annotations

import heapq
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedKFold

from emoclip.data.labels import LabelSpace
from emoclip.data.records import Record, Splits
from emoclip.errors import ConfigError, DataError


class GroupedSplit:
    """How records without given splits become train/val/test: grouped (record.group),
    stratified by label; fold `fold` of `num_folds` as the test part when num_folds is set."""

    def __init__(
        self,
        num_folds: int | None = None,
        fold: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.15,
        seed: int = 0,
    ):
        if num_folds:
            check_fold(num_folds, fold)  # before any data is read
        self.num_folds, self.fold = num_folds, fold
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed

    def __call__(self, records: Sequence[Record]) -> Splits:
        if self.num_folds:
            return grouped_kfold(
                records, self.num_folds, self.fold, self.val_fraction, seed=self.seed
            )
        return grouped_split(records, self.val_fraction, self.test_fraction, seed=self.seed)


def grouped_split(
    records: Sequence[Record], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> Splits:
    """train/val/test with no group in two splits, stratified by label where possible.

    The test part is the one of round(1 / test_fraction) stratified group folds whose size is
    nearest test_fraction; val is carved from the rest the same way. With fewer groups than
    folds the part is a random choice of groups (GroupShuffleSplit), not stratified.
    """
    for key, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ConfigError(f"{key} must be between 0 and 1 (exclusive), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction must be below 1 to leave training data, "
            f"got {val_fraction} + {test_fraction}"
        )
    records = _sorted(records)
    rest, test = _carve(records, test_fraction, seed)
    train, val = _carve(rest, val_fraction / (1 - test_fraction), seed)
    return {"train": train, "val": val, "test": test}


def grouped_kfold(
    records: Sequence[Record], num_folds: int, fold: int, val_fraction: float = 0.1, seed: int = 0
) -> Splits:
    """Fold ``fold`` (0-based) of ``num_folds`` stratified group folds as test; val from the rest.

    Across fold = 0..num_folds-1 every group is in the test part exactly once.
    """
    check_fold(num_folds, fold)
    rest_fraction = 1 - 1 / num_folds
    if not 0 < val_fraction < rest_fraction:
        raise ConfigError(
            f"data.val_fraction must be between 0 and {rest_fraction:.3g} (what the test fold "
            f"of data.num_folds={num_folds} leaves), got {val_fraction}"
        )
    records = _sorted(records)
    groups = _group_ids(records)
    num_groups = len(set(groups.tolist()))
    if num_folds > num_groups:
        raise ConfigError(
            f"data.num_folds={num_folds} is larger than the number of groups (subjects) in the "
            f"data, {num_groups}; use data.num_folds={num_groups} or fewer"
        )
    folds = _stratified_group_folds(records, groups, num_folds, seed)
    in_test = np.zeros(len(records), dtype=bool)
    in_test[folds[fold]] = True
    rest = [r for r, t in zip(records, in_test, strict=True) if not t]
    test = [r for r, t in zip(records, in_test, strict=True) if t]
    train, val = _carve(rest, val_fraction / rest_fraction, seed)
    return {"train": train, "val": val, "test": test}


def check_fold(num_folds: int, fold: int) -> None:
    if num_folds < 2:
        raise ConfigError(f"data.num_folds must be at least 2, got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ConfigError(
            f"data.fold={fold} is out of range for data.num_folds={num_folds}; "
            f"expected 0..{num_folds - 1}"
        )


# What to change when a split lacks a class, for data split by emoclip and for given splits.
SPLIT_SETTINGS_HINT = (
    "Use fewer folds (data.num_folds), other split fractions (data.val_fraction, "
    "data.test_fraction) or drop the class from data.classes"
)
GIVEN_SPLITS_HINT = "The data set gives its own splits: drop the class from data.classes"


def check_splits(
    splits: Splits, classes: Sequence[str] | LabelSpace, hint: str = SPLIT_SETTINGS_HINT
) -> None:
    """Every class in every split, and no group or id in two splits; else a DataError."""
    names = classes.classes if isinstance(classes, LabelSpace) else tuple(classes)
    _check_disjoint(splits)
    empty = [
        (split, name)
        for split, records in splits.items()
        for counts in [Counter(r.label for r in records)]
        for name in names
        if counts[name] == 0
    ]
    if empty:
        listed = "; ".join(
            f"split {split!r} has no examples of class {name!r}" for split, name in empty
        )
        raise DataError(f"{listed}. {hint}")


def split_ids(splits: Splits) -> dict[str, list[str]]:
    """The record ids of each split, in order, for splits.json."""
    return {split: [r.id for r in records] for split, records in splits.items()}


def _check_disjoint(splits: Splits) -> None:
    for attribute, what in (("group", "group"), ("id", "record id")):
        where: dict[str, set[str]] = defaultdict(set)
        for split, records in splits.items():
            for record in records:
                value = getattr(record, attribute)
                if value is not None:
                    where[value].add(split)
        shared = sorted((value, sorted(s)) for value, s in where.items() if len(s) > 1)
        if shared:
            shown = ", ".join(f"{value!r} in {'/'.join(s)}" for value, s in shared[:5])
            more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
            raise DataError(
                f"{len(shared)} {what}(s) appear in more than one split: {shown}{more}; "
                "splits must be disjoint by group so that no subject is seen in training and test"
            )


def _sorted(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.id)


def _group_ids(records: Sequence[Record]) -> np.ndarray:
    index: dict[str, int] = {}
    ids = np.empty(len(records), dtype=np.int64)
    for i, record in enumerate(records):
        if record.group is None:
            ids[i] = len(index)
            index[f"\0{i}"] = ids[i]  # a key no real group can have
        else:
            ids[i] = index.setdefault(record.group, len(index))
    return ids


def _stratified_group_folds(
    records: Sequence[Record], groups: np.ndarray, num_folds: int, seed: int
) -> list[np.ndarray]:
    labels = np.array([r.label for r in records])
    singletons = len(set(groups.tolist())) == len(records)
    largest_class = max(Counter(labels.tolist()).values())
    with warnings.catch_warnings():
        # Rare classes cannot be in every fold; check_splits reports that where it matters.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        if singletons and largest_class >= num_folds:
            # The same kind of folds, but StratifiedGroupKFold's per-group loop takes seconds
            # on a text set of 16000 lines, each its own group.
            splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
            folds = splitter.split(np.zeros(len(records)), labels)
        elif len(set(groups.tolist())) > SKLEARN_GROUPS:
            return _greedy_group_folds(labels, groups, num_folds, seed)
        else:
            grouped = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
            folds = grouped.split(np.zeros(len(records)), labels, groups)
        return [test for _, test in folds]


# Up to this many groups, scikit-learn's StratifiedGroupKFold (the folds of earlier runs stay
# as they were); above, its per-group loop (22 s at 100,000 records) gives way to a linear one.
SKLEARN_GROUPS = 5_000


def _greedy_group_folds(
    labels: np.ndarray, groups: np.ndarray, num_folds: int, seed: int
) -> list[np.ndarray]:
    """Stratified group folds in linear time: groups in a seeded random order, largest first
    within their most common label, each to the fold with the fewest examples of that label
    so far (ties: the fewest examples in all)."""
    _, group = np.unique(groups, return_inverse=True)
    _, label = np.unique(labels, return_inverse=True)
    num_groups = int(group.max()) + 1
    size = np.bincount(group, minlength=num_groups)
    # Each group's most common label: its (group, label) pairs, most frequent first per group.
    pairs, counts = np.unique(
        group.astype(np.int64) * (label.max() + 1) + label, return_counts=True
    )
    pair_group, pair_label = np.divmod(pairs, label.max() + 1)
    first = np.lexsort((-counts, pair_group))
    majority = np.empty(num_groups, dtype=np.int64)
    majority[pair_group[first][::-1]] = pair_label[first][::-1]  # the last write is the first
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(num_groups)
    order = shuffled[np.lexsort((-size[shuffled], majority[shuffled]))]
    totals = [0] * num_folds
    loads: dict[int, list[tuple[int, int, int]]] = {}  # label -> heap of (count, total, fold)
    fold_of = np.empty(num_groups, dtype=np.int64)
    for g, c, n in zip(order.tolist(), majority[order].tolist(), size[order].tolist(), strict=True):
        heap = loads.setdefault(c, [(0, totals[k], k) for k in range(num_folds)])
        count, _, k = heapq.heappop(heap)
        fold_of[g] = k
        totals[k] += n
        heapq.heappush(heap, (count + n, totals[k], k))
    in_fold = fold_of[group]
    return [np.flatnonzero(in_fold == k) for k in rng.permutation(num_folds)]


def _carve(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """(kept, carved): about ``fraction`` of the records, whole groups only."""
    groups = _group_ids(records)
    num_groups = len(set(groups.tolist()))
    if num_groups < 2:
        raise DataError(
            f"cannot split {len(records)} records into grouped parts: they belong to "
            f"{num_groups} group(s) and a group may not be in two splits; more subjects are needed"
        )
    num_folds = max(2, round(1 / fraction))
    if num_groups >= num_folds:
        folds = _stratified_group_folds(records, groups, num_folds, seed)
        target = fraction * len(records)
        carved = min(folds, key=lambda f: abs(len(f) - target))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        _, carved = next(splitter.split(np.zeros(len(records)), groups=groups))
    mask = np.zeros(len(records), dtype=bool)
    mask[carved] = True
    kept = [r for r, m in zip(records, mask, strict=True) if not m]
    return kept, [r for r, m in zip(records, mask, strict=True) if m]
