"""The network of every trained study: a text tower and/or an image tower, a fusion, a head.

- Towers (`model/text_tower=`, `model/image_tower=`; emoclip/models/towers/) encode one modality
  each: CLIP's halves (the report's model, the default), any Hugging Face encoder, the LSTM or
  the CNN. The baselines are this network with one tower.
- The fusion (`model/fusion=`) combines the pooled features into logits; with `embed_dim` each
  tower's features are first projected to that common width.
- How much of each tower trains is `finetune` (`model/finetune=`, or a tower's own
  `finetune` for a mixed study): `full`, `partial`, `lora` or `frozen`. A frozen tower's
  features are computed once per example and cached (emoclip/study/feature_cache.py) unless
  `cache_frozen_towers` is false.

A modality the batch lacks (an ablation, modality dropout) enters as zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from hydra.utils import get_class
from torch import nn

from emoclip.contract import FEATURE_KEYS, INPUT_KEYS, TokenizerSpec
from emoclip.errors import ConfigError
from emoclip.models.base import (
    FeatureDims,
    Features,
    Fusion,
    ImagePreprocessing,
    Network,
    TextTower,
    Tower,
)
from emoclip.models.finetune import apply_finetune, check_mode
from emoclip.models.fusion import ConcatFusion
from emoclip.models.task import TaskSpec


class TowerFusion(Network):
    @classmethod
    def tokenizer_spec(cls, network: Mapping) -> TokenizerSpec | None:
        """The text tower's (model.text_tower); None without one."""
        tower = network.get("text_tower")
        if tower is None:
            return None
        tower_class = get_class(tower["_target_"])
        if not (isinstance(tower_class, type) and issubclass(tower_class, TextTower)):
            raise ConfigError(
                f"model.text_tower._target_={tower['_target_']} is not an emoclip text tower "
                "(a subclass of emoclip.models.base.TextTower)"
            )
        return tower_class.tokenizer_spec(tower)

    def __init__(
        self,
        task: TaskSpec,
        text_tower: Callable[..., Tower] | None = None,
        image_tower: Callable[..., Tower] | None = None,
        fusion: Callable[..., Fusion] = ConcatFusion,
        hidden_size: int = 512,
        dropout: float = 0.1,
        embed_dim: int | None = None,
        finetune: str = "full",
        trainable_layers: int = 2,
        lora: Mapping | None = None,
        gradient_checkpointing: bool = False,
        cache_frozen_towers: bool = True,
        modality_dropout: float = 0.0,
        unimodal_loss_weight: float = 0.0,
    ):
        super().__init__()
        check_mode(finetune, "model.network.finetune")
        if text_tower is None and image_tower is None:
            raise ConfigError("the model has no tower: set model/text_tower= or model/image_tower=")
        if not 0 <= modality_dropout <= 0.5:
            raise ConfigError(f"model.network.modality_dropout={modality_dropout}; expected 0..0.5")
        if unimodal_loss_weight < 0:
            raise ConfigError(
                f"model.network.unimodal_loss_weight={unimodal_loss_weight}; expected >= 0"
            )
        built = {"text": text_tower, "image": image_tower}
        self.towers = nn.ModuleDict(
            {m: build(task=task) for m, build in built.items() if build is not None}
        )
        self.modalities = tuple(self.towers)
        if modality_dropout > 0 and len(self.modalities) < 2:
            raise ConfigError(
                "model.network.modality_dropout needs two towers: this model has only "
                f"{list(self.modalities)}"
            )
        self.modes = {}
        for m, tower in self.towers.items():
            where = f"model.{m}_tower"
            self.modes[m] = check_mode(tower.finetune or finetune, f"{where}.finetune")
            layers = trainable_layers if tower.trainable_layers is None else tower.trainable_layers
            apply_finetune(tower, self.modes[m], layers, lora, where)
            if gradient_checkpointing and self.modes[m] != "frozen":
                tower.enable_gradient_checkpointing()
        self.projections = nn.ModuleDict(
            {m: nn.Linear(t.width, embed_dim) for m, t in self.towers.items()} if embed_dim else {}
        )
        self.dims = FeatureDims(
            pooled={m: embed_dim or t.width for m, t in self.towers.items()},
            tokens={m: t.token_width for m, t in self.towers.items()},
        )
        self.fusion = fusion(
            dims=self.dims, num_classes=task.num_classes, hidden_size=hidden_size, dropout=dropout
        )
        if not isinstance(self.fusion, Fusion):
            raise ConfigError(
                f"model.fusion builds a {type(self.fusion).__name__}, which is not an "
                "emoclip.models.base.Fusion"
            )
        self.needs_tokens = self.fusion.needs_tokens
        self.cached = tuple(
            m for m in self.modalities if cache_frozen_towers and self.modes[m] == "frozen"
        )
        if self.cached and self.needs_tokens:
            raise ConfigError(
                f"the frozen {' and '.join(self.cached)} tower's features are cached, one vector "
                f"per example, but the fusion {type(self.fusion).__name__} needs every token's: "
                "use model/fusion=concat|late|gated, or run the frozen towers on every batch: "
                "model.network.cache_frozen_towers=false"
            )
        self.modality_dropout = modality_dropout
        # Auxiliary linear classifiers on each modality's features alone: their loss, added with
        # this weight while training, makes each tower learn its modality even when the other
        # one is easier (left alone, a fused model can lean on the text and never train its
        # images).
        self.unimodal_loss_weight = unimodal_loss_weight
        self.unimodal_heads = nn.ModuleDict(
            {m: nn.Linear(w, task.num_classes) for m, w in self.dims.pooled.items()}
            if unimodal_loss_weight > 0
            else {}
        )

    # ------------------------------------------------------------ the network contract

    def cached_modalities(self) -> tuple[str, ...]:
        return self.cached

    def encode(self, batch: Mapping[str, torch.Tensor], modality: str) -> torch.Tensor:
        return self.towers[modality](batch).pooled

    def cache_identity(self, modality: str) -> dict:
        return self.towers[modality].identity()

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [
            p
            for tower in self.towers.values()
            if tower.pretrained
            for p in tower.parameters()
            if p.requires_grad
        ]

    def tower_parameters(self) -> dict[str, tuple[list[nn.Parameter], Mapping | None]]:
        groups = {}
        for m, tower in self.towers.items():
            params = [p for p in tower.parameters() if p.requires_grad]
            if params:
                groups[f"{m}_tower"] = (params, tower.optim)
        return groups

    def token_embedding(self) -> nn.Embedding | None:
        return self.towers["text"].token_embedding() if "text" in self.towers else None

    def image_preprocessing(self) -> ImagePreprocessing | None:
        return self.towers["image"].preprocessing if "image" in self.towers else None

    def train(self, mode: bool = True) -> TowerFusion:
        # A frozen tower stays in eval mode: no dropout noise, and batch norm's running
        # statistics stay those it was loaded (or cached) with.
        super().train(mode)
        for m, tower in self.towers.items():
            if self.modes[m] == "frozen":
                tower.eval()
        return self

    def forward(self, batch: Mapping[str, torch.Tensor], with_unimodal: bool = False):
        """Logits; with `with_unimodal`, also the auxiliary heads' logits per modality."""
        features = self.features(batch)
        fused = self._drop_modalities(features) if self.training else features
        logits = self.fusion(fused)
        if not with_unimodal:
            return logits
        unimodal = {m: head(features.pooled(m)) for m, head in self.unimodal_heads.items()}
        return logits, unimodal

    # ------------------------------------------------------------ the parts

    def features(self, batch: Mapping[str, torch.Tensor]) -> Features:
        """Each tower's pooled features (projected to embed_dim if set), from the batch's
        cached features where it has them; zeros for a modality the batch lacks."""
        n = batch["labels"].shape[0]
        pooled, tokens = {}, {}
        for m, tower in self.towers.items():
            if FEATURE_KEYS[m] in batch:
                pooled[m] = batch[FEATURE_KEYS[m]]
            elif INPUT_KEYS[m][0] in batch:
                out = tower(batch, tokens=self.needs_tokens)
                pooled[m], tokens[m] = out.pooled, out
            else:
                pooled[m] = None
            if pooled[m] is not None and m in self.projections:
                pooled[m] = self.projections[m](pooled[m])
        features = Features.of(n, pooled, widths=self.dims.pooled)
        if self.needs_tokens:
            self._add_tokens(features, tokens, n)
        return features

    def _add_tokens(self, features: Features, outputs: dict, n: int) -> None:
        reference = features.text if features.text is not None else features.image
        device, dtype = reference.device, reference.dtype

        def absent(m):
            return torch.zeros(n, 1, self.dims.tokens[m], device=device, dtype=dtype)

        text, image = outputs.get("text"), outputs.get("image")
        features.text_tokens = text.tokens if text is not None else absent("text")
        features.text_mask = (
            text.mask if text is not None else torch.ones(n, 1, dtype=torch.bool, device=device)
        )
        features.image_tokens = image.tokens if image is not None else absent("image")

    def _drop_modalities(self, features: Features) -> Features:
        """Remove the text of a fraction p of the examples and the image of another p, as a
        missing modality is removed: otherwise the fusion can lean on whichever modality is
        easier to learn and never use the other."""
        if self.modality_dropout == 0:
            return features
        draw = torch.rand(features.text.shape[0], 1, device=features.text.device)
        p = self.modality_dropout
        return features.without(text=draw < p, image=(draw >= p) & (draw < 2 * p))
