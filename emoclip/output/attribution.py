"""Integrated Gradients (captum) for any emoclip network, toward the class it predicts.

- image: IG on the normalised pixels, from a black image; per pixel, summed over channels.
- text: IG on the token embeddings (LayerIntegratedGradients on the embedding layer, the
  network's `token_embedding()`), from padding tokens in place of the words (special tokens
  such as begin/end of text kept); per token, summed over the embedding.

For a two-modality model each modality is attributed with the other held at its real value.
The convergence delta (how far the attributions' sum is from the change of the target logit)
comes with each, as IG's own check of its integral.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn

from emoclip.contract import ATTENTION_MASK, INPUT_IDS, INPUT_KEYS, PIXEL_VALUES


@dataclass
class Attribution:
    probabilities: np.ndarray  # (num_classes,)
    predicted: int
    image: np.ndarray | None = None  # (H, W) signed attribution per pixel
    image_delta: float | None = None
    tokens: list[str] | None = None
    token_scores: np.ndarray | None = None  # (num_tokens,) signed attribution per token
    text_delta: float | None = None


class BatchFunction:
    """The network as a function of tensors (captum's calling convention), batch keys in order."""

    def __init__(self, network: nn.Module, keys: Sequence[str]):
        self.network, self.keys = network, tuple(keys)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.keys, tensors, strict=True))
        n, device = tensors[0].shape[0], tensors[0].device
        batch["labels"] = torch.zeros(n, dtype=torch.long, device=device)
        return self.network(batch)


def attribute(
    network: nn.Module,
    batch: dict,
    image_baseline: torch.Tensor | None = None,
    tokenizer=None,
    steps: int = 32,
) -> Attribution:
    """Attributions of one example (a batch of one) toward the network's predicted class."""
    network.eval()
    with torch.no_grad():
        probabilities = network(batch).float().softmax(-1)[0]
    target = int(probabilities.argmax())
    result = Attribution(probabilities=probabilities.cpu().numpy(), predicted=target)
    text_inputs = tuple(batch[k] for k in INPUT_KEYS["text"] if k in batch)
    # cuDNN's LSTM has no backward in eval mode; the attribution runs without cuDNN.
    with torch.backends.cudnn.flags(enabled=False):
        if PIXEL_VALUES in batch:
            forward = BatchFunction(
                network, (PIXEL_VALUES, *INPUT_KEYS["text"][: len(text_inputs)])
            )
            pixels = batch[PIXEL_VALUES]
            baseline = image_baseline if image_baseline is not None else torch.zeros_like(pixels)
            attributions, delta = IntegratedGradients(forward).attribute(
                pixels,
                baselines=baseline.expand_as(pixels),
                target=target,
                additional_forward_args=text_inputs or None,
                n_steps=steps,
                internal_batch_size=steps,
                return_convergence_delta=True,
            )
            result.image = attributions[0].sum(0).detach().cpu().numpy()
            result.image_delta = float(delta.abs().max())
        if text_inputs:
            image_inputs = (batch[PIXEL_VALUES],) if PIXEL_VALUES in batch else ()
            forward = BatchFunction(
                network, (*INPUT_KEYS["text"], *([PIXEL_VALUES] * len(image_inputs)))
            )
            input_ids = batch[INPUT_IDS]
            special = torch.tensor(tokenizer.all_special_ids, device=input_ids.device)
            reference = torch.where(
                torch.isin(input_ids, special), input_ids, tokenizer.pad_token_id
            )
            attributions, delta = LayerIntegratedGradients(
                forward, network.token_embedding()
            ).attribute(
                input_ids,
                baselines=reference,
                target=target,
                additional_forward_args=(batch[ATTENTION_MASK], *image_inputs),
                n_steps=steps,
                internal_batch_size=steps,
                return_convergence_delta=True,
            )
            length = int(batch[ATTENTION_MASK][0].sum())
            ids = input_ids[0, :length].tolist()
            result.tokens = [tokenizer.decode([i]) for i in ids]
            result.token_scores = attributions[0, :length].sum(-1).detach().cpu().numpy()
            result.text_delta = float(delta.abs().max())
    return result
