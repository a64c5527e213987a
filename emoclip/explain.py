"""Explain a checkpoint's predictions on test examples: `emoclip-explain ckpt_path=PATH n=16`.

Writes, into a new run folder, one PNG per example (the face and its Integrated Gradients map)
and index.html: each example with its true and predicted label, the class probabilities, the
image map and the text with each token coloured by its attribution (see emoclip.output.attribution).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from emoclip.cli.entry import hydra_entry, run_entry
from emoclip.errors import ConfigError

if TYPE_CHECKING:  # the entry imports only what Hydra needs; the work imports the rest
    from emoclip.output.attribution import Attribution


def explain(cfg: DictConfig) -> list[tuple[int, Attribution]]:
    """Attribute the first n examples of the split, write the PNGs and index.html (last)."""
    from emoclip.output.explanation_page import index_html
    from emoclip.runs.run_folder import RunFolder
    from emoclip.study.restore import here, restore_study
    from emoclip.study.trust import Trust
    from emoclip.system.atomic import write_atomically

    run_dir = Path(cfg.paths.output_dir)
    folder = RunFolder(run_dir, entry="explain")
    with folder.session():
        if not cfg.get("ckpt_path"):
            raise ConfigError("ckpt_path is not set: the checkpoint to explain")
        if cfg.n < 1:
            raise ConfigError(f"n={cfg.n}: expected at least one example")
        trust = Trust.from_entry(cfg)
        folder.claim()
        overrides = [*here(cfg), *(cfg.get("study_overrides") or [])]
        study, _ = restore_study(cfg.ckpt_path, overrides, trust, cfg.paths)
        datamodule, network = study.datamodule, study.module.network.to(cfg.device).eval()
        datamodule.setup("test")
        if cfg.split not in datamodule.encoded:
            raise ConfigError(f"split={cfg.split!r}; expected one of {sorted(datamodule.encoded)}")
        folder.begin(cfg)
        explained, sections = explain_examples(cfg, datamodule, network, run_dir)
        page = run_dir / "index.html"
        write_atomically(page, index_html(cfg, sections))
    print(f"explanations of {len(explained)} {cfg.split} examples: {page.resolve()}", flush=True)
    return explained


def explain_examples(cfg: DictConfig, datamodule, network, run_dir: Path) -> tuple[list, list]:
    """Each example's attribution, its map under examples/, and its section of the page."""
    import torch

    from emoclip.data.images import normalize
    from emoclip.output.attribution import attribute
    from emoclip.output.explanation_page import example_html
    from emoclip.runs.plots import plot_attribution_map

    dataset, records = datamodule.encoded[cfg.split], datamodule.records[cfg.split]
    explained, sections = [], []
    for i in range(min(cfg.n, len(dataset))):
        batch = {k: v.to(cfg.device) for k, v in datamodule.batch_of(cfg.split, [i]).items()}
        baseline = None
        if dataset.pixels is not None:
            black = torch.zeros_like(dataset.pixels[i : i + 1])
            baseline = normalize(black, datamodule.mean, datamodule.std).to(cfg.device)
        result = attribute(network, batch, baseline, datamodule.tokenizer, steps=cfg.steps)
        picture = None
        if result.image is not None:
            picture = f"examples/{i:03d}.png"
            plot_attribution_map(dataset.pixels[i], result.image, run_dir / picture)
        true = datamodule.classes[int(dataset.labels[i])]
        sections.append(example_html(i, records[i].id, true, datamodule.classes, result, picture))
        explained.append((i, result))
    return explained, sections


@hydra_entry("explain")
def main(cfg: DictConfig) -> None:
    run_entry(cfg, lambda: explain(cfg), reads_checkpoint=True)


if __name__ == "__main__":
    main()
