"""What every network and every tower must provide: the two contracts, written down once.

A **network** maps a batch dict to class logits (`forward`). The batch contract is
emoclip/contract.py's: `labels`, plus `input_ids` and `attention_mask` for text
and `pixel_values` for images; a study whose frozen towers are cached gets `text_features` /
`image_features` (a tower's pooled output, computed once) in their place. Everything the
training, evaluation, explanation and feature-cache code asks of a network is a member of
`Network` below, never found by probing for attributes.

A **tower** encodes one modality into one feature vector per example (and, when a fusion asks,
one per token or patch). It owns what its inputs must look like: a text tower declares its
tokenizer (`tokenizer_spec`, from its config; emoclip/data/tokenizer.py builds it), an image
tower states its `preprocessing` (image size, mean, std); the study hands both to the data module.
The batch keys, modalities and these two specs are emoclip/contract.py's.
Adding a tower is one module under emoclip/models/towers/ and one config under
conf/model/text_tower/ or conf/model/image_tower/.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import nn

from emoclip.contract import ImagePreprocessing, TokenizerSpec
from emoclip.errors import ConfigError

# How much of a tower trains (`model/finetune=`, or a tower's own `finetune`).
FINETUNE_MODES = ("full", "partial", "lora", "frozen")


@dataclass
class TowerOutput:
    pooled: torch.Tensor  # (n, width): one feature vector per example
    tokens: torch.Tensor | None = None  # (n, length, token_width), when asked for
    mask: torch.Tensor | None = None  # (n, length) bool, True for real tokens (text)


class Tower(nn.Module, ABC):
    """One modality's encoder.

    Subclasses set, in `__init__`: `width` (size of the pooled feature) and `token_width` (size
    of the per-token outputs, or None if the tower has none). `finetune` and `trainable_layers`
    are the tower's own settings (None: the network's, see emoclip/models/finetune.py).
    """

    modality: ClassVar[str]
    # Whether the encoder's weights come from pretraining (or stand in for such weights, like
    # the tiny random CLIP): `model.backbone_lr` applies to them.
    pretrained: ClassVar[bool] = True

    width: int
    token_width: int | None

    def __init__(
        self,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,
    ):
        super().__init__()
        self.finetune = finetune
        self.trainable_layers = trainable_layers
        # How the tower's weights train (learning rate, weight decay, warmup, decay: its
        # config's `optim`, emoclip/models/recipes.py); None: as the head.
        self.optim = dict(optim) if optim else None

    @abstractmethod
    def forward(self, batch: Mapping[str, torch.Tensor], tokens: bool = False) -> TowerOutput:
        """The pooled features of the batch's inputs of this modality (and per-token outputs
        with `tokens`)."""

    def layers(self) -> list[list[nn.Parameter]]:
        """The encoder's stacked layers in order, as parameter groups: `partial` trains the
        last k of them and every encoder parameter that comes after them (final norm, pooler).
        Default: the tower's shallowest `nn.ModuleList` (`encoder.layer` in BERT and ViT,
        `encoder.layers` in CLIP, `encoder.stages` in ConvNeXt, ...)."""
        return [list(layer.parameters()) for layer in layer_stack(self)]

    def lora_targets(self) -> list[str]:
        """Full names of the tower's modules that `lora` adapts by default (its attention's
        query and value projections, as the architecture names them)."""
        return attention_projections(self)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the encoder's activations in the backward pass (Hugging Face encoders)."""
        raise ConfigError(
            f"model.network.gradient_checkpointing=true: the {type(self).__name__} has no "
            "gradient checkpointing; set it to false"
        )

    def identity(self) -> dict:
        """Everything the tower's features depend on besides its inputs, for the feature cache's
        key: its class and settings (`feature_settings`) and a digest of its weights."""
        return {
            "tower": f"{type(self).__module__}.{type(self).__qualname__}",
            "settings": self.feature_settings(),
            "weights": weights_digest(self),
        }

    def feature_settings(self) -> dict:
        """Settings that change the features without changing the weights (pooling, the
        encoder's config, image preprocessing). Subclasses add theirs."""
        return {}


class TextTower(Tower):
    modality = "text"

    @classmethod
    @abstractmethod
    def tokenizer_spec(cls, settings: Mapping) -> TokenizerSpec:
        """The tokenizer this tower reads text with, declared from its config (`settings`:
        model.text_tower, whose `tokenizer` node holds the tokenizer's own settings). The study
        builds it before the tower: a trained vocabulary's size sizes the embedding."""

    @abstractmethod
    def token_embedding(self) -> nn.Embedding:
        """The layer mapping token ids to vectors: attribution (emoclip-explain) runs through it."""


class ImageTower(Tower):
    modality = "image"

    @property
    @abstractmethod
    def preprocessing(self) -> ImagePreprocessing:
        """Image size and normalisation the encoder expects; the study gives them to the data."""

    def feature_settings(self) -> dict:
        p = self.preprocessing
        return {"image_size": p.size, "mean": list(p.mean), "std": list(p.std)}


@dataclass(frozen=True)
class FeatureDims:
    pooled: Mapping[str, int]  # modality -> width of its pooled features, for each tower
    tokens: Mapping[str, int | None] = field(default_factory=dict)  # per-token output widths

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.pooled)


@dataclass
class Features:
    text: torch.Tensor | None  # (n, width) pooled text features; None: the network has no text
    image: torch.Tensor | None  # (n, width)
    text_present: torch.Tensor | None = None  # (n, 1) float, 1 where the example has its text
    image_present: torch.Tensor | None = None  # (n, 1)
    # Per-token outputs, only computed for fusions that ask (`needs_tokens`).
    text_tokens: torch.Tensor | None = None  # (n, length, text token width)
    text_mask: torch.Tensor | None = None  # (n, length) bool, True for real tokens
    image_tokens: torch.Tensor | None = None  # (n, patches, image token width)

    @classmethod
    def of(
        cls, n: int, pooled: Mapping[str, torch.Tensor | None], widths: Mapping | None = None
    ) -> Features:
        """Features of the given pooled tensors; a modality given as None is absent from every
        example: zeros of its width (from `widths`, else the other modality's), flag 0."""
        given = [t for t in pooled.values() if t is not None]
        dtype, device = given[0].dtype, given[0].device
        values, flags = {}, {}
        for m in ("text", "image"):
            if m not in pooled:
                values[m] = flags[m] = None
                continue
            tensor = pooled[m]
            present = tensor is not None
            if not present:
                width = (widths or {}).get(m) or given[0].shape[-1]
                tensor = torch.zeros(n, width, dtype=dtype, device=device)
            values[m] = tensor
            flags[m] = torch.full((n, 1), float(present), dtype=dtype, device=device)
        return cls(values["text"], values["image"], flags["text"], flags["image"])

    def without(self, text: torch.Tensor, image: torch.Tensor) -> Features:
        """These features with the text removed where `text` (n, 1 bool) is set, and the image
        where `image` is set."""

        def drop(value, mask):
            if value is None:
                return None
            return value.masked_fill(mask.view(-1, *[1] * (value.dim() - 1)), 0.0)

        return replace(
            self,
            text=drop(self.text, text),
            image=drop(self.image, image),
            text_present=drop(self.text_present, text),
            image_present=drop(self.image_present, image),
            text_tokens=drop(self.text_tokens, text),
            image_tokens=drop(self.image_tokens, image),
        )

    def pooled(self, modality: str) -> torch.Tensor:
        return self.text if modality == "text" else self.image

    def present(self, modality: str) -> torch.Tensor:
        return self.text_present if modality == "text" else self.image_present


class Fusion(nn.Module, ABC):
    """Combines the towers' features into logits. Built as
    `Fusion(dims=FeatureDims, num_classes=..., hidden_size=..., dropout=...)` (plus its own
    settings from its config), called on a `Features`. A modality an example lacks (an
    ablation, modality dropout) arrives as zeros with its `*_present` flag at 0."""

    # Whether it reads per-token outputs (`Features.text_tokens`, ...), which a cached frozen
    # tower cannot give.
    needs_tokens: ClassVar[bool] = False

    @abstractmethod
    def forward(self, features: Features) -> torch.Tensor:
        """(n, num_classes) logits."""


class Network(nn.Module, ABC):
    """A model emoclip trains and evaluates: batch dict in, logits (n, num_classes) out."""

    # Used as it comes, never trained (zero-shot CLIP): `emoclip-eval model=...`, no checkpoint.
    training_free: ClassVar[bool] = False
    # Fitted by `fit` in one pass on frozen features (the linear probe), not by gradient steps.
    fitted_in_one_pass: ClassVar[bool] = False
    # Encodes text of its own (zero-shot CLIP's class prompts): the study builds its tokenizer
    # (TaskSpec.tokenizer) even when the study's data has no text.
    needs_tokenizer: ClassVar[bool] = False

    @classmethod
    def tokenizer_spec(cls, network: Mapping) -> TokenizerSpec | None:
        """The tokenizer of the network's text, declared from its config (`network`:
        model.network); None: the network reads no text."""
        return None

    # The modalities the network reads (a subset of emoclip.contract.MODALITIES).
    modalities: tuple[str, ...]
    # Weight of the auxiliary per-modality losses (`forward(..., with_unimodal=True)`), 0: none.
    unimodal_loss_weight: float = 0.0

    @abstractmethod
    def forward(self, batch: Mapping[str, torch.Tensor], with_unimodal: bool = False):
        """Logits; with `with_unimodal` (networks whose unimodal_loss_weight > 0), also a dict
        of per-modality logits whose loss is added in training."""

    def cached_modalities(self) -> tuple[str, ...]:
        """The modalities whose features are computed once and cached (frozen towers), so the
        batches carry `text_features` / `image_features` instead of tokens or pixels."""
        return ()

    def encode(self, batch: Mapping[str, torch.Tensor], modality: str) -> torch.Tensor:
        """The features of one cached modality that the cache stores (n, width)."""
        raise NotImplementedError(f"{type(self).__name__} caches no features")

    def cache_identity(self, modality: str) -> dict:
        """What the cached features of `modality` depend on (for the cache's key)."""
        raise NotImplementedError(f"{type(self).__name__} caches no features")

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The pretrained weights that train (they take `model.backbone_lr` when it is set)."""
        return []

    def tower_parameters(self) -> dict[str, tuple[list[nn.Parameter], Mapping | None]]:
        """The trainable weights of each tower that brings its own training recipe, by name
        (`text_tower`, `image_tower`), with that recipe; the rest train as the head."""
        return {}

    def token_embedding(self) -> nn.Embedding | None:
        """The text input's embedding layer, for attribution; None for a network without text."""
        return None

    def image_preprocessing(self) -> ImagePreprocessing | None:
        """The image size and normalisation the network's image encoder expects, which the study
        hands to the data module; None: the data config's (data.image_size, normalization)."""
        return None

    def fit(self, datamodule, device: torch.device) -> dict:
        """Networks `fitted_in_one_pass` fit here and return what they chose (for metrics.json)."""
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient steps")


def weights_digest(module: nn.Module) -> str:
    """A hash of every tensor in the module's state dict, names, dtypes and shapes included."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# The attention projections LoRA adapts by default, as each architecture names them (the first
# pair the encoder has wins): CLIP, BERT/RoBERTa/ViT/DINOv2, DistilBERT, DeBERTa, MPNet; for
# attention-free encoders (ConvNeXt), the pointwise layers of each block.
ATTENTION_NAMES = (
    ("q_proj", "v_proj"),
    ("query", "value"),
    ("q_lin", "v_lin"),
    ("query_proj", "value_proj"),
    ("q", "v"),
    ("pwconv1", "pwconv2"),
)


def layer_stack(encoder: nn.Module) -> nn.ModuleList:
    """A module's stack of layers: its shallowest nn.ModuleList (the longest, on a tie)."""
    lists = [
        (name.count("."), -len(module), name, module)
        for name, module in encoder.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0
    ]
    if not lists:
        raise ConfigError(
            f"the {type(encoder).__name__} has no stack of layers (nn.ModuleList) for "
            "finetune=partial; use full, lora or frozen"
        )
    return min(lists, key=lambda entry: entry[:3])[3]


def attention_projections(encoder: nn.Module) -> list[str]:
    """Full names of a module's linear layers LoRA adapts by default (see ATTENTION_NAMES)."""
    linear = {
        name: name.rsplit(".", 1)[-1]
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear)
    }
    present = set(linear.values())
    for pair in ATTENTION_NAMES:
        if set(pair) <= present:
            return [name for name, last in linear.items() if last in pair]
    raise ConfigError(
        f"no default LoRA targets in the {type(encoder).__name__} (none of "
        f"{[list(p) for p in ATTENTION_NAMES]}); name its linear layers in lora.target_modules"
    )
