"""CLIP weights in open_clip's format as towers: a model name (its architecture, one of
open_clip's model_configs/*.json, or a config file) plus a local checkpoint file
(open_clip_pytorch_model.bin, a .safetensors, or a training checkpoint's `state_dict`).

open_clip itself is not imported (its package needs torchvision, which emoclip avoids):
the checkpoint is read as data and converted, name by name, into Hugging Face's CLIP layout,
which computes the same function for the architectures converted here: ViT image encoders
and the standard causal text transformer, with QuickGELU or GELU (e.g. ViT-B-32, ViT-B-16,
ViT-L-14, ViT-H-14 and their -quickgelu variants). Any other setting (ResNet or timm image
towers, Hugging Face text towers, layer scale, attentional pooling, ...) is refused, naming
it. The tokenizer is CLIP's BPE, built from open_clip's vocabulary file.

Where the model config and the vocabulary come from: `model_config` and
`tokenizer.bpe_vocab` when set, else the files an installed open_clip_torch ships
(`pip install --no-deps open_clip_torch` is enough: they are only read).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import CLIPConfig, PreTrainedModel
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from emoclip.contract import ImagePreprocessing, TokenizerSpec, normalization_stats
from emoclip.errors import BackboneLoadError, ConfigError
from emoclip.models.base import ImageTower, TextTower
from emoclip.models.clip_backbone import HALVES
from emoclip.models.hf_loading import quiet_transformers
from emoclip.models.task import TaskSpec
from emoclip.models.towers.clip import ClipImageTower, ClipTextTower

# open_clip's defaults of the settings this conversion supports only at their default.
BLOCK_DEFAULTS = {
    "ls_init_value": None,
    "final_ln_after_pool": False,
    "act_kwargs": None,
    "norm_kwargs": None,
    "block_type": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
}
VISION_DEFAULTS = {
    **BLOCK_DEFAULTS,
    "attentional_pool": False,
    "no_ln_pre": False,
    "pos_embed_type": "learnable",
    "pool_type": "tok",
    "timm_model_name": None,
}
TEXT_DEFAULTS = {
    **BLOCK_DEFAULTS,
    "hf_model_name": None,
    "hf_tokenizer_name": None,
    "tokenizer_mode": None,
    "tokenizer_kwargs": None,
    "embed_cls": False,
    "no_causal_mask": False,
    "pool_type": "argmax",
    "proj_bias": False,
    "proj_type": "linear",
}
# Settings that do not change the function (geometry is read separately).
VISION_FREE = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size"}
VISION_FREE |= {"output_tokens"}
VISION_FREE |= {"patch_dropout"}  # a training-time regulariser; fine-tuning runs without it
TEXT_FREE = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
TEXT_FREE |= {"output_tokens", "pad_id", "eos_id"}  # argmax pooling reads neither
MODEL_FREE = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "custom_text"}
MODEL_FREE |= {"init_logit_scale", "nonscalar_logit_scale"}  # contrastive training only


def open_clip_package_file(relative: str) -> Path | None:
    """A data file of an installed open_clip_torch, found without importing the package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def default_bpe_vocab() -> str:
    path = open_clip_package_file("bpe_simple_vocab_16e6.txt.gz")
    if path is None:
        raise ConfigError(
            "model.text_tower.tokenizer.bpe_vocab is not set and no open_clip_torch is "
            "installed to take CLIP's BPE vocabulary from: set it to the path of "
            "bpe_simple_vocab_16e6.txt.gz, or pip install --no-deps open_clip_torch"
        )
    return str(path)


def model_config(model_name: str, config_file: str | None, key: str) -> dict:
    """The architecture: `config_file` (an open_clip model config, or a hub repository's
    open_clip_config.json), else open_clip's own model_configs/<model_name>.json."""
    path = (
        Path(config_file)
        if config_file
        else open_clip_package_file(f"model_configs/{model_name}.json")
    )
    if path is None:
        raise ConfigError(
            f"{key}.model_name={model_name!r}: no open_clip model config found; set "
            f"{key}.model_config=/path/to/{model_name}.json, or pip install --no-deps "
            "open_clip_torch (emoclip reads its model_configs, never imports it)"
        )
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}.model_config: cannot read {path} as JSON ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{key}.model_config: {path} holds no JSON object")
    if "model_cfg" in data:  # a hub repository's open_clip_config.json
        return {**data["model_cfg"], "preprocess_cfg": data.get("preprocess_cfg") or {}}
    return data


def clip_config(cfg: dict, key: str) -> CLIPConfig:
    """Hugging Face's CLIPConfig for an open_clip model config, or a ConfigError naming the
    first setting this conversion does not support."""
    vision, text = dict(cfg.get("vision_cfg") or {}), dict(cfg.get("text_cfg") or {})
    _check(cfg, MODEL_FREE | {"preprocess_cfg"}, {}, key, "")
    _check(vision, VISION_FREE, VISION_DEFAULTS, key, "vision_cfg.")
    _check(text, TEXT_FREE, TEXT_DEFAULTS, key, "text_cfg.")
    if not isinstance(vision.get("layers", 12), int):
        raise ConfigError(
            f"{key}: a ResNet image tower (vision_cfg.layers is a list) is not converted"
        )
    image_size = vision.get("image_size", 224)
    if isinstance(image_size, list | tuple):
        if len(set(image_size)) != 1:
            raise ConfigError(f"{key}: non-square images (vision_cfg.image_size={image_size})")
        image_size = image_size[0]
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    width, text_width = vision.get("width", 768), text.get("width", 512)
    vocab_size = text.get("vocab_size", 49408)
    return CLIPConfig(
        projection_dim=cfg["embed_dim"],
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": text_width,
            "intermediate_size": int(text_width * text.get("mlp_ratio", 4.0)),
            "num_hidden_layers": text.get("layers", 12),
            "num_attention_heads": text.get("heads", 8),
            "max_position_embeddings": text.get("context_length", 77),
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
            # The BPE tokenizer's ids: start and end of text are its last two tokens; the
            # pooled output is the end-of-text token's.
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
        },
        vision_config={
            "hidden_size": width,
            "intermediate_size": int(width * vision.get("mlp_ratio", 4.0)),
            "num_hidden_layers": vision.get("layers", 12),
            "num_attention_heads": width // vision.get("head_width", 64),
            "image_size": image_size,
            "patch_size": vision.get("patch_size", 16),
            "hidden_act": act,
            "layer_norm_eps": 1e-5,
        },
    )


def _check(section: dict, free: set, defaults: dict, key: str, prefix: str) -> None:
    for name, value in section.items():
        if name in free:
            continue
        if name in defaults and (
            value == defaults[name] or (name, value) == ("block_type", "default")
        ):
            continue
        raise ConfigError(
            f"{key}: the open_clip setting {prefix}{name}={value!r} is not converted to Hugging "
            "Face CLIP (ViT image towers and the standard text transformer are); for a text "
            "encoder from Hugging Face use model/text_tower=hf"
        )


# open_clip's parameter names (left) and Hugging Face CLIP's (right), per layer {i}.
LAYER_NAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
TOP_NAMES = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


def hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip's CLIP state dict in Hugging Face CLIPModel's names: the fused attention input
    projection split into q, k, v; the projection matrices transposed into Linear weights.
    Names it does not know are kept as they are (so they show up as unexpected)."""
    out = {}
    for name, tensor in state.items():
        if name in TOP_NAMES:
            out[TOP_NAMES[name]] = tensor
        elif name == "text_projection":
            out["text_projection.weight"] = tensor.t().contiguous()
        elif name == "visual.proj":
            out["visual_projection.weight"] = tensor.t().contiguous()
        elif name in ("logit_scale", "logit_bias", "attn_mask"):
            continue  # contrastive training only / a buffer rebuilt from the config
        elif match := BLOCK.match(name):
            side = "vision_model" if match[1] else "text_model"
            prefix, rest = f"{side}.encoder.layers.{match[2]}.", match[3]
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")  # weight | bias
                for part, chunk in zip("qkv", tensor.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{part}_proj.{kind}"] = chunk.contiguous()
                continue
            module, _, leaf = rest.rpartition(".")
            out[prefix + f"{LAYER_NAMES.get(module, module)}.{leaf}"] = tensor
        else:
            out[name] = tensor
    return out


def read_checkpoint(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """An open_clip checkpoint's state dict, read as data: a .safetensors file, or a torch file
    loaded with weights_only (a bare state dict or a training checkpoint's `state_dict`), with
    DDP's `module.` and a custom text tower's `text.` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise BackboneLoadError(f"{key}.checkpoint={str(path)!r} is not a file")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged or foreign file: torch and pickle raise many types
        raise BackboneLoadError(
            f"{key}.checkpoint: cannot read {path} as a state dict ({err}). OpenAI's original "
            "TorchScript files are not read: use the Hugging Face copy (e.g. "
            "model/backbone=clip_vit_b32 with the clip towers) instead."
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneLoadError(f"{key}.checkpoint: {path} holds no state dict of tensors")
    if next(iter(state), "").startswith("module."):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k.removeprefix("text."): v for k, v in state.items()}


def load_open_clip_half(
    model_name: str, checkpoint: str, config_file: str | None, modality: str, key: str
) -> tuple[PreTrainedModel, dict]:
    """One encoder (with its projection) of an open_clip checkpoint, in Hugging Face's CLIP
    classes, and the open_clip model config. Every weight of that encoder must be in the
    checkpoint, and the checkpoint may hold no weight of it that the conversion does not know."""
    if not model_name or not checkpoint:
        raise ConfigError(f"{key} needs model_name (e.g. ViT-B-32) and checkpoint (a file)")
    cfg = model_config(model_name, config_file, key)
    config = clip_config(cfg, key)
    half = config.text_config if modality == "text" else config.vision_config
    half.projection_dim = config.projection_dim
    with quiet_transformers():
        model = HALVES[modality](half)
    own = "text_" if modality == "text" else "vision_model|visual_"
    weights = {
        k: v
        for k, v in hf_state_dict(read_checkpoint(checkpoint, key)).items()
        if re.match(f"({own})", k)
    }
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        raise BackboneLoadError(
            f"{key}: {checkpoint} does not fit the {model_name} architecture: {err}"
        ) from err
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise BackboneLoadError(
            f"{key}: {checkpoint} is not an open_clip {model_name} checkpoint that converts: "
            f"{len(missing)} weights missing (e.g. {missing[:3]}), unexpected "
            f"{list(result.unexpected_keys)[:3]}; the weights would be partly random"
        )
    return model.train(), cfg


class OpenClipTextTower(ClipTextTower):
    @classmethod
    def tokenizer_spec(cls, settings: Mapping) -> TokenizerSpec:
        """CLIP's BPE, from open_clip's vocabulary file (`tokenizer.bpe_vocab`; null: the one
        an installed open_clip_torch ships)."""
        tokenizer = settings.get("tokenizer") or {}
        bpe_vocab = tokenizer.get("bpe_vocab") or default_bpe_vocab()
        return TokenizerSpec.from_settings("clip_bpe", tokenizer, bpe_vocab=bpe_vocab)

    def __init__(
        self,
        task: TaskSpec,
        model_name: str,
        checkpoint: str,
        model_config: str | None = None,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        TextTower.__init__(self, finetune, trainable_layers, optim)
        key = "model.text_tower"
        encoder, _ = load_open_clip_half(model_name, checkpoint, model_config, "text", key)
        self._use(encoder, str(checkpoint))
        if task.vocab_size != encoder.config.vocab_size:
            raise ConfigError(
                f"{key}: the tokenizer has {task.vocab_size} tokens but {model_name} embeds "
                f"{encoder.config.vocab_size}; {key}.tokenizer.bpe_vocab must be the model's "
                "own BPE vocabulary (open_clip's bpe_simple_vocab_16e6.txt.gz)"
            )


class OpenClipImageTower(ClipImageTower):
    def __init__(
        self,
        task: TaskSpec,
        model_name: str,
        checkpoint: str,
        model_config: str | None = None,
        normalization: str | None = None,
        finetune: str | None = None,
        trainable_layers: int | None = None,
        optim: Mapping | None = None,  # the tower's training recipe (emoclip/models/recipes.py)
    ):
        ImageTower.__init__(self, finetune, trainable_layers, optim)
        key = "model.image_tower"
        encoder, cfg = load_open_clip_half(model_name, checkpoint, model_config, "image", key)
        self._use(encoder, str(checkpoint))
        self._preprocessing = open_clip_preprocessing(cfg, encoder, normalization)


def open_clip_preprocessing(cfg: dict, encoder, normalization: str | None) -> ImagePreprocessing:
    """The model's image size; its config's preprocess_cfg mean and std where it has them,
    else open_clip's default (OpenAI's statistics); `normalization` overrides them."""

    size = encoder.config.image_size
    if normalization:
        return ImagePreprocessing(size, *normalization_stats(normalization))
    preprocess = cfg.get("preprocess_cfg") or {}
    mean = tuple(preprocess.get("mean") or OPENAI_CLIP_MEAN)
    std = tuple(preprocess.get("std") or OPENAI_CLIP_STD)
    return ImagePreprocessing(size, mean, std)
