"""One way to get a CLIP: `from_pretrained` on a hub id or a local folder, or a config for a
small randomly initialised one (the offline demo). Pretrained weights that cannot be loaded
stop the run; they are never replaced by random ones.

`load_clip` gives the whole CLIPModel (zero-shot, linear probe); `load_clip_half` one encoder
with its projection, for the `clip` towers (emoclip/models/towers/clip.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextModelWithProjection,
    CLIPVisionModelWithProjection,
    PreTrainedModel,
)

from emoclip.contract import ATTENTION_MASK, INPUT_IDS, PIXEL_VALUES, TokenizerSpec
from emoclip.errors import BackboneLoadError, ConfigError
from emoclip.models.base import Features
from emoclip.models.hf_loading import quiet_transformers
from emoclip.models.task import TaskSpec
from emoclip.system.offline import check_model_folder


def backbone_tokenizer(backbone: Mapping) -> TokenizerSpec:
    """A CLIP backbone's tokenizer (model.backbone): the one saved with its weights
    (`name_or_path`); a CLIP defined by config with random weights (clip_tiny) has none, so a
    word-level one is trained on the study's texts."""
    settings = backbone.get("tokenizer") or {}
    name_or_path = settings.get("name_or_path") or backbone.get("name_or_path")
    if name_or_path:
        return TokenizerSpec.from_settings("pretrained", settings, name_or_path=name_or_path)
    return TokenizerSpec.from_settings("trained", settings)


HALVES = {"text": CLIPTextModelWithProjection, "image": CLIPVisionModelWithProjection}


def load_clip(
    name_or_path: str | None, config: Mapping | None, image_size: int, task: TaskSpec
) -> CLIPModel:
    clip_config = _clip_config(name_or_path, config, image_size, task)
    if name_or_path:
        model = _from_pretrained(CLIPModel, name_or_path, clip_config)
    else:
        model = CLIPModel(clip_config)
    return model


def load_clip_half(backbone: Mapping, modality: str, task: TaskSpec) -> PreTrainedModel:
    """CLIP's text (or vision) encoder with its projection, from model.backbone's weights or
    geometry: CLIPTextModelWithProjection or CLIPVisionModelWithProjection."""
    name_or_path = backbone.get("name_or_path")
    clip_config = _clip_config(name_or_path, backbone.get("config"), backbone["image_size"], task)
    half = clip_config.text_config if modality == "text" else clip_config.vision_config
    half.projection_dim = clip_config.projection_dim
    if name_or_path:
        return _from_pretrained(HALVES[modality], name_or_path, half)
    return HALVES[modality](half)


def _clip_config(
    name_or_path: str | None, config: Mapping | None, image_size: int, task: TaskSpec
) -> CLIPConfig:
    if name_or_path:
        check_model_folder(name_or_path, "model.backbone.name_or_path")
        try:
            clip_config = CLIPConfig.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise _unloadable(name_or_path, err) from err
    elif config is not None:
        clip_config = tiny_clip_config(config, image_size, task)
    else:
        raise ConfigError(
            "model.backbone needs either name_or_path (a hub id or a local folder) or config "
            "(the geometry of a randomly initialised CLIP)"
        )
    actual = clip_config.vision_config.image_size
    if actual != image_size:
        raise ConfigError(
            f"model.backbone.image_size={image_size} but {name_or_path or 'the config'} expects "
            f"{actual} px images; set model.backbone.image_size={actual}"
        )
    return clip_config


def tiny_clip_config(config: Mapping, image_size: int, task: TaskSpec) -> CLIPConfig:
    """A CLIPConfig whose text side matches the study's tokenizer."""
    text = dict(config["text"])
    text.update(
        vocab_size=task.vocab_size,
        max_position_embeddings=task.max_text_length,
        pad_token_id=task.pad_token_id,
        bos_token_id=task.bos_token_id,
        eos_token_id=task.eos_token_id,
    )
    vision = dict(config["vision"], image_size=image_size)
    return CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=config["projection_dim"]
    )


def _from_pretrained(cls: type[PreTrainedModel], name_or_path: str, config) -> PreTrainedModel:
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(name_or_path, config=config, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise _unloadable(name_or_path, err) from err
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise BackboneLoadError(
            f"{name_or_path!r} lacks {len(missing)} CLIP weights (e.g. {missing[:3]}); "
            "they would be randomly initialised. Is it a full CLIPModel checkpoint? (For another "
            "kind of encoder use model/text_tower=hf or model/image_tower=hf.)"
        )
    return model.train()  # from_pretrained returns eval mode; Lightning keeps modes as found


def _unloadable(name_or_path: str, err: Exception) -> BackboneLoadError:
    return BackboneLoadError(
        f"could not load pretrained CLIP weights from {name_or_path!r}: {err}\n"
        "emoclip never falls back to random weights. To supply the weights: download "
        f"{name_or_path!r} into the Hugging Face cache on a machine with internet (HF_HOME "
        "sets the cache's place; HF_HUB_OFFLINE=1 then uses it offline), or save the model "
        "and its tokenizer with save_pretrained into a folder and set "
        "model.backbone.name_or_path=/path/to/that/folder."
    )


def clip_features(clip: CLIPModel, batch: Mapping[str, torch.Tensor]) -> Features:
    """CLIP's projected features of each modality the batch has, zeros for one it lacks."""
    text = image = None
    if INPUT_IDS in batch:
        out = clip.text_model(input_ids=batch[INPUT_IDS], attention_mask=batch[ATTENTION_MASK])
        text = clip.text_projection(out.pooler_output)
    if PIXEL_VALUES in batch:
        out = clip.vision_model(pixel_values=batch[PIXEL_VALUES])
        image = clip.visual_projection(out.pooler_output)
    return Features.of(batch["labels"].shape[0], {"text": text, "image": image})
