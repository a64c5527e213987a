"""Predict emotions with a trained checkpoint:

    emoclip-predict ckpt_path=PATH text="I can't stop smiling" image=face.png
    emoclip-predict ckpt_path=PATH input=examples.csv [out=predictions.csv]

A model takes the inputs its study was trained on: text and image, text only, or image only.
Inputs are preprocessed exactly as the test split was (the data module's own code, the
checkpoint's tokenizer); the checkpoint is loaded as data, never by running pickled code.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from emoclip.cli.entry import hydra_entry, run_entry
from emoclip.data.labels import LabelSpace
from emoclip.data.readers import TextDecoder, csv_rows
from emoclip.errors import ConfigError, DataError
from emoclip.system.atomic import open_atomically

if TYPE_CHECKING:  # the entry imports only what Hydra needs; the work imports the rest
    import torch

    from emoclip.study.build import Study

INPUT_KEYS = {"text": "text", "image": "image"}  # modality -> command-line key and csv column


def predict_probabilities(
    study: Study,
    texts: Sequence[str] | None,
    images: Sequence[Path] | None,
    batch_size: int = 64,
    device: str = "cpu",
) -> torch.Tensor:
    """(n, num_classes) class probabilities of the model for these inputs."""
    import torch

    module = study.module.to(device).eval()
    n = len(texts) if texts is not None else len(images)
    probabilities = []
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        batch = study.datamodule.encode_inputs(
            texts[part] if texts is not None else None,
            images[part] if images is not None else None,
        )
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            probabilities.append(module(batch).float().softmax(-1).cpu())
    found = torch.cat(probabilities)
    if not bool(found.isfinite().all()):
        first = int((~found.isfinite()).any(-1).nonzero()[0])
        raise DataError(
            f"the model gives NaN probabilities for input {first + 1}: no class can be named "
            "(its weights or this input hold non-finite values)"
        )
    return found


def check_expected(
    cfg: DictConfig, study_cfg: DictConfig, classes: tuple[str, ...], space: str = "emotion"
) -> None:
    """What the caller says the checkpoint must be (expect.model, expect.classes)."""
    expected_model = cfg.expect.get("model")
    if expected_model and expected_model != study_cfg.model.name:
        raise ConfigError(
            f"{cfg.ckpt_path} is a model={study_cfg.model.name} checkpoint, "
            f"not expect.model={expected_model}"
        )
    if cfg.expect.get("classes"):
        wanted = LabelSpace(space, list(cfg.expect.classes)).classes
        lacking = [c for c in wanted if c not in classes]
        extra = [c for c in classes if c not in wanted]
        if lacking or extra:
            differences = [f"it lacks {lacking}"] if lacking else []
            differences += [f"it also has {extra}"] if extra else []
            raise ConfigError(
                f"{cfg.ckpt_path} predicts the classes {list(classes)}, not "
                f"expect.classes={list(wanted)} ({'; '.join(differences)})"
            )


def check_modalities(given: Sequence[str], modalities: Sequence[str], where: str) -> None:
    cannot = [m for m in given if m not in modalities]
    if cannot:
        raise ConfigError(
            f"{where}: the model takes only {' and '.join(modalities)}, not {' or '.join(cannot)}"
        )
    missing = [m for m in modalities if m not in given]
    if missing:
        raise ConfigError(
            f"{where}: the model takes {' and '.join(modalities)}; "
            f"{' and '.join(missing)} is missing"
        )


def read_input_csv(path: Path, modalities: Sequence[str]) -> tuple[list[dict], dict]:
    """The csv's rows, and per modality its inputs (image paths relative to the csv). Read by
    the training readers' csv code: every row must have as many fields as the header."""
    if not path.is_file():
        raise DataError(f"input={path} is not a file")
    numbered = list(csv_rows(path, required=(), decoder=TextDecoder(), what="input csv"))
    if not numbered:
        raise DataError(f"{path} has a header but no rows to predict")
    columns = list(numbered[0][1])
    check_modalities([m for m in INPUT_KEYS if m in columns], modalities, f"{path} columns")
    rows, inputs = [], {m: [] for m in modalities}
    for line, row in numbered:
        for m in modalities:
            value = row[m].strip()
            if not value:
                raise DataError(f"{path}:{line}: the {m} column is empty")
            inputs[m].append(value)
        rows.append(row)
    if "image" in inputs:
        inputs["image"] = [path.parent / p for p in inputs["image"]]
    return rows, inputs


def write_predictions(
    path: Path, rows: list[dict], classes: Sequence[str], probabilities: torch.Tensor
) -> None:
    """The input rows with `predicted` and `prob_<class>` columns, written whole or not at all."""
    columns = [*rows[0].keys(), "predicted", *(f"prob_{c}" for c in classes)]
    with open_atomically(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row, probs in zip(rows, probabilities.tolist(), strict=True):
            best = max(range(len(classes)), key=probs.__getitem__)
            probs_by_class = {f"prob_{c}": f"{p:.6f}" for c, p in zip(classes, probs, strict=True)}
            writer.writerow({**row, "predicted": classes[best], **probs_by_class})


def describe(classes: Sequence[str], probabilities: torch.Tensor, space: str = "emotion") -> str:
    """The predicted class, headed by its label space (emotion, sentiment; class if custom)."""
    order = probabilities.argsort(descending=True).tolist()
    width = max(len(c) for c in classes)
    heading = "class" if space == "custom" else space
    lines = [f"{heading}: {classes[order[0]]}", "probabilities:"]
    lines += [f"  {classes[i]:<{width}}  {probabilities[i]:.4f}" for i in order]
    return "\n".join(lines)


def predict(cfg: DictConfig) -> Path | str:
    """Print the prediction for text=/image=, or write a csv of predictions for input=; return
    the csv's path or the printed text."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is not set: the checkpoint to predict with")
    single = {m: cfg.get(key) for m, key in INPUT_KEYS.items() if cfg.get(key) not in (None, "")}
    if cfg.get("input") and single:
        raise ConfigError("give input=file.csv, or text= and/or image=, not both")
    if not cfg.get("input") and not single:
        raise ConfigError('nothing to predict: give text="..." and/or image=PATH, or input=CSV')
    from emoclip.study.restore import restore_for_prediction
    from emoclip.study.trust import Trust

    study, study_cfg = restore_for_prediction(cfg.ckpt_path, Trust.from_entry(cfg))
    classes, modalities = study.module.classes, study.datamodule.modalities
    check_expected(cfg, study_cfg, classes, study.datamodule.label_space.name)
    options = {"batch_size": cfg.batch_size, "device": cfg.device}
    if cfg.get("input"):
        source = Path(cfg.input)
        rows, inputs = read_input_csv(source, modalities)
        probabilities = predict_probabilities(
            study, inputs.get("text"), inputs.get("image"), **options
        )
        out = (
            Path(cfg.out) if cfg.get("out") else source.with_name(f"{source.stem}_predictions.csv")
        )
        write_predictions(out, rows, classes, probabilities)
        print(f"predictions of {len(rows)} examples: {out}", flush=True)
        return out
    check_modalities(list(single), modalities, str(cfg.ckpt_path))
    image = Path(str(single["image"])) if "image" in single else None
    if image is not None and not image.is_file():
        raise DataError(f"image={image} is not a file")
    probabilities = predict_probabilities(
        study,
        [str(single["text"])] if "text" in single else None,
        [image] if image is not None else None,
        **options,
    )
    text = describe(classes, probabilities[0], study.datamodule.label_space.name)
    print(text, flush=True)
    return text


@hydra_entry("predict")
def main(cfg: DictConfig) -> None:
    run_entry(cfg, lambda: predict(cfg), reads_checkpoint=True)


if __name__ == "__main__":
    main()
