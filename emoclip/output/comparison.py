"""The comparison report of `emoclip-report` (emoclip/report.py).

Reads every run folder (metrics.json + .hydra/config.yaml) under the given paths, groups the runs
whose composed configs differ only in seed, fold or output paths into one configuration,
and writes report.md and report.html (with two PNGs) summarising each configuration as a row.
Folders that are not a finished training run (interrupted, unfinished or failed runs,
fast_dev_run smoke tests, evaluations of a checkpoint) are listed apart, never counted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emoclip.catalogue import display_name, listed_class
from emoclip.data.sources.base import Source, source_class
from emoclip.data.sources.base import split_protocol as source_split_protocol
from emoclip.errors import DataError
from emoclip.output.document import Block, code, escape, link, to_html, to_markdown
from emoclip.runs.plots import normalise_rows, plot_confusion_grid, plot_overlaid_curves
from emoclip.runs.run_folder import (
    CONFIG_FILE,
    METRICS_FILE,
    read_history,
    read_metrics,
    study_name,
)
from emoclip.study.stored_study import read_stored_study
from emoclip.study.trust import GUARD_ONLY, Trust
from emoclip.system.safe_yaml import load_yaml_data

# Config keys (and key prefixes) in which the runs of one configuration may differ.
REPLICATE_KEYS = ("seed", "data.fold", "paths", "ckpt_path", "hydra")
CURVE_METRICS = ("val/acc", "val/f1_macro")
# metrics.json "status" of a run that finished (none: written by a version that had no status).
FINISHED = (None, "finished", "completed")
CONFUSION_PNG, CURVES_PNG = "report_confusion.png", "report_curves.png"


@dataclass
class Run:
    path: Path
    config: DictConfig
    metrics: dict
    history: list[dict]
    identity: dict[str, str] = field(init=False)  # dotted key -> unresolved value, as JSON

    def __post_init__(self):
        flat = _flatten(OmegaConf.to_container(self.config, resolve=False))
        self.identity = {k: v for k, v in flat.items() if not _is_replicate_key(k)}

    @property
    def max_epochs(self) -> int | None:
        value = _get(self.config, "trainer.max_epochs")
        return value if isinstance(value, int) and value > 0 else None

    @property
    def stopped_early(self) -> bool | None:
        """Whether early stopping ended the run: marked in its history by emoclip's callback,
        else inferred from fewer epochs than trainer.max_epochs; None if unknown."""
        if not self.history:
            return None
        if any("stopped_early" in row for row in self.history):
            return bool(self.history[-1].get("stopped_early"))
        if self.max_epochs is None:
            return None
        return len(self.history) < self.max_epochs


@dataclass
class SetAside:
    """A folder with a run config that is not a finished training run: listed, not counted."""

    path: Path
    kind: str  # one of SET_ASIDE
    reason: str


SET_ASIDE = {
    "interrupted": "Interrupted runs",
    "failed": "Failed runs",
    "unfinished": "Unfinished runs",
    "fast_dev_run": "fast_dev_run smoke tests (one batch per split; not results)",
    "evaluation": "Evaluations of a checkpoint (the trained run is the row)",
}


@dataclass
class Configuration:
    runs: list[Run]
    columns: dict[str, str] = field(default_factory=dict)  # column name -> shown value

    def values(self, key: str) -> list[float]:
        """The metric of every run; none if some run lacks it (no mean over a subset)."""
        if not all(key in run.metrics for run in self.runs):
            return []
        return [run.metrics[key] for run in self.runs]


def _is_replicate_key(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in REPLICATE_KEYS)


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict) and node:
        flat: dict[str, str] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(node, sort_keys=True)}


def find_run_folders(paths: Sequence[Path]) -> list[Path]:
    """Every folder with a composed run config under the paths (each may be one itself)."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.is_dir():
            raise DataError(f"{path}: no such folder (expected a run folder or a sweep folder)")
        candidates = [path, *(c.parent.parent for c in path.rglob(str(CONFIG_FILE)))]
        runs = [c for c in candidates if (c / CONFIG_FILE).is_file()]
        if not runs:
            raise DataError(
                f"{path}: no run folders found (a run folder holds {CONFIG_FILE} and, once the "
                f"run has finished, {METRICS_FILE})"
            )
        found.update(dict.fromkeys(c.resolve() for c in runs))
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list:
    """Sweep job folders 0, 1, ..., 10 in numeric order."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def load_run(path: Path, trust: Trust = GUARD_ONLY) -> Run | SetAside:
    """The finished training run in a folder, or why the folder is set aside. Only a folder
    whose config cannot be read at all, or that emoclip.study.stored_study refuses, is an error."""
    config_path = path / CONFIG_FILE
    stored = load_yaml_data(config_path)  # capped, no aliases; nothing resolved
    if not isinstance(stored, dict):
        raise DataError(f"{config_path}: expected a mapping of config keys")
    if stored.get("ckpt_path") and stored.get("model") is None:  # eval, explain: no study
        return SetAside(path, "evaluation", f"evaluates {code(stored['ckpt_path'])}")
    config = read_stored_study(stored, str(config_path), trust, choices=run_folder_choices(path))
    if _get(config, "trainer.fast_dev_run"):
        return SetAside(path, "fast_dev_run", "trainer.fast_dev_run: one batch of each split")
    if not (path / METRICS_FILE).is_file():
        return SetAside(path, "unfinished", "no metrics.json: still running, killed or crashed")
    try:
        raw = json.loads((path / METRICS_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return SetAside(path, "unfinished", f"metrics.json is not readable JSON ({err})")
    status = raw.get("status") if isinstance(raw, dict) else None
    if status == "fast_dev_run":
        return SetAside(path, "fast_dev_run", "trainer.fast_dev_run: one batch of each split")
    if status == "interrupted":
        epochs = raw.get("epochs_completed")
        done = f" after {_count(epochs, 'epoch')}" if isinstance(epochs, int) else ""
        return SetAside(path, "interrupted", f"interrupted (Ctrl-C){done}; not resumed")
    if status not in FINISHED:
        return SetAside(path, "failed", f"status {code(status)} in metrics.json")
    try:
        metrics = read_metrics(path)
    except DataError as err:
        return SetAside(path, "unfinished", str(err).replace(f"{path / METRICS_FILE}: ", ""))
    return Run(path, config, metrics, read_history(path, metrics))


def run_folder_choices(path: Path) -> dict | None:
    """The group options the run recorded (.hydra/hydra.yaml: hydra.runtime.choices), or None
    (a folder without it: emoclip.study.stored_study infers them)."""
    hydra_file = path / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return None
    loaded = load_yaml_data(hydra_file)
    choices = _get_plain(loaded, "hydra.runtime.choices")
    return choices if isinstance(choices, dict) and choices else None


def _get_plain(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _get(config: DictConfig, key: str) -> Any:
    """The resolved value at a dotted key (None if absent); the raw one where only Hydra
    could resolve it (e.g. ${hydra:runtime.output_dir})."""
    try:
        value = OmegaConf.select(config, key)
    except OmegaConfBaseException:
        value = OmegaConf.to_container(config, resolve=False)
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=False)
    return value


def split_protocol(config: DictConfig, folds: Sequence[int] = ()) -> str:
    """How the data of a run became train/val/test: asked of the source its data config names."""
    data = OmegaConf.select(config, "data")
    if not isinstance(data, DictConfig):
        return "unknown (no data config)"
    return source_split_protocol(
        OmegaConf.to_container(data, resolve=False), folds, find=_listed_source
    )


def _listed_source(node: Any) -> type | None:
    """The source class a data config names: emoclip's own, or one the catalogue lists (an
    installed plugin's); a class only a file names is never imported."""
    target = node.get("_target_") if isinstance(node, dict) else None
    found = source_class(node) or listed_class(target)
    return found if isinstance(found, type) and issubclass(found, Source) else None


def describe(config: DictConfig) -> dict[str, str]:
    """The columns that describe a configuration: what a reader compares runs by."""
    fusion = _get(config, "model.fusion._target_")
    return {
        "model": _shown(study_name(_get(config, "model"))),  # modality and towers: what ran
        "backbone": _backbone(config),
        "fusion": "–" if fusion is None else _fusion_name(str(fusion)),
        "finetune": _finetune(config),
        "data": _shown(_get(config, "data.name")),
    }


def _fusion_name(target: str) -> str:
    """The fusion's option name in conf/ (emoclip.catalogue), else from its class name."""
    return display_name("model/fusion", target) or escape(_snake(target.rsplit(".", 1)[-1]))


def _clip_label(config: DictConfig) -> str:
    return _shown(_get(config, "model.backbone.name_or_path") or "tiny (random init)")


def _towers(config: DictConfig) -> dict[str, Any]:
    return {m: t for m in ("text", "image") if (t := _get(config, f"model.{m}_tower")) is not None}


def _tower_name(modality: str, target: Any) -> str:
    """The tower's option name in the catalogue (model/text_tower=lstm: lstm), else its class."""
    found = display_name(f"model/{modality}_tower", str(target))
    return found or escape(str(target).rsplit(".", 1)[-1])


def _backbone(config: DictConfig) -> str:
    """CLIP's weights (both towers CLIP's halves, or a CLIP-only model), else each tower."""
    towers = _towers(config)
    kinds = {m: _tower_name(m, t.get("_target_", "")) for m, t in towers.items()}
    if not towers or (len(towers) == 2 and all(k == "clip" for k in kinds.values())):
        return "–" if _get(config, "model.backbone") is None else _clip_label(config)
    labels = []
    for m, tower in towers.items():
        kind = kinds[m]
        source = tower.get("name_or_path") or tower.get("model_name")
        if kind == "clip":
            source = _clip_label(config)
        labels.append(f"{m}: {kind}" + (f" {source}" if source else ""))
    return "; ".join(labels)


def _finetune(config: DictConfig) -> str:
    """The network's finetune mode, and any tower's own."""
    mode = _shown(_get(config, "model.network.finetune"))
    own = [f"{m} {t['finetune']}" for m, t in _towers(config).items() if t.get("finetune")]
    return f"{mode} ({', '.join(own)})" if own else mode


def _snake(class_name: str) -> str:
    name = class_name.removesuffix("Fusion")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _shown(value: Any) -> str:
    """A config value as a reader wants it: floats to 3 significant digits (an Optuna trial's
    0.0012345678901 is 0.00123), lists in brackets, nothing as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return escape(value)


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its shortest distinct tail: model.optimizer.lr -> lr, but
    model.network.dropout and model.network.lora.dropout -> network.dropout, lora.dropout."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(
                other != key and (other == tail or other.endswith("." + tail)) for other in keys
            ):
                break
        names[key] = tail
    return names


def group_runs(runs: Sequence[Run]) -> list[Configuration]:
    """One configuration per distinct config (up to replicate keys), in order of first run;
    its columns: describe()'s, the split protocol, and any other key that differs between
    configurations describe() alone would not tell apart."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(sorted(run.identity.items())), []).append(run)
    configurations = []
    for members in groups.values():
        folds = [f for f in (_get(r.config, "data.fold") for r in members) if f is not None]
        columns = describe(members[0].config)
        columns["split protocol"] = split_protocol(members[0].config, folds)
        configurations.append(Configuration(members, columns))
    by_description: dict[tuple, list[Configuration]] = {}
    for conf in configurations:
        by_description.setdefault(tuple(conf.columns.values()), []).append(conf)
    extra_keys: list[str] = []
    for alike in by_description.values():
        for key in sorted({k for c in alike for k in c.runs[0].identity}):
            values = {c.runs[0].identity.get(key) for c in alike}
            if len(values) > 1 and key not in extra_keys:
                extra_keys.append(key)
    for conf in configurations:
        for key in extra_keys:
            conf.columns[key] = _shown(_get(conf.runs[0].config, key))
    return configurations


def fold_common_columns(
    configurations: Sequence[Configuration],
) -> tuple[list[str], dict[str, str]]:
    """Split the columns into those that vary between rows and those common to all rows."""
    names = list(configurations[0].columns)
    varying = [n for n in names if len({c.columns[n] for c in configurations}) > 1]
    common = {n: configurations[0].columns[n] for n in names if n not in varying}
    return varying, common


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean, and sample standard deviation (n - 1; NaN for a single run)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else float("nan")


def format_mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.4f}" if np.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def format_margin(runs: Sequence[Run]) -> str:
    """Test macro-F1 over the majority class's, mean over the runs ("–": not recorded)."""
    if not all("test_majority/f1_macro" in r.metrics for r in runs):
        return "–"
    margins = [r.metrics["test/f1_macro"] - r.metrics["test_majority/f1_macro"] for r in runs]
    return f"{np.mean(margins):+.4f}"


def format_degenerate(runs: Sequence[Run]) -> str:
    """DEGENERATE with how many runs are, "no", or "–" (runs from before it was recorded)."""
    if not all("degenerate" in r.metrics for r in runs):
        return "–"
    count = sum(bool(r.metrics["degenerate"]) for r in runs)
    ablations = sum(any((r.metrics.get("degenerate_ablations") or {}).values()) for r in runs)
    shown = f"DEGENERATE ({count} of {len(runs)})" if count else "no"
    return shown + (f"; ablation degenerate in {ablations} of {len(runs)}" if ablations else "")


def _label(index: int, conf: Configuration, varying: Sequence[str], names: dict[str, str]) -> str:
    """`#index` and what sets the row apart, for the tables and figures after the first."""
    shown = [
        conf.columns[n] if n in ("model", "data") else f"{names.get(n, n)}={conf.columns[n]}"
        for n in varying
        if n != "split protocol" and conf.columns[n] != "–"
    ]
    return f"#{index} " + ", ".join(shown)


def format_budget(runs: Sequence[Run]) -> str:
    """The epochs the runs trained, of how many allowed, and how many early stopping ended:
    `2 of 2`, `6-10 of 10, 2 of 3 stopped early`; `–` without epochs (fitted in one pass)."""
    epochs = sorted({len(run.history) for run in runs})
    if epochs == [0]:
        return "–"
    caps = {run.max_epochs for run in runs}
    span = str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
    cap = caps.pop() if len(caps) == 1 else None
    text = f"{span} of {cap}" if cap else span
    stopped = sum(1 for run in runs if run.stopped_early)
    if stopped:
        text += ", stopped early" if len(runs) == 1 else f", {stopped} of {len(runs)} stopped early"
    return text


def mean_curves(conf: Configuration) -> dict[str, np.ndarray]:
    """Each validation metric per epoch, the mean over the runs that reached that epoch."""
    curves = {}
    for metric in CURVE_METRICS:
        series = [[row.get(metric, np.nan) for row in run.history] for run in conf.runs]
        length = max((len(s) for s in series), default=0)
        if length == 0:
            continue
        padded = np.full((len(series), length), np.nan)
        for i, s in enumerate(series):
            padded[i, : len(s)] = s
        counts = (~np.isnan(padded)).sum(axis=0)
        if counts.any():
            with np.errstate(invalid="ignore"):  # 0 / 0: no run has that epoch, NaN
                curves[metric] = np.nansum(padded, axis=0) / counts
    return curves


def mean_confusion(conf: Configuration) -> np.ndarray | None:
    """The mean over runs of each run's row-normalised test confusion matrix."""
    matrices = [run.metrics.get("test/confusion_matrix") for run in conf.runs]
    if any(m is None for m in matrices):
        return None
    return np.mean([normalise_rows(m) for m in matrices], axis=0)


def build_report(
    runs: Sequence[Run], out_dir: Path, sources: Sequence[Path], set_aside: Sequence[SetAside]
) -> list[Block]:
    """The report's blocks; writes its two figures into out_dir."""
    configurations = group_runs(runs)
    varying, common = fold_common_columns(configurations)
    names = short_names([n for n in varying if "." in n])
    labels = [_label(i, c, varying, names) for i, c in enumerate(configurations, start=1)]
    blocks: list[Block] = [
        ("h1", "emoclip comparison report"),
        (
            "p",
            f"{_count(len(runs), 'run')} in {_count(len(configurations), 'configuration')}, "
            "from "
            + ", ".join(f"`{p}`" for p in sources)
            + ". The runs of a row differ only in `seed`, `data.fold` or output paths. "
            "Metrics are on each run's test split (best checkpoint); "
            "mean ± sample standard deviation over the runs of the row."
            + (
                f" {_count(len(set_aside), 'folder')} that {'is' if len(set_aside) == 1 else 'are'}"
                " not a finished training run "
                f"{'is' if len(set_aside) == 1 else 'are'} listed at the end, not counted."
                if set_aside
                else ""
            ),
        ),
    ]
    if common:
        blocks.append(("p", "Common to all rows:"))
        blocks.append(("ul", [f"`{name}`: {value}" for name, value in common.items()]))
    renamed = {n: names[n] for n in varying if n in names and names[n] != n}
    if renamed:
        blocks.append(
            (
                "p",
                "Columns: " + "; ".join(f"`{short}` is `{key}`" for key, short in renamed.items()),
            )
        )

    headers = ["row", *(names.get(n, n) for n in varying), "runs", "epochs"]
    headers += ["test acc", "test macro-F1", "over majority", "degenerate"]
    rows = [
        [
            f"#{i}",
            *(c.columns[n] for n in varying),
            str(len(c.runs)),
            format_budget(c.runs),
            format_mean_std(c.values("test/acc")),
            format_mean_std(c.values("test/f1_macro")),
            format_margin(c.runs),
            format_degenerate(c.runs),
        ]
        for i, c in enumerate(configurations, start=1)
    ]
    blocks += [
        ("h2", "Results"),
        (
            "p",
            "`epochs`: the epochs trained, of `trainer.max_epochs`, and how many runs early "
            "stopping ended. `over majority`: test macro-F1 minus that of predicting the "
            "training split's majority class (mean over the runs). `degenerate`: runs whose "
            "kept checkpoint predicts one class or is within noise of the majority class "
            "(emoclip/output/floor.py); such a row is no result.",
        ),
        ("table", headers, rows),
    ]

    classes = list(dict.fromkeys(k for c in configurations for k in c.runs[0].metrics["classes"]))
    rows = []
    for label, conf in zip(labels, configurations, strict=True):
        cells = []
        for name in classes:
            values = conf.values(f"test/f1_{name}")
            cells.append(f"{np.mean(values):.4f}" if values else "–")
        rows.append([label, *cells])
    headers = ["row", *map(escape, classes)]
    blocks += [("h2", "Per-class F1 (test, mean over runs)"), ("table", headers, rows)]

    ablated = [
        (label, conf)
        for label, conf in zip(labels, configurations, strict=True)
        if conf.values("test_text_only/acc") and conf.values("test_image_only/acc")
    ]
    if ablated:
        rows = [
            [
                label,
                *(
                    format_mean_std(c.values(f"{s}/acc"))
                    for s in ("test", "test_text_only", "test_image_only")
                ),
            ]
            for label, c in ablated
        ]
        blocks += [
            ("h2", "Per-modality ablation (test accuracy)"),
            (
                "p",
                "The paired test split scored with one modality removed: text only (no image) "
                "and image only (no text). Where either alone matches both, the fusion adds "
                "nothing over that modality.",
            ),
            ("table", ["row", "both", "text only", "image only"], rows),
        ]

    panels = [
        (label, rates, conf.runs[0].metrics["classes"])
        for label, conf in zip(labels, configurations, strict=True)
        if (rates := mean_confusion(conf)) is not None
    ]
    if panels:
        plot_confusion_grid(panels, out_dir / CONFUSION_PNG)
        blocks += [
            ("h2", "Test confusion matrices"),
            ("p", "Row-normalised (fraction of each true class), averaged over the row's runs."),
            ("img", CONFUSION_PNG, "normalised test confusion matrix of each row"),
        ]

    curves = {label: mean_curves(c) for label, c in zip(labels, configurations, strict=True)}
    curves = {label: c for label, c in curves.items() if c}
    if curves:
        metrics = [m for m in CURVE_METRICS if any(m in c for c in curves.values())]
        plot_overlaid_curves(curves, metrics, out_dir / CURVES_PNG)
        blocks += [
            ("h2", "Validation curves"),
            (
                "p",
                "Per training epoch, mean over the row's runs (over fewer runs where some "
                "stopped earlier); a star marks each row's best epoch.",
            ),
            ("img", CURVES_PNG, "validation accuracy and macro-F1 per epoch, one line per row"),
        ]
    else:
        blocks += [("h2", "Validation curves"), ("p", "No per-epoch history in these runs.")]

    rows = [
        [
            f"#{i}",
            _folder_link(run.path, out_dir),
            _shown(_get(run.config, "seed")),
            _shown(_get(run.config, "data.fold")),
            format_budget([run]),
            f"{run.metrics['test/acc']:.4f}",
            f"{run.metrics['test/f1_macro']:.4f}",
        ]
        for i, conf in enumerate(configurations, start=1)
        for run in conf.runs
    ]
    headers = ["row", "run folder", "seed", "fold", "epochs", "test acc", "test macro-F1"]
    blocks += [("h2", "Runs"), ("table", headers, rows)]
    if set_aside:
        blocks.append(("h2", "Not counted"))
        for kind, title in SET_ASIDE.items():
            folders = [f for f in set_aside if f.kind == kind]
            if folders:
                items = [f"{_folder_link(f.path, out_dir)}: {f.reason}" for f in folders]
                blocks += [("h3", f"{title}: {len(folders)}"), ("ul", items)]
    return blocks


def _folder_link(path: Path, out_dir: Path) -> str:
    relative = _relative(path, out_dir)
    return link(f"`{relative}`", f"{relative}/")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def default_out_dir(paths: Sequence[Path]) -> Path:
    """The one folder given, or the folder that holds all of them."""
    return Path(os.path.commonpath([p.resolve() for p in paths]))


def write_report(
    paths: Sequence[Path], out_dir: Path | None = None, trust: Trust = GUARD_ONLY
) -> list[Path]:
    """Write report.md, report.html and their figures; return the paths of the two pages."""
    loaded = [load_run(p, trust) for p in find_run_folders(paths)]
    runs = [r for r in loaded if isinstance(r, Run)]
    set_aside = [r for r in loaded if isinstance(r, SetAside)]
    if not runs:
        reasons = "; ".join(f"{r.path}: {r.reason}" for r in set_aside)
        raise DataError(
            f"no finished training runs to compare under {', '.join(map(str, paths))} ({reasons})"
        )
    out_dir = out_dir or default_out_dir(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = build_report(runs, out_dir, paths, set_aside)
    markdown, page = out_dir / "report.md", out_dir / "report.html"
    markdown.write_text(to_markdown(blocks))
    page.write_text(to_html(blocks))
    return [markdown, page]
