"""Image files as datasets hold them: each gives RGB pixels or a DataError naming the file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from emoclip.data.images import load_pixels
from emoclip.errors import DataError

SIZE = 16
RED, WHITE = (255, 0, 0), (255, 255, 255)


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def colour_at(pixels: torch.Tensor, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in pixels[:, y, x])


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    data = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def noise(mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).convert(mode)


BAD_FILES = {
    "zero_byte.png": b"",
    "not_an_image.png": b"i felt happy today;joy\n",
    "truncated.jpg": encoded(noise(), "JPEG")[:300],
    "truncated.png": encoded(noise(), "PNG")[:200],
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unreadable_file_is_a_data_error_naming_it(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, BAD_FILES[name])
    with pytest.raises(DataError, match="cannot read image") as error:
        load_pixels(path, SIZE, origin="train.csv:7")
    assert str(path) in str(error.value) and "train.csv:7" in str(error.value)


# Between Image.MAX_IMAGE_PIXELS and twice it PIL only warns; above, it raises.
@pytest.mark.parametrize("side", [10_000, 30_000])
def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path, side: int) -> None:
    assert side * side > Image.MAX_IMAGE_PIXELS
    path = write(tmp_path / "bomb.png", png_claiming(side, side))
    assert path.stat().st_size < 200
    with pytest.raises(DataError, match=rf"{path}.*exceeds limit"):
        load_pixels(path, SIZE)


def test_rgba_png_is_composed_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (SIZE, SIZE), (255, 0, 0, 0))  # left half transparent
    img.paste((255, 0, 0, 255), (SIZE // 2, 0, SIZE, SIZE))
    pixels = load_pixels(write(tmp_path / "a.png", encoded(img, "PNG")), SIZE)
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == torch.uint8
    assert colour_at(pixels, 8, 1) == WHITE
    assert colour_at(pixels, 8, SIZE - 2) == RED


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png_keeps_its_colours(tmp_path: Path, transparent: bool) -> None:
    img = Image.new("P", (SIZE, SIZE), 1)
    img.putpalette([0, 0, 255] + list(RED) + [0] * 762)
    img.paste(0, (0, 0, SIZE // 2, SIZE))  # left half: palette index 0, blue
    options = {"transparency": 0} if transparent else {}
    pixels = load_pixels(write(tmp_path / "p.png", encoded(img, "PNG", **options)), SIZE)
    assert colour_at(pixels, 8, 1) == (WHITE if transparent else (0, 0, 255))
    assert colour_at(pixels, 8, SIZE - 2) == RED


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    img = Image.new("CMYK", (SIZE, SIZE), (0, 255, 255, 0))  # no cyan, full magenta + yellow
    pixels = load_pixels(write(tmp_path / "c.jpg", encoded(img, "JPEG", quality=95)), SIZE)
    assert np.allclose(colour_at(pixels, 8, 8), RED, atol=8)


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    levels = np.array([0, 16384, 32768, 65535], dtype=np.uint16)
    grey = np.repeat(np.repeat(levels[None, :], SIZE, axis=0), SIZE // 4, axis=1)
    path = write(tmp_path / "g16.png", encoded(Image.fromarray(grey), "PNG"))
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # it really is 16-bit on disk
    pixels = load_pixels(path, SIZE)
    row = [colour_at(pixels, 8, x) for x in (1, 5, 9, 13)]
    assert all(r == g == b for r, g, b in row)
    assert [r for r, _, _ in row] == pytest.approx([0, 64, 128, 255], abs=2)


def test_png_name_holding_a_jpeg_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path / "really_a.jpeg.png", encoded(Image.new("RGB", (SIZE, SIZE), RED), "JPEG")
    )
    assert np.allclose(colour_at(load_pixels(path, SIZE), 8, 8), RED, atol=8)


def test_greyscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = write(tmp_path / "l.png", encoded(Image.new("L", (SIZE, SIZE), 77), "PNG"))
    assert colour_at(load_pixels(path, SIZE), 3, 3) == (77, 77, 77)


VALID = [encoded(noise(), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


@st.composite
def damaged(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL on damaged metadata
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(damaged(), st.binary(max_size=200)))
def test_any_damaged_file_gives_pixels_or_data_error(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path / "x.png", data)
    try:
        pixels = load_pixels(path, SIZE)
    except DataError as error:
        assert str(path) in str(error)
        return
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == torch.uint8
