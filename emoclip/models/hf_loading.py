"""Loading Hugging Face encoders and their image-processor settings, with no silent fallback:
a folder (or hub id) that lacks weights the encoder needs is refused, naming them, instead of
leaving them randomly initialised; a missing preprocessor_config.json is named as such."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.image_processing_utils import ImageProcessingMixin
from transformers.utils import logging as hf_logging

from emoclip.contract import ImagePreprocessing, normalization_stats
from emoclip.errors import BackboneLoadError
from emoclip.system.offline import check_model_folder

GUIDANCE = (
    "emoclip never falls back to random weights. To supply them: download {name!r} into the "
    "Hugging Face cache on a machine with internet (HF_HOME sets its place; HF_HUB_OFFLINE=1 "
    "then uses it offline), or save the model with save_pretrained into a folder and set "
    "{key}=/path/to/that/folder."
)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading reports (unused keys of a checkpoint's other half are
    expected); what matters is checked from the loading info afterwards."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_config(name_or_path: str, key: str) -> PretrainedConfig:
    check_model_folder(name_or_path, key)
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise BackboneLoadError(
            f"{key}={name_or_path!r}: could not load its config.json: {err}\n"
            + GUIDANCE.format(name=name_or_path, key=key)
        ) from err


def load_encoder(
    name_or_path: str, modality: str, key: str, may_lack: Sequence[str] = ()
) -> PreTrainedModel:
    """`AutoModel.from_pretrained` for one modality's encoder. A composite checkpoint (a whole
    CLIP or SigLIP) gives its encoder of that modality (`text_config` / `vision_config`). Weights
    missing from the checkpoint stop the load, except those under a prefix in `may_lack`
    (a pooler the tower does not use)."""
    config = load_config(name_or_path, key)
    sub_config = getattr(config, f"{'vision' if modality == 'image' else 'text'}_config", None)
    if isinstance(sub_config, PretrainedConfig):
        config = sub_config
    try:
        with quiet_transformers():
            model, info = AutoModel.from_pretrained(
                name_or_path, config=config, output_loading_info=True
            )
    except (OSError, ValueError, RuntimeError) as err:
        raise BackboneLoadError(
            f"{key}={name_or_path!r}: could not load its weights: {err}\n"
            + GUIDANCE.format(name=name_or_path, key=key)
        ) from err
    missing = sorted(k for k in info.get("missing_keys") or () if not k.startswith(tuple(may_lack)))
    if missing:
        raise BackboneLoadError(
            f"{key}={name_or_path!r} lacks {len(missing)} weights of its "
            f"{type(model).__name__} (e.g. {missing[:3]}); they would be randomly initialised. "
            "Is it the checkpoint of a whole model of that kind?"
        )
    return model.train()  # from_pretrained returns eval mode; Lightning keeps modes as found


def image_processor_settings(name_or_path: str, key: str) -> dict:
    """The model's own preprocessor_config.json, read as data (no image processor is built)."""
    try:
        settings, _ = ImageProcessingMixin.get_image_processor_dict(name_or_path)
    except (OSError, ValueError) as err:
        raise BackboneLoadError(
            f"{key}={name_or_path!r} has no readable preprocessor_config.json (the image size, "
            f"mean and std its encoder expects): {err}\nSave the model's image processor with "
            "save_pretrained into the same folder, or set image_size and normalization on the "
            "image tower (model.image_tower.image_size=224 model.image_tower.normalization=clip)."
        ) from err
    return settings


def image_preprocessing(
    name_or_path: str | None, image_size: int | None, normalization: str | None, key: str
):
    """An image tower's preprocessing: `image_size` and `normalization` (a name in
    emoclip.data.images.NORMALIZATIONS) where set, the rest from the model's
    preprocessor_config.json. Images are resized (shorter side) and centre-cropped to a square of
    that size: the processor's crop size where it crops, else its resize size."""

    settings = {}
    if image_size is None or normalization is None:
        if not name_or_path:
            raise BackboneLoadError(
                f"{key}: image_size and normalization must be set for an encoder without a "
                "pretrained folder (there is no preprocessor_config.json to read them from)"
            )
        settings = image_processor_settings(name_or_path, key)
    if image_size is None:
        image_size = _processor_size(settings, name_or_path, key)
    if normalization is not None:
        mean, std = normalization_stats(normalization)
    elif settings.get("do_normalize", True):
        mean, std = _triple(settings.get("image_mean")), _triple(settings.get("image_std"))
        if mean is None or std is None:
            raise BackboneLoadError(
                f"{key}: the preprocessor_config.json of {name_or_path!r} has no image_mean / "
                f"image_std; set {key}.normalization=half|clip"
            )
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if settings and (
        not settings.get("do_rescale", True)
        or abs(settings.get("rescale_factor", 1 / 255) - 1 / 255) > 1e-9
    ):
        raise BackboneLoadError(
            f"{key}: {name_or_path!r} expects pixels scaled by "
            f"{settings.get('rescale_factor') if settings.get('do_rescale', True) else 1}, but "
            "emoclip feeds pixels in [0, 1] before normalising"
        )
    return ImagePreprocessing(int(image_size), mean, std)


def _processor_size(settings: dict, name_or_path: str, key: str) -> int:
    size = settings.get("crop_size") if settings.get("do_center_crop") else None
    size = size or settings.get("size")
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or size.get("width")
    if not isinstance(size, int) or size < 1:
        raise BackboneLoadError(
            f"{key}: cannot tell the image size from the preprocessor_config.json of "
            f"{name_or_path!r} (size={settings.get('size')!r}); set {key}.image_size"
        )
    return size


def _triple(value) -> tuple[float, float, float] | None:
    if value is None:
        return None
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    return tuple(values) if len(values) == 3 else None
