"""Image files as every part of encoderlens sees them: checked once by the readers, decoded the same way
by the models, the baselines, the figures and the dashboard.

Pixels as stored. No EXIF rotation is applied anywhere: the expert boxes of WikiChurches are fractions
of the pixel grid as stored (its users' loaders open the files without rotating them), so rotating
would move the pixels away from their boxes. The manifest records each image's EXIF Orientation tag
(`exif_orientation`, 1 when absent) so the rotated ones can be counted and looked at.

8-bit RGB for every Pillow mode a file can hold (`to_rgb`), never a silent clip:
- RGB as is; 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX through Pillow's `convert("RGB")` (8-bit already);
- an alpha channel (LA, PA, RGBA, La, RGBa) or a transparency key composited onto white, as
  transformers' `convert_to_rgb` does;
- 16-bit grey (I;16, I;16B, I;16L, I;16N, what a 16-bit PNG or TIFF opens as) scaled to 8 bits by
  its high byte, as Pillow itself reduces a 48-bit RGB PNG; `convert("RGB")` would clip everything
  above 255 to white;
- 32-bit integer grey (I) with values in 0..65535 as 16-bit; float grey (F) with values in [0, 1]
  times 255; other values have no defined scale and the image is skipped with a record.
The manifest records the stored mode (`image_mode`) and the conversion applied (`pixel_conversion`,
"" for RGB).

An image over Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`) is skipped with a
record naming the limit, rather than warned about or refused later by every job that opens it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

EXIF_ORIENTATION = 0x0112
ALPHA_MODES = ("LA", "PA", "RGBA", "La", "RGBa")
PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}
PLAIN_MODES = ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
PIXEL_COLUMNS = ["exif_orientation", "image_mode", "pixel_conversion"]


class PixelConversionError(ValueError):
    """An image whose pixels have no defined conversion to 8-bit RGB."""


@dataclass(frozen=True)
class ImageCheck:
    problem: str | None  # None: usable
    mode: str = ""
    orientation: int = 1
    conversion: str = ""


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def conversion_note(image: Image.Image) -> str:
    """What `to_rgb` does to an image of this mode ("" for RGB); raises for a mode it cannot convert."""
    mode = image.mode
    if _has_alpha(image):
        return f"{mode}: alpha composited on white"
    if mode == "RGB":
        return ""
    if mode in PLAIN_MODES:
        return f"{mode} -> RGB"
    if mode in SIXTEEN_BIT_MODES:
        return f"{mode}: 16-bit grey scaled to 8 bits (high byte)"
    if mode == "I":
        return "I: 32-bit integer grey in 0..65535 scaled to 8 bits (high byte)"
    if mode == "F":
        return "F: float grey in [0, 1] scaled to 8 bits (x 255, rounded)"
    raise PixelConversionError(f"pixel mode {mode} has no defined conversion to 8-bit RGB")


def _grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8)).convert("RGB")


def to_rgb(image: Image.Image) -> tuple[Image.Image, str]:
    """(8-bit RGB image, the conversion note); raises PixelConversionError where none is defined."""
    note = conversion_note(image)
    mode = image.mode
    if mode == "RGB" and not note:
        return image, note
    if _has_alpha(image):
        if mode in PREMULTIPLIED:
            image = image.convert(PREMULTIPLIED[mode])
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), note
    if mode in PLAIN_MODES:
        return image.convert("RGB"), note
    values = np.asarray(image)
    if mode in SIXTEEN_BIT_MODES:
        return _grey(values.astype(np.uint16) >> 8), note
    if mode == "I":
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise PixelConversionError(f"32-bit integer pixels span {low}..{high}, outside 0..65535: "
                                       "no defined scale to 8 bits")
        return _grey(values.astype(np.uint16) >> 8), note
    values = values.astype(np.float64)  # F
    if not np.isfinite(values).all():
        raise PixelConversionError("float pixels include NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 1:
        raise PixelConversionError(f"float pixels span {low:g}..{high:g}, outside [0, 1]: "
                                   "no defined scale to 8 bits")
    return _grey(np.rint(values * 255)), note


def as_rgb(image: Image.Image) -> Image.Image:
    """`to_rgb` without the note: what every decoder hands on (models, baselines, figures, dashboard)."""
    return to_rgb(image)[0]


def exif_orientation(image: Image.Image) -> int:
    """The EXIF Orientation tag (1 = as stored, also when absent or unreadable)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
        return int(value)
    except Exception:  # a malformed EXIF block must not cost the image
        return 1


def bomb_limit_reason(error: Exception | None = None) -> str:
    detail = f": {error}" if error else ""
    return (f"image over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
            f"(PIL.Image.MAX_IMAGE_PIXELS){detail}")


_REMEMBERED: dict | None = None


@contextlib.contextmanager
def remembered_checks():
    """Within the block, `check_image` keeps its results by path (a reader's checks, reused for the
    manifest's pixel columns without opening every file twice)."""
    global _REMEMBERED
    outer, _REMEMBERED = _REMEMBERED, {}
    try:
        yield _REMEMBERED
    finally:
        _REMEMBERED = outer


def check_image(path, decode: bool = True) -> ImageCheck:
    """Whether `path` is a usable image, its mode, EXIF orientation and the conversion `to_rgb` applies.

    `decode=False` reads only the header (size, mode, EXIF) and skips the full decode that finds a
    file cut short: for very large datasets (the extraction step still fails loudly later).
    """
    check = _check_image(path, decode)
    if _REMEMBERED is not None:
        _REMEMBERED[str(path)] = check
    return check


def _check_image(path, decode: bool) -> ImageCheck:
    if not os.path.isfile(path):
        return ImageCheck("missing image file")
    if os.path.getsize(path) == 0:
        return ImageCheck("unreadable image: empty file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between the limit and twice the limit: make both a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                mode, orientation = image.mode, exif_orientation(image)
                if decode or mode in ("I", "F"):  # the value range decides I and F
                    # open() only reads the header; load() decodes every pixel, which is what finds a
                    # file cut short by an interrupted download.
                    image.load()
                    _, note = to_rgb(image)
                else:
                    note = conversion_note(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return ImageCheck(bomb_limit_reason(error))
    except PixelConversionError as error:
        return ImageCheck(f"unconvertible pixels: {error}")
    except UnidentifiedImageError as error:
        return ImageCheck(f"unreadable image: {error}")
    except OSError as error:
        if "truncated" in str(error).lower():
            return ImageCheck("truncated image")
        return ImageCheck(f"unreadable image: {error}")
    except Exception as error:  # a corrupt file can raise nearly anything inside a decoder
        return ImageCheck(f"unreadable image: {type(error).__name__}: {error}")
    return ImageCheck(None, mode, orientation, note)


def image_problem(path, decode: bool = True) -> str | None:
    """None if `path` is a usable image (see `check_image`), else a short reason."""
    return check_image(path, decode).problem


def add_pixel_columns(manifest, remembered: dict | None = None):
    """The manifest with `exif_orientation`, `image_mode` and `pixel_conversion` (from the readers'
    remembered checks where there are any, else from each file's header)."""
    remembered = remembered or {}
    checks = [remembered.get(str(path)) or check_image(path, decode=False) for path in manifest["path"]]
    return manifest.assign(exif_orientation=[int(c.orientation) for c in checks],
                           image_mode=[c.mode for c in checks],
                           pixel_conversion=[c.conversion for c in checks])


def pixel_summary(manifest) -> str:
    """One log line: images stored rotated (EXIF) and images converted, by mode."""
    rotated = int((manifest["exif_orientation"] != 1).sum())
    converted = manifest.loc[manifest["pixel_conversion"] != "", "image_mode"].value_counts()
    modes = ", ".join(f"{mode} {n}" for mode, n in converted.items()) or "none"
    return (f"{rotated} of {len(manifest)} images carry an EXIF Orientation other than 1 (used as "
            f"stored, not rotated); converted to 8-bit RGB by mode: {modes}")


def save_jpeg(image, path, quality: int = 90) -> None:
    """Save a PIL image or an (H, W, 3) uint8 array as a baseline JPEG.

    Fixed settings (no optimize pass, no EXIF) so the same pixels always give the same bytes.
    """
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image.astype("uint8"))
    image.save(path, format="JPEG", quality=quality)
