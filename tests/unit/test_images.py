"""Tests for pathcnn.images on tiny files written into tmp_path."""

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from pathcnn.errors import ImageError
from pathcnn.images import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    KNOWN_CLUTTER,
    ImageEntry,
    list_images,
    load_rgb,
    parse_image_name,
)

HEIGHT, WIDTH = 6, 8


def pattern() -> np.ndarray:
    """A 6x8 RGB image where every pixel differs, so misplaced pixels show."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack([rows * 40, columns * 30, (rows * WIDTH + columns) * 5], axis=-1).astype(np.uint8)


def save(image: Image.Image, path: Path, image_format: str | None = None, **options: object) -> Path:
    image.save(path, format=image_format, **options)
    return path


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, scanlines: bytes) -> bytes:
    """A PNG assembled by hand, for headers and bit depths Pillow does not write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b"")
    )


# --- formats -----------------------------------------------------------------------------------


def test_png_loads_exact_pixels_as_contiguous_uint8(tmp_path: Path) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.png")
    pixels = load_rgb(path)
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert pixels.dtype == np.uint8
    assert pixels.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(pixels, pattern())


@pytest.mark.parametrize(
    ("name", "image_format", "options"),
    [("A1.tif", "TIFF", {}), ("A1.webp", "WEBP", {"lossless": True}), ("A1.tif", "TIFF", {"compression": "tiff_lzw"})],
)
def test_lossless_formats_load_exact_pixels(tmp_path: Path, name: str, image_format: str, options: dict) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / name, image_format, **options)
    np.testing.assert_array_equal(load_rgb(path), pattern())


def test_jpeg_loads_close_to_the_saved_colour(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (WIDTH, HEIGHT), (200, 40, 90)), tmp_path / "A1.jpg", quality=95)
    pixels = load_rgb(path)
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - [200, 40, 90]).max() <= 3


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.jpg", "PNG")
    np.testing.assert_array_equal(load_rgb(path), pattern())


def test_mpo_camera_jpeg_loads_first_frame_without_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, second = Image.new("RGB", (WIDTH, HEIGHT), (250, 0, 0)), Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 250))
    path = save(first, tmp_path / "A1.jpg", "MPO", save_all=True, append_images=[second], quality=95)
    assert Image.open(path).format == "MPO"
    assert "MPO" in ALLOWED_FORMATS
    with caplog.at_level(logging.WARNING, logger="pathcnn.images"):
        pixels = load_rgb(path)
    assert pixels[0, 0, 0] > 240 and pixels[0, 0, 2] < 15
    assert caplog.records == []


@pytest.mark.parametrize(
    ("name", "content", "found"),
    [
        ("A1.png", b"<!DOCTYPE html>\n<html><body>Access denied</body></html>\n", "found HTML page"),
        ("A1.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 6\nshowpage\n", "found PostScript/EPS document"),
        ("A1.jpg", b"these are my notes about slide A1\n", "found text file"),
        ("A1.tif", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "found PDF document"),
        ("A1.png", bytes(range(200, 256)) * 4, "found unrecognised data starting c8 c9 ca"),
    ],
)
def test_non_images_are_rejected_with_what_was_found(tmp_path: Path, name: str, content: bytes, found: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a supported image (")
    assert found in message
    assert message.endswith("; use JPEG, PNG, TIFF or WebP")
    assert "\n" not in message


def test_gif_is_rejected_even_though_pillow_reads_it(tmp_path: Path) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.png", "GIF")
    with pytest.raises(ImageError, match=r"A1\.png: not a supported image \(found GIF image\)"):
        load_rgb(path)


def test_empty_file_has_its_own_message(tmp_path: Path) -> None:
    path = tmp_path / "A1.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"A1\.jpg: empty file \(0 bytes\)"):
        load_rgb(path)


def test_missing_file_and_directory_are_named(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"A9\.jpg: file not found"):
        load_rgb(tmp_path / "A9.jpg")
    with pytest.raises(ImageError, match=r"is a directory"):
        load_rgb(tmp_path)


@pytest.mark.parametrize("max_pixels", [0, -5, 2.5, True])
def test_max_pixels_must_be_a_positive_integer(tmp_path: Path, max_pixels: object) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.png")
    with pytest.raises(ValueError, match="max_pixels"):
        load_rgb(path, max_pixels=max_pixels)  # type: ignore[arg-type]


# --- pixel limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_pixels", [47, 30, 10])  # Pillow warns above the limit and errors above twice it
def test_pixel_limit_names_count_and_param_without_leaking_warnings(tmp_path: Path, max_pixels: int) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.png")
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as caught:
            load_rgb(path, max_pixels=max_pixels)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert f"{HEIGHT * WIDTH} pixels" in message
    assert f"limit of {max_pixels}" in message
    assert "patches.max_image_pixels" in message
    assert not [warning for warning in caught_warnings if issubclass(warning.category, Image.DecompressionBombWarning)]


def test_image_at_exactly_the_limit_loads(tmp_path: Path) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.png")
    assert load_rgb(path, max_pixels=HEIGHT * WIDTH).shape == (HEIGHT, WIDTH, 3)


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    # The header claims 100 million pixels but carries one row: only the header may be read.
    path = tmp_path / "A1.png"
    path.write_bytes(png_bytes(20_000, 5_000, 8, 0, b"\x00" + bytes(20_000)))
    with pytest.raises(ImageError, match=r"image has 100000000 pixels, more than the limit of 1000;"):
        load_rgb(path, max_pixels=1000)


def test_max_pixels_overrides_pillow_limit_and_pillow_settings_are_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow alone would refuse 48 pixels
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    np.testing.assert_array_equal(load_rgb(path, max_pixels=100), pattern())
    with pytest.raises(ImageError):
        load_rgb(path, max_pixels=20)
    assert Image.MAX_IMAGE_PIXELS == 10
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert DEFAULT_MAX_PIXELS == 200_000_000


# --- damaged files --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "image_format"), [("A1.jpg", "JPEG"), ("A1.png", "PNG"), ("A1.tif", "TIFF")])
@pytest.mark.parametrize("allow_truncated_globally", [False, True])
def test_file_cut_in_half_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    image_format: str,
    allow_truncated_globally: bool,
) -> None:
    # Another library switching Pillow to padding truncated files must not make this loader pad them.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", allow_truncated_globally)
    data = encoded(Image.fromarray(pattern()), image_format)
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    assert str(caught.value).startswith(f"{path}: corrupt or truncated image (")
    assert str(caught.value).endswith("; re-export or re-download it")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is allow_truncated_globally


def test_corrupt_bytes_in_png_data_are_refused(tmp_path: Path) -> None:
    data = bytearray(encoded(Image.fromarray(pattern()), "PNG"))
    data_start = data.index(b"IDAT") + 4
    data[data_start + 4 : data_start + 12] = bytes(byte ^ 0xFF for byte in data[data_start + 4 : data_start + 12])
    path = tmp_path / "A1.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"A1\.png: corrupt or truncated image \("):
        load_rgb(path)


def test_png_with_broken_header_is_called_corrupt_not_unsupported(tmp_path: Path) -> None:
    data = bytearray(encoded(Image.fromarray(pattern()), "PNG"))
    data[16:24] = b"\xff" * 8  # width and height inside IHDR; its checksum no longer matches
    path = tmp_path / "A1.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"A1\.png: corrupt or truncated image \(PNG header unreadable\)"):
        load_rgb(path)


def test_zero_sized_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "A1.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that a zero-size TIFF is nonconformant
        tifffile.imwrite(path, np.zeros((0, 5), np.uint8))
    with pytest.raises(ImageError, match=r"A1\.tif: image has zero size \(\d+x\d+\); re-export"):
        load_rgb(path)


# --- orientation, transparency, colour modes ------------------------------------------------------


@pytest.mark.parametrize(("orientation", "rotations"), [(6, -1), (8, 1)])
def test_exif_orientation_is_applied_to_png(tmp_path: Path, orientation: int, rotations: int) -> None:
    image = Image.fromarray(pattern())
    exif = image.getexif()
    exif[0x0112] = orientation
    path = save(image, tmp_path / "A1.png", exif=exif.tobytes())
    pixels = load_rgb(path)
    assert pixels.shape == (WIDTH, HEIGHT, 3)
    np.testing.assert_array_equal(pixels, np.rot90(pattern(), rotations))


@pytest.mark.parametrize(("orientation", "red_rows"), [(6, slice(0, 8)), (8, slice(8, 16))])
def test_exif_orientation_is_applied_to_jpeg(tmp_path: Path, orientation: int, red_rows: slice) -> None:
    stored = np.full((8, 16, 3), 255, np.uint8)
    stored[:, :8] = (255, 0, 0)  # left half red: clockwise (6) puts it on top, anticlockwise (8) at the bottom
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = save(image, tmp_path / "A1.jpg", exif=exif.tobytes(), quality=95)
    pixels = load_rgb(path).astype(int)
    assert pixels.shape == (16, 8, 3)
    white_rows = slice(8, 16) if red_rows.start == 0 else slice(0, 8)
    assert pixels[red_rows][1:-1, :, 1].max() < 40
    assert pixels[white_rows][1:-1, :, 1].min() > 215


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white(tmp_path: Path, mode: str) -> None:
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = 0
    rgba[:, :4, 3] = 0  # left half fully transparent black
    rgba[:, 4:6, 3] = 255  # opaque black
    rgba[:, 6:, 3] = 128  # half-transparent black
    path = save(Image.fromarray(rgba, "RGBA").convert(mode), tmp_path / "A1.png")
    pixels = load_rgb(path)
    assert (pixels[:, :4] == 255).all()
    assert (pixels[:, 4:6] == 0).all()
    assert (pixels[:, 6:] == 127).all()


def test_palette_transparency_becomes_white(tmp_path: Path) -> None:
    image = Image.new("P", (WIDTH, HEIGHT), 0)
    image.putpalette([0, 0, 0, 10, 200, 30])
    image.paste(1, (0, 0, 4, HEIGHT))
    path = save(image, tmp_path / "A1.png", transparency=0)
    pixels = load_rgb(path)
    assert (pixels[:, :4] == (10, 200, 30)).all()
    assert (pixels[:, 4:] == 255).all()


@pytest.mark.parametrize(
    ("image", "name", "expected"),
    [
        (Image.new("L", (WIDTH, HEIGHT), 77), "A1.png", (77, 77, 77)),
        (Image.new("1", (WIDTH, HEIGHT), 1), "A1.png", (255, 255, 255)),
        (Image.new("P", (WIDTH, HEIGHT), 2), "A1.png", (7, 8, 9)),
        (Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 0, 0)), "A1.tif", (255, 0, 255)),
    ],
)
def test_other_colour_modes_become_rgb(tmp_path: Path, image: Image.Image, name: str, expected: tuple) -> None:
    if image.mode == "P":
        image.putpalette([0, 0, 0, 1, 2, 3, 7, 8, 9])
    pixels = load_rgb(save(image, tmp_path / name))
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert (pixels == expected).all()


SIXTEEN_BIT = np.array([[0, 65535, 32768, 257, 128, 129]], np.uint16)
SIXTEEN_BIT_AS_EIGHT = np.array([[0, 255, 128, 1, 0, 1]], np.uint8)  # round(v * 255 / 65535)


def test_16_bit_grayscale_png_is_rescaled_with_rounding(tmp_path: Path) -> None:
    scanlines = b"\x00" + SIXTEEN_BIT[0].astype(">u2").tobytes()
    path = tmp_path / "A1.png"
    path.write_bytes(png_bytes(SIXTEEN_BIT.shape[1], 1, 16, 0, scanlines))
    pixels = load_rgb(path)
    assert pixels.shape == (1, SIXTEEN_BIT.shape[1], 3)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], SIXTEEN_BIT_AS_EIGHT)


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_16_bit_grayscale_tiff_in_either_byte_order_is_rescaled(tmp_path: Path, byte_order: str) -> None:
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, SIXTEEN_BIT, byteorder=byte_order)
    np.testing.assert_array_equal(load_rgb(path)[..., 0], SIXTEEN_BIT_AS_EIGHT)


def test_32_bit_integer_tiff_holding_16_bit_values_is_rescaled(tmp_path: Path) -> None:
    path = save(Image.fromarray(SIXTEEN_BIT.astype(np.int32)), tmp_path / "A1.tif")
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(load_rgb(path)[..., 1], SIXTEEN_BIT_AS_EIGHT)


def test_32_bit_integer_tiff_beyond_16_bits_is_refused_not_clipped(tmp_path: Path) -> None:
    path = save(Image.fromarray(np.array([[0, 70_000]], np.int32)), tmp_path / "A1.tif")
    with pytest.raises(ImageError, match=r"A1\.tif: integer pixel values outside 0\.\.65535"):
        load_rgb(path)


def test_float_tiff_in_unit_range_is_rescaled(tmp_path: Path) -> None:
    path = save(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), tmp_path / "A1.tif")
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(load_rgb(path)[0, :, 2], [0, 128, 255])


def test_16_bit_rgb_tiff_is_read_by_tifffile_and_rescaled(tmp_path: Path) -> None:
    samples = np.zeros((HEIGHT, WIDTH, 3), np.uint16)
    samples[..., 0], samples[..., 1], samples[..., 2] = 65535, 32768, 129
    samples[0, 0] = (257, 0, 128)
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, samples, photometric="rgb")
    pixels = load_rgb(path)
    assert pixels.shape == (HEIGHT, WIDTH, 3) and pixels.dtype == np.uint8 and pixels.flags["C_CONTIGUOUS"]
    assert tuple(pixels[1, 1]) == (255, 128, 1)  # Pillow alone gives a blue of 0 (high byte)
    assert tuple(pixels[0, 0]) == (1, 0, 0)


def test_16_bit_rgb_tiff_with_separate_planes_keeps_channels(tmp_path: Path) -> None:
    samples = np.zeros((3, HEIGHT, WIDTH), np.uint16)
    samples[0], samples[1], samples[2] = 65535, 0, 32768
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, samples, photometric="rgb", planarconfig="separate")
    assert (load_rgb(path) == (255, 0, 128)).all()


def test_16_bit_rgba_tiff_is_composited_on_white(tmp_path: Path) -> None:
    samples = np.zeros((HEIGHT, WIDTH, 4), np.uint16)
    samples[:, 4:, 3] = 65535
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, samples, photometric="rgb", extrasamples=["unassalpha"])
    pixels = load_rgb(path)
    assert (pixels[:, :4] == 255).all()
    assert (pixels[:, 4:] == 0).all()


def test_16_bit_rgb_tiff_orientation_tag_is_applied(tmp_path: Path) -> None:
    samples = pattern().astype(np.uint16) * 257  # exact 8-bit values after rescaling
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, samples, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    np.testing.assert_array_equal(load_rgb(path), np.rot90(pattern(), -1))


def test_16_bit_rgb_tiff_above_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, np.zeros((HEIGHT, WIDTH, 3), np.uint16), photometric="rgb")
    with pytest.raises(ImageError, match=r"A1\.tif: image has 48 pixels, .*patches\.max_image_pixels"):
        load_rgb(path, max_pixels=47)


def test_truncated_16_bit_rgb_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, np.ones((64, 64, 3), np.uint16), photometric="rgb")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"A1\.tif: corrupt or truncated image \("):
        load_rgb(path)


def test_16_bit_rgb_tiff_with_a_codec_tifffile_lacks_is_not_called_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "A1.tif"
    tifffile.imwrite(path, np.zeros((HEIGHT, WIDTH, 3), np.uint16), photometric="rgb")
    data = path.read_bytes()
    uncompressed_entry = struct.pack("<HHIHH", 259, 3, 1, 1, 0)  # Compression = none
    assert data.count(uncompressed_entry) == 1
    path.write_bytes(data.replace(uncompressed_entry, struct.pack("<HHIHH", 259, 3, 1, 5, 0)))  # claim LZW
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    assert str(caught.value).startswith(f"{path}: TIFF compression cannot be decoded here (")
    assert "corrupt" not in str(caught.value)


def test_multi_page_tiff_uses_first_page_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = Image.fromarray(pattern())
    second = Image.new("RGB", (WIDTH, HEIGHT), (9, 9, 9))
    path = save(first, tmp_path / "A1.tif", save_all=True, append_images=[second, second])
    with caplog.at_level(logging.WARNING, logger="pathcnn.images"):
        pixels = load_rgb(path)
    np.testing.assert_array_equal(pixels, pattern())
    assert len(caplog.records) == 1
    assert str(path) in caplog.records[0].getMessage()
    assert "3 pages" in caplog.records[0].getMessage()


def test_single_page_tiff_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = save(Image.fromarray(pattern()), tmp_path / "A1.tif")
    with caplog.at_level(logging.WARNING, logger="pathcnn.images"):
        load_rgb(path)
    assert caplog.records == []


# --- names and listing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("A1.jpg", ("A1", "A")),
        ("B2.tif", ("B2", "B")),
        ("tumor_3.png", ("tumor_3", "tumor")),
        ("AB-x.png", ("AB-x", "AB")),
        ("C12 copy.jpeg", ("C12 copy", "C")),
        ("scan.jpg", None),
        ("1A.jpg", None),
        ("A.jpg", None),
        ("_1.jpg", None),
    ],
)
def test_parse_image_name(name: str, expected: tuple[str, str] | None) -> None:
    assert parse_image_name(Path("data/raw") / name) == expected


def touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"x")


def test_list_images_sorted_and_skips_hidden_clutter_and_subdirectories(tmp_path: Path) -> None:
    touch(tmp_path, "B2.png", "A10.jpg", "A1.jpg", ".hidden.jpg", *KNOWN_CLUTTER, "thumbs.db")
    (tmp_path / "A3_more").mkdir()
    assert list_images(tmp_path) == [
        ImageEntry(path=tmp_path / "A1.jpg", image_id="A1", label="A"),
        ImageEntry(path=tmp_path / "A10.jpg", image_id="A10", label="A"),
        ImageEntry(path=tmp_path / "B2.png", image_id="B2", label="B"),
    ]


def test_list_images_follows_symlinks_like_dvc_cache_links(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    target.mkdir()
    touch(target, "blob")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "A1.jpg").symlink_to(target / "blob")
    assert [entry.image_id for entry in list_images(raw)] == ["A1"]


def test_list_images_refuses_broken_link(tmp_path: Path) -> None:
    (tmp_path / "A1.jpg").symlink_to(tmp_path / "missing")
    with pytest.raises(ImageError, match=r"A1\.jpg: broken link .*dvc pull"):
        list_images(tmp_path)


def test_list_images_names_the_badly_named_file_and_the_rule(tmp_path: Path) -> None:
    touch(tmp_path, "A1.jpg", "scan.jpg", "zz.png")
    with pytest.raises(ImageError) as caught:
        list_images(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'scan.jpg'}: ")
    assert "rename it like A3.jpg (class letters then a number)" in message
    assert message.endswith("(1 more file breaks the rule)")


def test_list_images_refuses_duplicate_ids(tmp_path: Path) -> None:
    touch(tmp_path, "A1.jpg", "A1.png")
    with pytest.raises(ImageError, match=r"A1\.png: image id 'A1' is already used by A1\.jpg"):
        list_images(tmp_path)


@pytest.mark.parametrize("contents", [(), (".DS_Store", "Thumbs.db", ".hidden.png")])
def test_list_images_refuses_a_directory_without_images(tmp_path: Path, contents: tuple[str, ...]) -> None:
    touch(tmp_path, *contents)
    with pytest.raises(ImageError, match=r"no images found; put the images there .*dvc pull.*dvc add data/raw"):
        list_images(tmp_path)


def test_list_images_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"raw: image directory does not exist; .*dvc pull"):
        list_images(tmp_path / "raw")
