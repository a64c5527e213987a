"""One way to get a CLIP: `from_pretrained` on a hub id or a local folder, or a config for a
small randomly initialised one (the offline demo). Pretrained weights that cannot be loaded
stop the run; they are never replaced by random ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from transformers import CLIPConfig, CLIPModel

from emoclip.errors import BackboneLoadError, ConfigError
from emoclip.models.task import TaskSpec


def load_clip(
    name_or_path: str | None, config: Mapping | None, image_size: int, task: TaskSpec
) -> CLIPModel:
    if name_or_path:
        model = _from_pretrained(name_or_path)
    elif config is not None:
        model = CLIPModel(tiny_clip_config(config, image_size, task))
    else:
        raise ConfigError(
            "model.backbone needs either name_or_path (a hub id or a local folder) or config "
            "(the geometry of a randomly initialised CLIP)"
        )
    actual = model.config.vision_config.image_size
    if actual != image_size:
        raise ConfigError(
            f"model.backbone.image_size={image_size} but {name_or_path or 'the config'} expects "
            f"{actual} px images; set model.backbone.image_size={actual}"
        )
    return model


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


def _from_pretrained(name_or_path: str) -> CLIPModel:
    try:
        model, info = CLIPModel.from_pretrained(name_or_path, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise BackboneLoadError(
            f"could not load pretrained CLIP weights from {name_or_path!r}: {err}\n"
            "emoclip never falls back to random weights. To supply the weights: download "
            f"{name_or_path!r} into the Hugging Face cache on a machine with internet (HF_HOME "
            "sets the cache's place; HF_HUB_OFFLINE=1 then uses it offline), or save the model "
            "and its tokenizer with save_pretrained into a folder and set "
            "model.backbone.name_or_path=/path/to/that/folder."
        ) from err
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise BackboneLoadError(
            f"{name_or_path!r} lacks {len(missing)} CLIP weights (e.g. {missing[:3]}); "
            "they would be randomly initialised. Is it a full CLIPModel checkpoint?"
        )
    return model.train()  # from_pretrained returns eval mode; Lightning keeps modes as found
