"""Image preprocessing: decode and resize once (to uint8), augment per batch, normalise last.

Decoding, conversion to 3 channels and resizing happen once per example when a study is set
up (the decoded store). Augmentation (random rotation, shift and horizontal flip) runs on the
uint8 batch where it is collated, in the DataLoader workers; normalisation to floats runs on
whichever device the batch is sent to, so a batch crosses to the GPU at a byte a pixel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from emoclip.errors import DataError


def open_image(source: Path | np.ndarray, origin: str = "") -> Image.Image:
    """A PIL image from a file or an in-memory array; a file PIL can't read names itself.

    Images over PIL's Image.MAX_IMAGE_PIXELS (about 89 megapixels) are refused before decoding,
    where PIL itself only warns up to twice that: no face image is that large, and such a
    header on a small file is a decompression bomb.
    """
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                img.load()
                return ImageOps.exif_transpose(img)
    except Exception as err:  # PIL decoders raise many types on a broken file
        where = f" ({origin})" if origin and origin != str(source) else ""
        reason = str(err) or type(err).__name__
        raise DataError(f"cannot read image {source}{where}: {reason}") from err


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than letting PIL clip at 255.
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 0 else 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size`, then centre-crop, as CLIP's own processor does."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_pixels(source: Path | np.ndarray, size: int, origin: str = "") -> torch.Tensor:
    """uint8 tensor (3, size, size) for one image."""
    img = resize_square(to_rgb(open_image(source, origin)), size)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize(
    pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float normalised."""
    x = pixels.float().div_(255.0)
    mean_t = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def augment(
    pixels: torch.Tensor,
    keys: Sequence[Sequence[int]],
    fill: Sequence[float],
    max_rotation: float = 10.0,
    hflip_p: float = 0.5,
    max_translation: float = 0.0,
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> uint8: random rotation (uniform in +-max_rotation degrees),
    horizontal flip and shift (uniform in +-max_translation of the image side, each axis).

    Each example's draws are seeded by its `keys` row (the run's seed, the epoch, the example's
    index), not by a global generator: an example looks the same whichever loader worker, DDP
    rank or resumed run prepares it. Pixels moved in from outside the image take `fill` (the
    normalisation's mean, 0-1 per channel), the value that normalises to 0.
    """
    draws = np.stack([np.random.default_rng(list(key)).random(4) for key in keys])
    draws = torch.from_numpy(draws).float()
    x = pixels
    if hflip_p > 0:
        flip = draws[:, 0] < hflip_p
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if max_rotation > 0 or max_translation > 0:
        angle = (draws[:, 1] * 2 - 1) * math.radians(max_rotation)
        # affine_grid's coordinates span [-1, 1]: a shift of t image sides is 2t.
        shift = (draws[:, 2:] * 2 - 1) * 2 * max_translation
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        background = torch.tensor(fill, dtype=torch.float32).view(1, -1, 1, 1) * 255
        moved = x.float() - background  # so that grid_sample's zero padding is `fill`
        grid = F.affine_grid(theta, list(moved.shape), align_corners=False)
        moved = F.grid_sample(
            moved, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        x = (moved + background).round_().clamp_(0, 255).to(torch.uint8)
    return x
