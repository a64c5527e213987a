"""Explain a checkpoint's predictions on test examples: `emoclip-explain ckpt_path=PATH n=16`.

Writes, into a new run folder, one PNG per example (the face and its Integrated Gradients map)
and index.html: each example with its true and predicted label, the class probabilities, the
image map and the text with each token coloured by its attribution (see emoclip.output.attribution).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from emoclip.cli.entry import hydra_entry, run_entry
from emoclip.errors import ConfigError

if TYPE_CHECKING:  # the entry imports only what Hydra needs; the work imports the rest
    import numpy as np

    from emoclip.output.attribution import Attribution


def explain(cfg: DictConfig) -> list[tuple[int, Attribution]]:
    """Attribute the first n examples of the split, write the PNGs and index.html (last)."""
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


def token_spans(tokens: list[str], scores: np.ndarray) -> str:
    """Tokens coloured by attribution: green toward the predicted class, red against it."""
    import numpy as np

    top = float(np.abs(scores).max()) or 1.0
    spans = []
    for token, score in zip(tokens, scores, strict=True):
        alpha = abs(float(score)) / top
        rgb = "0,150,0" if score >= 0 else "200,0,0"
        spans.append(
            f'<span class="tok" style="background:rgba({rgb},{alpha:.2f})" '
            f'title="{score:+.4f}">{html.escape(token)}</span>'
        )
    return " ".join(spans)


def example_html(
    index: int,
    record_id: str,
    true: str,
    classes: tuple[str, ...],
    result: Attribution,
    picture: str | None,
) -> str:
    import numpy as np

    # Class names come from the checkpoint, a file: escaped like every value from one.
    predicted = classes[result.predicted]
    verdict = "right" if predicted == true else "wrong"
    probabilities = ", ".join(
        f"{html.escape(classes[k])} {result.probabilities[k]:.2f}"
        for k in np.argsort(-result.probabilities)[:3]
    )
    parts = [
        f'<section class="{verdict}"><h2>#{index} <code>{html.escape(record_id)}</code></h2>',
        f"<p>true: <b>{html.escape(true)}</b> &middot; predicted: <b>{html.escape(predicted)}</b> "
        f"({verdict}) "
        f"&middot; {probabilities}</p>",
    ]
    if picture is not None:
        parts.append(f'<img src="{picture}" alt="attribution map of example {index}">')
        parts.append(f'<p class="delta">image IG delta {result.image_delta:.2e}</p>')
    if result.tokens is not None:
        parts.append(f'<p class="text">{token_spans(result.tokens, result.token_scores)}</p>')
        parts.append(f'<p class="delta">text IG delta {result.text_delta:.2e}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def index_html(cfg: DictConfig, sections: list[str]) -> str:
    title = f"emoclip explanations: {html.escape(str(cfg.ckpt_path))}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
section {{ border-left: 6px solid #888; padding: 0.2em 1em; margin: 1.5em 0; }}
section.right {{ border-color: #2a2; }} section.wrong {{ border-color: #c22; }}
.tok {{ padding: 0 2px; border-radius: 3px; }} .delta {{ color: #777; font-size: 80%; }}
</style></head><body>
<h1>{title}</h1>
<p>Integrated Gradients ({cfg.steps} steps) toward the predicted class, on the first {len(sections)}
{cfg.split} examples. Image: absolute attribution per pixel, blended over the face. Text: each
token's attribution, <span style="background:rgba(0,150,0,0.6)">green</span> for the
predicted class and <span style="background:rgba(200,0,0,0.6)">red</span> against it (hover
for the value). The delta is IG's completeness error: small against the logits means the
integral converged.</p>
{chr(10).join(sections)}
</body></html>
"""


@hydra_entry("explain")
def main(cfg: DictConfig) -> None:
    run_entry(cfg, lambda: explain(cfg), reads_checkpoint=True)


if __name__ == "__main__":
    main()
