"""Every run knows its floor: the majority class, and whether the model rose above it.

The floor of a split is the class most frequent in the TRAIN split, predicted for every
example of that split, scored as the model is (accuracy and macro-F1, torchmetrics'), under
the flat keys `val_majority/acc`, `val_majority/f1_macro`, `test_majority/acc`,
`test_majority/f1_macro`. A set scored whole by cross-data evaluation has no train split of its
own: its floor is its own most frequent class (the best any one-class model can do there).

A kept checkpoint is **degenerate** on a split when it predicts one class for every example,
or when its macro-F1 is within noise of the floor's: less than NOISE_SE standard errors above
it, the standard error being the binomial one of an accuracy at the floor's level on that many
examples, sqrt(a (1 - a) / n) (a: the majority's accuracy, n: the split's size; on 2,000
examples at a = 0.35 that is 0.011, so the margin must exceed 0.021). metrics.json then says
`"degenerate": true` (val or test) and, for a two-modality run, `"degenerate_ablations":
{"text_only": ..., "image_only": ...}` (the test ablations, against the test floor), with the
reasons in `"degenerate_why"`; the run ends with a WARNING naming them.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

log = logging.getLogger(__name__)

NOISE_SE = 2.0  # how many standard errors above the floor a model's macro-F1 must be
ABLATION_SCOPES = {"test_text_only": "text_only", "test_image_only": "image_only"}


def majority_class(labels: Sequence[str], classes: Sequence[str]) -> str:
    """The most frequent label (ties: the first in `classes`)."""
    counts = Counter(labels)
    return max(classes, key=lambda c: (counts[c], -classes.index(c)))


def constant_scores(labels: Sequence[str], predicted: str, classes: Sequence[str]) -> dict:
    """Accuracy and macro-F1 of predicting `predicted` for every example with these labels."""
    index = {c: i for i, c in enumerate(classes)}
    target = torch.tensor([index[label] for label in labels])
    preds = torch.full_like(target, index[predicted])
    n = len(classes)
    return {
        "acc": float(multiclass_accuracy(preds, target, n, average="micro")),
        "f1_macro": float(multiclass_f1_score(preds, target, n, average="macro")),
    }


def floors(records: dict[str, list], classes: Sequence[str]) -> dict:
    """`{split}_majority/acc` and `/f1_macro` for val and test (those with examples), the
    class, and where it was counted (`majority_of`: train, or the scored set)."""
    train = [r.label for r in records.get("train", [])]
    majority = majority_class(train or [r.label for r in records["test"]], list(classes))
    out = {"majority_class": majority, "majority_of": "train" if train else "the scored set"}
    for split in ("val", "test"):
        labels = [r.label for r in records.get(split, [])]
        if labels:
            scores = constant_scores(labels, majority, classes)
            out.update({f"{split}_majority/{k}": v for k, v in scores.items()})
            out[f"{split}_majority/n"] = len(labels)
    return out


def noise(acc: float, n: int) -> float:
    """The binomial standard error of an accuracy `acc` measured on `n` examples."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / max(n, 1))


def why_degenerate(scope: str, results: dict, floor: dict, classes: Sequence[str]) -> str | None:
    """Why the model is degenerate on `scope` (a stage or a test ablation), else None."""
    split = "val" if scope == "val" else "test"
    matrix = results.get(f"{scope}/confusion_matrix")
    if matrix is not None:
        predicted = [
            c for c, column in zip(classes, zip(*matrix, strict=True), strict=True) if any(column)
        ]
        if len(predicted) == 1:
            total = sum(map(sum, matrix))
            return f"{scope}: predicts one class ({predicted[0]}) for all {total} examples"
    if f"{split}_majority/f1_macro" not in floor or f"{scope}/f1_macro" not in results:
        return None
    f1, floor_f1 = results[f"{scope}/f1_macro"], floor[f"{split}_majority/f1_macro"]
    margin = NOISE_SE * noise(floor[f"{split}_majority/acc"], floor[f"{split}_majority/n"])
    if f1 - floor_f1 < margin:
        return (
            f"{scope}: macro-F1 {f1:.4f} is within noise of the majority class's "
            f"{floor_f1:.4f} (less than {margin:.4f} above it: {NOISE_SE:g} standard errors)"
        )
    return None


def assess(results: dict[str, dict], records: dict[str, list], classes: Sequence[str]) -> dict:
    """What metrics.json records about the floor: the majority's scores, `degenerate`,
    `degenerate_ablations` (two-modality runs) and the reasons (`degenerate_why`)."""
    flat = {k: v for scope in results.values() for k, v in scope.items()}
    floor = floors(records, classes)
    why = [w for s in ("val", "test") if (w := why_degenerate(s, flat, floor, classes))]
    out = {**floor, "degenerate": bool(why)}
    ablations = {}
    for scope, name in ABLATION_SCOPES.items():
        if f"{scope}/f1_macro" in flat:
            reason = why_degenerate(scope, flat, floor, classes)
            ablations[name] = reason is not None
            why += [reason] if reason else []
    if ablations:
        out["degenerate_ablations"] = ablations
    out["degenerate_why"] = why
    return out


def warning(metrics: dict) -> str | None:
    """The run's closing WARNING when it (or an ablation) is degenerate, else None."""
    why = metrics.get("degenerate_why") or []
    if not why:
        return None
    what = "the model" if metrics.get("degenerate") else "an ablation of the model"
    # Short lines: the headline, one reason a line, then what to try.
    return "\n".join(
        [
            f"WARNING: {what} is degenerate, no better than predicting the majority class "
            f"({metrics.get('majority_class')}):",
            *(f"  {reason}" for reason in why),
            "It is no result: train longer, check the learning rate, or weigh rare classes "
            "more (model.class_weights=balanced)",
        ]
    )


def warn_if_degenerate(metrics: dict) -> None:
    """The closing WARNING of a run no better than its majority class."""
    if metrics.get("fast_dev_run"):
        return  # one batch per split: no result, and no warning about it
    if text := warning(metrics):
        log.warning(text)
