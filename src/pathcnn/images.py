"""The one image loader for the project: list the raw images and decode one to 8-bit RGB."""

from __future__ import annotations

import contextlib
import logging
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pathcnn.errors import ImageError

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "TIFF", "WEBP"})
KNOWN_CLUTTER: frozenset[str] = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "ehthumbs.db"})
DEFAULT_MAX_PIXELS: int = 200_000_000
EXIF_ORIENTATION = 0x0112

_logger = logging.getLogger("pathcnn.images")

# Pillow has no opener registered under "MPO": its JPEG opener returns MPO files itself.
_PILLOW_OPEN_FORMATS: tuple[str, ...] = tuple(sorted(ALLOWED_FORMATS - {"MPO"}))
_CLUTTER_NAMES_LOWER: frozenset[str] = frozenset(name.lower() for name in KNOWN_CLUTTER)
_IMAGE_NAME = re.compile(r"(?P<label>[A-Za-z]+)[0-9_-]")
_NAMING_HINT = "rename it like A3.jpg (class letters then a number)"
_SUPPORTED_HINT = "use JPEG, PNG, TIFF or WebP"
_CORRUPT_HINT = "re-export or re-download it"
_HIGH_BIT_GRAY_MODES: frozenset[str] = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
# Errors Pillow and tifffile raise for damaged files; anything else is a bug and propagates.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
)
_PILLOW_SETTINGS_LOCK = threading.Lock()
_EXIF_ORIENTATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda pixels: pixels[:, ::-1],
    3: lambda pixels: pixels[::-1, ::-1],
    4: lambda pixels: pixels[::-1, :],
    5: lambda pixels: pixels.swapaxes(0, 1),
    6: lambda pixels: np.rot90(pixels, -1),
    7: lambda pixels: np.rot90(pixels, 2).swapaxes(0, 1),
    8: lambda pixels: np.rot90(pixels, 1),
}


@dataclass(frozen=True)
class ImageEntry:
    """One raw image: its path, its id (the file stem) and its class label."""

    path: Path
    image_id: str
    label: str


def parse_image_name(path: Path) -> tuple[str, str] | None:
    """Return (image_id, label) when the stem is class letters then a digit, '_' or '-'; else None."""
    image_id = Path(path).stem
    match = _IMAGE_NAME.match(image_id)
    if match is None:
        return None
    return image_id, match.group("label")


def list_images(raw_dir: Path) -> list[ImageEntry]:
    """List the images directly in raw_dir, sorted by file name, skipping hidden files and clutter."""
    raw_dir = Path(raw_dir)
    get_images_hint = "put the images there and run `dvc pull` (or `dvc add data/raw` for new images)"
    if not raw_dir.is_dir():
        raise ImageError(f"{raw_dir}: image directory does not exist; {get_images_hint}")
    entries: list[ImageEntry] = []
    badly_named: list[Path] = []
    path_by_id: dict[str, Path] = {}
    for path in sorted(raw_dir.iterdir(), key=lambda candidate: candidate.name):
        if path.name.startswith(".") or path.name.lower() in _CLUTTER_NAMES_LOWER:
            continue
        if path.is_symlink() and not path.exists():
            raise ImageError(f"{path}: broken link (its target is missing); run `dvc pull` or `dvc checkout`")
        if not path.is_file():
            continue
        parsed = parse_image_name(path)
        if parsed is None:
            badly_named.append(path)
            continue
        image_id, label = parsed
        if image_id in path_by_id:
            raise ImageError(
                f"{path}: image id '{image_id}' is already used by {path_by_id[image_id].name}; "
                "rename or remove one of them"
            )
        path_by_id[image_id] = path
        entries.append(ImageEntry(path=path, image_id=image_id, label=label))
    if badly_named:
        other_count = len(badly_named) - 1
        others = ""
        if other_count == 1:
            others = " (1 more file breaks the rule)"
        elif other_count > 1:
            others = f" ({other_count} more files break the rule)"
        raise ImageError(
            f"{badly_named[0]}: file name does not start with class letters followed by a digit, '_' or '-'; "
            f"{_NAMING_HINT}{others}"
        )
    if not entries:
        raise ImageError(f"{raw_dir}: no images found; {get_images_hint}")
    return entries


def load_rgb(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one JPEG, PNG, TIFF or WebP file to a C-contiguous HxWx3 uint8 RGB array."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    path = Path(path)
    head = _read_head(path)
    pixels = _load_with_pillow(path, head, max_pixels)
    if pixels is None:
        pixels = _load_with_tifffile(path, max_pixels)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _read_head(path: Path) -> bytes:
    """Return the first bytes of the file, refusing missing, unreadable and empty files."""
    try:
        with path.open("rb") as file:
            head = file.read(512)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the path or run `dvc pull`") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file; pass an image file") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read the file ({error.strerror or error}); check its permissions") from None
    if not head:
        raise ImageError(f"{path}: empty file (0 bytes), not an image; {_CORRUPT_HINT}")
    return head


@contextlib.contextmanager
def _pillow_limits(max_pixels: int) -> Iterator[None]:
    """Hold Pillow's bomb limit at max_pixels and truncated loading off for one load, then restore both."""
    # Pillow reads these module globals at open and at load time, so they cannot be passed per call.
    # The lock keeps concurrent loads in this module from seeing each other's settings; the old
    # values come back afterwards, so nothing leaks to other Pillow users.
    with _PILLOW_SETTINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved_limit, saved_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved_limit, saved_truncated


def _load_with_pillow(path: Path, head: bytes, max_pixels: int) -> np.ndarray | None:
    """Decode with Pillow; None means a TIFF that tifffile must read instead."""
    try:
        with _pillow_limits(max_pixels):
            try:
                opened = Image.open(path, formats=_PILLOW_OPEN_FORMATS)
            except UnidentifiedImageError:
                return _reject_unidentified(path, head)
            except _DECODE_ERRORS as error:
                raise _corrupt_error(path, error) from None
            with opened as image:
                if image.format not in ALLOWED_FORMATS:
                    raise ImageError(f"{path}: not a supported image (found {image.format}); {_SUPPORTED_HINT}")
                _check_size(path, image.width, image.height, max_pixels)
                if image.format == "TIFF" and _is_high_bit_color_tiff(image):
                    return None
                try:
                    _warn_if_multi_frame(path, image)
                    image.load()
                    # exif_transpose copies the whole image even when there is nothing to turn.
                    needs_turn = image.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1)
                    oriented = ImageOps.exif_transpose(image) if needs_turn else image
                except _DECODE_ERRORS as error:
                    if image.format == "TIFF":
                        # Pillow lacks some TIFF codecs and layouts; tifffile reports damage on its own.
                        return None
                    raise _corrupt_error(path, error) from None
                # Converted before the file closes: a closed Pillow image no longer holds its pixels.
                return _pillow_to_rgb(path, oriented)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _too_many_pixels_error(path, _pixel_count_from_pillow(str(error)), max_pixels) from None


def _reject_unidentified(path: Path, head: bytes) -> None:
    """Raise the right error for a file Pillow cannot open, or return None for tifffile to try."""
    what = _describe_content(head)
    if what == "TIFF":
        return None
    if what in ALLOWED_FORMATS:
        raise ImageError(f"{path}: corrupt or truncated image ({what} header unreadable); {_CORRUPT_HINT}")
    raise ImageError(f"{path}: not a supported image (found {what}); {_SUPPORTED_HINT}")


def _is_high_bit_color_tiff(image: Image.Image) -> bool:
    """Tell whether a TIFF has several samples of more than 8 bits, which Pillow truncates or garbles."""
    bits_per_sample = image.tag_v2.get(258, 1)
    bits = bits_per_sample if isinstance(bits_per_sample, tuple) else (bits_per_sample,)
    return max(bits) > 8 and image.tag_v2.get(277, 1) > 1


def _warn_if_multi_frame(path: Path, image: Image.Image) -> None:
    """Log that only the first page is used; MPO extra frames are camera previews and stay silent."""
    frame_count = getattr(image, "n_frames", 1)
    if frame_count > 1 and image.format != "MPO":
        _logger.warning("%s: %s file has %d pages; using only the first page", path, image.format, frame_count)


def _pillow_to_rgb(path: Path, image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to HxWx3 uint8, transparency on white."""
    if image.mode in _HIGH_BIT_GRAY_MODES:
        return _gray_to_rgb(_rescale_to_uint8(path, np.asarray(image)))
    try:
        if image.has_transparency_data:
            rgba = np.asarray(image.convert("RGBA"))
            return _composite_on_white(rgba[..., :3], rgba[..., 3], premultiplied=False)
        return _rgb_array(image if image.mode == "RGB" else image.convert("RGB"))
    except ValueError as error:
        raise ImageError(
            f"{path}: colour mode {image.mode} cannot be converted to RGB ({error}); re-export it as RGB"
        ) from None


def _rgb_array(image: Image.Image, band_rows: int = 512) -> np.ndarray:
    """An RGB Pillow image as a numpy array, copied band by band.

    np.asarray(image) goes through image.tobytes(): a second full-size copy at once. Copying bands into one
    preallocated array keeps the peak near image + array, which matters for whole-slide-sized inputs.
    """
    width, height = image.size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, band_rows):
        bottom = min(height, top + band_rows)
        pixels[top:bottom] = np.asarray(image.crop((0, top, width, bottom)))
    return pixels


def _load_with_tifffile(path: Path, max_pixels: int) -> np.ndarray:
    """Decode the first page of a TIFF that Pillow cannot read faithfully (high bit depth, rare codecs)."""
    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages.first
            _check_size(path, page.imagewidth, page.imagelength, max_pixels)
            if len(tiff.pages) > 1:
                _logger.warning("%s: TIFF file has %d pages; using only the first page", path, len(tiff.pages))
            samples = page.asarray()
            axes = page.axes
            photometric = int(page.photometric)
            extra_samples = tuple(int(kind) for kind in page.extrasamples)
            orientation = page.tags.valueof(274, 1)
    except (*_DECODE_ERRORS, ImportError, tifffile.TiffFileError) as error:
        # tifffile names a missing codec in a KeyError or ImportError; that file is not damaged.
        if isinstance(error, ImportError) or "imagecodecs" in str(error):
            raise ImageError(
                f"{path}: TIFF compression cannot be decoded here ({' '.join(str(error).split())}); "
                "re-export it uncompressed, with deflate/zip compression, or as PNG"
            ) from None
        raise _corrupt_error(path, error) from None
    if axes == "YX":
        samples = samples[..., np.newaxis]
    elif axes == "SYX":
        samples = np.moveaxis(samples, 0, -1)
    elif axes != "YXS":
        raise ImageError(f"{path}: unsupported TIFF layout (axes {axes}); re-export it as a plain RGB TIFF or PNG")
    pixels = _tiff_samples_to_rgb(path, samples, photometric, extra_samples)
    return _EXIF_ORIENTATIONS.get(orientation, lambda unchanged: unchanged)(pixels)


def _tiff_samples_to_rgb(
    path: Path, samples: np.ndarray, photometric: int, extra_samples: tuple[int, ...]
) -> np.ndarray:
    """Turn HxWxS TIFF samples into HxWx3 uint8, transparency composited on white."""
    minisblack, miniswhite, rgb = 1, 0, 2
    color_count = 3 if photometric == rgb else 1
    if photometric not in (minisblack, miniswhite, rgb) or samples.shape[-1] < color_count:
        raise ImageError(
            f"{path}: unsupported TIFF colour space (photometric {photometric}, {samples.shape[-1]} samples); "
            "re-export it as RGB or grayscale"
        )
    eight_bit = _rescale_to_uint8(path, samples)
    color = eight_bit[..., :color_count]
    if photometric == miniswhite:
        color = 255 - color
    if color_count == 1:
        color = _gray_to_rgb(color[..., 0])
    # ExtraSamples 1 is premultiplied alpha, 2 is straight alpha; 0 (unspecified) is not alpha.
    alpha_kind = extra_samples[0] if extra_samples and eight_bit.shape[-1] > color_count else 0
    if alpha_kind in (1, 2):
        return _composite_on_white(color, eight_bit[..., color_count], premultiplied=alpha_kind == 1)
    return color


def _rescale_to_uint8(path: Path, samples: np.ndarray) -> np.ndarray:
    """Rescale samples to uint8 over their type's full range (16-bit: round(v * 255 / 65535))."""
    if samples.dtype == np.uint8:
        return samples
    if samples.dtype == np.bool_:
        return samples.astype(np.uint8) * 255
    if samples.dtype.kind in "iu":
        if samples.dtype.itemsize > 2 or samples.dtype.kind == "i":
            # Pillow's mode I and 32-bit TIFFs usually carry 16-bit data; anything wider is refused, not clipped.
            if samples.size and (samples.min() < 0 or samples.max() > 65535):
                raise ImageError(
                    f"{path}: integer pixel values outside 0..65535 (type {samples.dtype}); "
                    "re-export it as 8- or 16-bit"
                )
        wide = samples.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    if samples.dtype.kind == "f":
        if samples.size and not (np.isfinite(samples).all() and samples.min() >= 0 and samples.max() <= 65535):
            raise ImageError(
                f"{path}: floating-point pixel values outside 0..65535 or not finite; re-export it as 8- or 16-bit"
            )
        # Float images hold either 0..1 intensities or 16-bit counts; the maximum tells which.
        scale = 255.0 if samples.size == 0 or samples.max() <= 1.0 else 255.0 / 65535.0
        return np.rint(samples.astype(np.float64) * scale).astype(np.uint8)
    raise ImageError(f"{path}: unsupported pixel type {samples.dtype}; re-export it as 8- or 16-bit")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Repeat an HxW uint8 channel into HxWx3."""
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


def _composite_on_white(color: np.ndarray, alpha: np.ndarray, premultiplied: bool) -> np.ndarray:
    """Composite HxWx3 uint8 colour with HxW uint8 alpha over a white background."""
    color16 = color.astype(np.uint16)
    background = (255 - alpha.astype(np.uint16))[..., np.newaxis]
    if premultiplied:
        return np.minimum(color16 + background, 255).astype(np.uint8)
    alpha16 = alpha.astype(np.uint16)[..., np.newaxis]
    return ((color16 * alpha16 + 255 * background + 127) // 255).astype(np.uint8)


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse zero-sized images and images with more pixels than allowed, before decoding."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{path}: image has zero size ({width}x{height}); {_CORRUPT_HINT}")
    if width * height > max_pixels:
        raise _too_many_pixels_error(path, width * height, max_pixels)


def _too_many_pixels_error(path: Path, pixel_count: int | None, max_pixels: int) -> ImageError:
    """Build the error for an image above the pixel limit."""
    size = f"{pixel_count} pixels" if pixel_count is not None else "too many pixels"
    return ImageError(
        f"{path}: image has {size}, more than the limit of {max_pixels}; "
        "if the image is genuine, raise patches.max_image_pixels in params.yaml"
    )


def _pixel_count_from_pillow(message: str) -> int | None:
    """Read the pixel count out of Pillow's decompression-bomb message."""
    match = re.search(r"\((\d+) pixels\)", message)
    return int(match.group(1)) if match else None


def _corrupt_error(path: Path, error: BaseException) -> ImageError:
    """Build the error for a file that fails to decode."""
    reason = " ".join(str(error).split()) or type(error).__name__
    return ImageError(f"{path}: corrupt or truncated image ({reason}); {_CORRUPT_HINT}")


def _describe_content(head: bytes) -> str:
    """Name what the first bytes of a file look like: an allowed format name or a short description."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF image"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "PostScript/EPS document"
    if head.startswith(b"%PDF"):
        return "PDF document"
    if head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP image"
    if head[4:8] == b"ftyp":
        return "HEIC/AVIF or other ISO media file"
    if head[128:132] == b"DICM":
        return "DICOM file"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        return "ZIP or gzip archive"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    if text.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in text:
        return "HTML page"
    if text.startswith(("<?xml", "<svg")):
        return "SVG/XML document"
    printable = sum(character != "\ufffd" and (character.isprintable() or character in "\t\r\n") for character in text)
    if b"\x00" not in head and printable >= 0.95 * max(len(text), 1):
        return "text file"
    return f"unrecognised data starting {head[:8].hex(' ')}"
