"""CLIP used as it comes, without training: each class is described by prompts ("a photo of a
happy face"), and an example goes to the class whose prompts its embedding is most similar to.

As in CLIP's paper (and open_clip's zero-shot classifier), a class's embedding is the mean of
the L2-normalised text embeddings of its prompts, one per template, normalised again. Images
are compared with the image prompts' class embeddings and texts with the text prompts'; the
logits are CLIP's own, logit_scale * cosine similarity. For a pair, the two modalities'
logits are summed (a product of the two softmax distributions, renormalised); an example that
lacks a modality is scored by the one it has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emoclip.contract import ATTENTION_MASK, INPUT_IDS, TokenizerSpec
from emoclip.errors import ConfigError
from emoclip.models.base import Network
from emoclip.models.clip_backbone import backbone_tokenizer, clip_features, load_clip
from emoclip.models.task import TaskSpec


class ClipZeroShot(Network):
    modalities = ("text", "image")
    training_free = True  # evaluated with emoclip-eval model=clip_zeroshot; never trained
    needs_tokenizer = True  # its class prompts

    @classmethod
    def tokenizer_spec(cls, network: Mapping) -> TokenizerSpec:
        return backbone_tokenizer(network["backbone"])

    def __init__(
        self,
        task: TaskSpec,
        backbone: Mapping,
        image_templates: Sequence[str],
        text_templates: Sequence[str],
        class_words: Mapping[str, str] | None = None,
    ):
        super().__init__()
        name_or_path = backbone.get("name_or_path")
        if not name_or_path:
            raise ConfigError(
                "model=clip_zeroshot needs pretrained CLIP weights: set "
                "model.backbone.name_or_path (a hub id or a folder saved with save_pretrained), "
                "e.g. model/backbone=clip_vit_b32. A zero-shot classifier on randomly "
                "initialised weights would measure nothing."
            )
        for key, templates in (
            ("image_templates", image_templates),
            ("text_templates", text_templates),
        ):
            if not templates or any(t.count("{}") != 1 for t in templates):
                raise ConfigError(
                    f"model.network.{key}={list(templates)}: expected a non-empty list of "
                    "templates with one {} each, where the class word goes"
                )
        self.clip = load_clip(name_or_path, None, backbone["image_size"], task).eval()
        self.clip.requires_grad_(False)
        tokenizer = task.tokenizer
        if tokenizer is None:
            raise ConfigError("ClipZeroShot encodes its class prompts with the study's tokenizer")
        words = [(class_words or {}).get(c, c) for c in task.classes]
        self.register_buffer(
            "image_classes", self.class_embeddings(tokenizer, image_templates, words), False
        )
        self.register_buffer(
            "text_classes", self.class_embeddings(tokenizer, text_templates, words), False
        )

    @torch.no_grad()
    def class_embeddings(
        self, tokenizer, templates: Sequence[str], words: Sequence[str]
    ) -> torch.Tensor:
        """(num_classes, embed): per class, the normalised mean of its prompts' normalised
        text embeddings."""
        prompts = [template.format(word) for word in words for template in templates]
        tokens = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
        batch = {
            "labels": torch.zeros(len(prompts), dtype=torch.long),
            INPUT_IDS: tokens["input_ids"],
            ATTENTION_MASK: tokens["attention_mask"],
        }
        embedded = F.normalize(clip_features(self.clip, batch).text, dim=-1)
        per_class = embedded.view(len(words), len(templates), -1).mean(1)
        return F.normalize(per_class, dim=-1)

    def train(self, mode: bool = True) -> ClipZeroShot:
        # CLIP stays in eval mode: there is nothing to train, and dropout would add noise.
        super().train(mode)
        self.clip.eval()
        return self

    def token_embedding(self) -> nn.Embedding:
        return self.clip.text_model.embeddings.token_embedding

    def forward(self, batch: dict, with_unimodal: bool = False) -> torch.Tensor:
        features = clip_features(self.clip, batch)
        scale = self.clip.logit_scale.exp()
        # F.normalize maps an absent modality's zeros to zeros, and present=0 removes it.
        text = scale * F.normalize(features.text, dim=-1) @ self.text_classes.T
        image = scale * F.normalize(features.image, dim=-1) @ self.image_classes.T
        return features.text_present * text + features.image_present * image
