"""Image file checks shared by the readers: a bad file becomes a skip record, not a crashed job."""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError


def image_problem(path, decode: bool = True) -> str | None:
    """None if `path` is an image that decodes completely, else a short reason.

    `decode=False` only checks that the file exists and is non-empty: for very large real datasets
    where a full decode of every file costs too long (the extraction step still fails loudly later).
    """
    if not os.path.isfile(path):
        return "missing image file"
    if not decode:
        return None if os.path.getsize(path) > 0 else "unreadable image: empty file"
    try:
        with Image.open(path) as image:
            # open() only reads the header; load() decodes every pixel, which is what finds a file
            # cut short by an interrupted download.
            image.load()
    except UnidentifiedImageError as error:
        return f"unreadable image: {error}"
    except OSError as error:
        if "truncated" in str(error).lower():
            return "truncated image"
        return f"unreadable image: {error}"
    except Exception as error:  # a corrupt file can raise nearly anything inside a decoder
        return f"unreadable image: {type(error).__name__}: {error}"
    return None


def save_jpeg(image, path, quality: int = 90) -> None:
    """Save a PIL image or an (H, W, 3) uint8 array as a baseline JPEG.

    Fixed settings (no optimize pass, no EXIF) so the same pixels always give the same bytes.
    """
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image.astype("uint8"))
    image.save(path, format="JPEG", quality=quality)
