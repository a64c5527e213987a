"""The page of `emoclip-explain`: index.html, each example's section (its true and predicted
label, the class probabilities, the image map, the text with each token coloured by its
attribution)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig

if TYPE_CHECKING:
    from emoclip.output.attribution import Attribution


def token_spans(tokens: list[str], scores: np.ndarray) -> str:
    """Tokens coloured by attribution: green toward the predicted class, red against it."""
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
