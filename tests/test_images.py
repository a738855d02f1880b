"""Pixels as every part sees them: each Pillow mode a file can hold to 8-bit RGB without a silent clip,
EXIF orientation recorded (never applied), Pillow's decompression-bomb limit as a skip record."""

import io
import json
import shutil
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from transformers.image_transforms import convert_to_rgb

from encoderlens.data.formats import read_dataset
from encoderlens.data.images import as_rgb, check_image, pixel_summary, to_rgb
from encoderlens.data.synthetic_churches import write_synthetic_churches

RNG = np.random.default_rng(0)
GREY16 = (RNG.integers(0, 65536, size=(6, 7))).astype(np.uint16)
GREY16[0, :3] = [0, 255, 65535]  # 255 would stay 255 under convert("RGB"): it must become 0


def _png(samples: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 48-bit RGB): grey (0) or RGB (2)."""
    height, width = samples.shape[:2]
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _saved(image: Image.Image, fmt: str, **kw) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    buffer.seek(0)
    return Image.open(buffer)


def _pixels(image):
    rgb, note = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == image.size
    return np.asarray(rgb), note


# ---- high bit depth: scaled, never clipped -----------------------------------------------------
def test_sixteen_bit_grey_png_is_scaled_like_pillows_own_48_bit_reduction():
    grey = Image.open(io.BytesIO(_png(GREY16, 0)))
    assert grey.mode == "I;16"
    clipped = np.asarray(grey.convert("RGB"))
    assert (clipped == 255).mean() > 0.95  # the defect: convert("RGB") turns it white
    pixels, note = _pixels(grey)
    # Pillow reads the same samples as a 48-bit RGB PNG by their high byte: the same 8 bits here.
    rgb48 = Image.open(io.BytesIO(_png(np.repeat(GREY16[..., None], 3, axis=2), 2)))
    assert rgb48.mode == "RGB"
    assert np.array_equal(pixels, np.asarray(rgb48))
    assert np.array_equal(pixels[..., 0], GREY16 >> 8) and pixels[0, :3, 0].tolist() == [0, 0, 255]
    assert note == "I;16: 16-bit grey scaled to 8 bits (high byte)"


@pytest.mark.parametrize("mode, dtype", [("I;16", "<u2"), ("I;16B", ">u2"), ("I;16L", "<u2"),
                                         ("I;16N", "=u2")])
def test_every_sixteen_bit_mode(mode, dtype):
    # from the raw bytes: Pillow's convert() between 16-bit modes clips at 255 too
    image = Image.frombytes(mode, GREY16.shape[::-1], GREY16.astype(dtype).tobytes())
    if mode == "I;16B":
        image = _saved(image, "TIFF")  # what a big-endian 16-bit TIFF opens as
    assert image.mode == mode
    pixels, note = _pixels(image)
    assert np.array_equal(pixels[..., 1], GREY16 >> 8) and note.startswith(f"{mode}: 16-bit grey")


def test_thirty_two_bit_integer_and_float_grey():
    as_int = _saved(Image.fromarray(GREY16.astype(np.int32)), "TIFF")
    assert as_int.mode == "I"
    pixels, note = _pixels(as_int)
    assert np.array_equal(pixels[..., 2], GREY16 >> 8) and note.startswith("I: 32-bit integer")
    unit = (GREY16 / 65535).astype(np.float32)
    as_float = _saved(Image.fromarray(unit), "TIFF")
    assert as_float.mode == "F"
    pixels, note = _pixels(as_float)
    assert np.array_equal(pixels[..., 0], np.rint(unit.astype(np.float64) * 255).astype(np.uint8))
    assert note.startswith("F: float grey in [0, 1]")


@pytest.mark.parametrize("values, reason", [
    (np.array([[-1, 5]], np.int32), "32-bit integer pixels span -1..5, outside 0..65535"),
    (np.array([[0, 70000]], np.int32), "32-bit integer pixels span 0..70000, outside 0..65535"),
    (np.array([[0.0, 2.5]], np.float32), "float pixels span 0..2.5, outside [0, 1]"),
    (np.array([[0.0, np.nan]], np.float32), "float pixels include NaN or infinity"),
])
def test_pixels_without_a_defined_scale_are_skipped_with_a_record(tmp_path, values, reason):
    path = tmp_path / "odd.tif"
    Image.fromarray(values).save(path)
    assert check_image(path).problem == f"unconvertible pixels: {reason}" + (
        ": no defined scale to 8 bits" if "span" in reason else "")
    assert check_image(path, decode=False).problem == check_image(path).problem  # values decide


# ---- alpha and 8-bit modes ----------------------------------------------------------------------
def _alpha_images():
    rgba = Image.fromarray(RNG.integers(0, 256, size=(5, 6, 4), dtype=np.uint8), "RGBA")
    palette = Image.fromarray(RNG.integers(0, 4, size=(5, 6), dtype=np.uint8), "P")
    palette.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200, 90, 90, 90])
    return {
        "RGBA": _saved(rgba, "PNG"),
        "LA": _saved(rgba.convert("LA"), "PNG"),
        "PA": _saved(rgba.convert("PA"), "TIFF"),
        "P+transparency": _saved(palette, "PNG", transparency=1),
        "RGBa": rgba.convert("RGBa"),
        "La": rgba.convert("LA").convert("La"),
    }


@pytest.mark.parametrize("name", ["RGBA", "LA", "PA", "P+transparency"])
def test_alpha_composited_on_white_as_transformers_does(name):
    image = _alpha_images()[name]
    pixels, note = _pixels(image)
    reference = convert_to_rgb(image, return_numpy=True)  # transformers' own RGB conversion
    assert np.array_equal(pixels, reference)
    assert note.endswith("alpha composited on white")


@pytest.mark.parametrize("name", ["RGBa", "La"])
def test_premultiplied_alpha_modes(name):
    image = _alpha_images()[name]
    pixels, note = _pixels(image)
    straight = image.convert("RGBA" if name == "RGBa" else "LA").convert("RGBA")
    assert np.array_equal(pixels, convert_to_rgb(straight, return_numpy=True))
    assert note == f"{name}: alpha composited on white"


def test_a_transparent_pixel_turns_white_an_opaque_one_keeps_its_colour():
    image = Image.new("RGBA", (2, 1))
    image.putpixel((0, 0), (200, 100, 0, 0))
    image.putpixel((1, 0), (200, 100, 0, 255))
    pixels, _ = _pixels(image)
    assert pixels[0].tolist() == [[255, 255, 255], [200, 100, 0]]


@pytest.mark.parametrize("mode, fmt, colour, expected", [
    ("RGB", "JPEG", (10, 200, 30), None),
    ("1", "PNG", 1, (255, 255, 255)),
    ("L", "PNG", 100, (100, 100, 100)),
    ("P", "PNG", None, (200, 10, 10)),
    ("CMYK", "JPEG", (0, 0, 0, 0), (255, 255, 255)),
    ("CMYK", "TIFF", (0, 255, 255, 0), (255, 0, 0)),
    ("YCbCr", "TIFF", (128, 128, 128), (128, 128, 128)),
    ("LAB", "TIFF", (255, 128, 128), (254, 255, 254)),
    ("HSV", None, (0, 255, 255), (255, 0, 0)),
    ("RGBX", None, (1, 2, 3, 0), (1, 2, 3)),
])
def test_eight_bit_modes(mode, fmt, colour, expected):
    if mode == "P":
        image = Image.new("P", (4, 3))
        image.putpalette([200, 10, 10])
    else:
        image = Image.new(mode, (4, 3), colour)
    if fmt:
        image = _saved(image, fmt)
    assert image.mode == mode
    pixels, note = _pixels(image)
    if mode == "RGB":
        assert note == "" and to_rgb(image)[0] is image
        return
    assert note == f"{mode} -> RGB"
    assert np.abs(pixels.astype(int) - expected).max() <= (1 if fmt == "JPEG" else 0)


# ---- EXIF orientation, the decompression-bomb limit, the manifest ---------------------------------
@pytest.fixture(scope="module")
def churches(tmp_path_factory):
    root = tmp_path_factory.mktemp("wc") / "churches"
    write_synthetic_churches(root, n_images=8, seed=0, n_annotated=4)
    return root


def test_manifest_records_orientation_and_conversion_pixels_stay_as_stored(churches, tmp_path):
    root = tmp_path / "churches"
    shutil.copytree(churches, root)
    parts = json.loads((root / "building_parts.json").read_text())["annotations"]
    rotated, grey = list(parts)[0], sorted(p.name for p in (root / "images").iterdir() if p.name not in parts)[0]
    with Image.open(root / "images" / rotated) as image:
        stored = np.asarray(image).copy()
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display"
        image.save(root / "images" / rotated, "JPEG", quality=95, exif=exif)
    (root / "images" / grey).write_bytes(_png(GREY16, 0))  # a 16-bit PNG behind a .jpg name

    result = read_dataset("wikichurches", root)
    manifest = result.manifest.set_index("image_id")
    assert len(result.skipped) == 0
    assert manifest["exif_orientation"].tolist().count(6) == 1
    assert manifest.loc[rotated.removesuffix(".jpg"), "exif_orientation"] == 6
    assert manifest.loc[grey.removesuffix(".jpg"), ["image_mode", "pixel_conversion"]].tolist() == \
        ["I;16", "I;16: 16-bit grey scaled to 8 bits (high byte)"]
    assert "1 of 8 images carry an EXIF Orientation other than 1" in pixel_summary(result.manifest)
    assert "I;16 1" in pixel_summary(result.manifest)
    # no rotation anywhere: the stored grid, which the boxes are fractions of
    with Image.open(root / "images" / rotated) as image:
        assert as_rgb(image).size == (stored.shape[1], stored.shape[0])


def test_every_decoder_sees_the_same_converted_pixels(tmp_path):
    """The models' preprocess, extraction, the baselines, the figures and the dashboard."""
    import torch

    from encoderlens.alignment import job as study
    from encoderlens.extract.run import ImageFiles
    from encoderlens.models.base import FamilyAdapter
    from encoderlens.report.dashboard import _write_images
    from encoderlens.report.figures_overlays import display_image

    path = tmp_path / "grey16.png"
    path.write_bytes(_png(np.kron(GREY16, np.ones((8, 8), np.uint16)), 0))
    with Image.open(path) as image:
        expected = np.asarray(as_rgb(image))
    assert 40 < expected.mean() < 215

    class Info:
        image_size = expected.shape[0]
    adapter = FamilyAdapter.__new__(FamilyAdapter)
    adapter.info, adapter.mean, adapter.std = Info(), torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    square = np.asarray(Image.fromarray(expected).resize((Info.image_size,) * 2, Image.BICUBIC))
    tensor = ImageFiles([str(path)], adapter.preprocess)[0]
    assert np.allclose(tensor.permute(1, 2, 0).numpy() * 255, square, atol=1e-3)

    assert np.array_equal(display_image(path, max_side=1000), expected)

    class Seen(Exception):
        pass

    def capture(name, pixels, *args, **kwargs):
        raise Seen(pixels)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(study, "baseline_maps", capture)
    manifest = pd.DataFrame({"image_id": ["g"], "path": [str(path)]})
    boxes = pd.DataFrame({"image_id": ["g"], "box_id": [0], "feature": ["Window"], "left": [0.1],
                          "top": [0.1], "width": [0.5], "height": [0.5], "clamped": [False]})
    with pytest.raises(Seen) as seen:
        study.score_baselines(manifest, boxes, ["centre"], 16, [0.5], 1.0, 1, 0)
    monkey.undo()
    assert np.array_equal(seen.value.args[0], expected)

    settings = {"display_size": 1000, "thumbnail_size": 16, "jpeg_quality": 95}
    size = _write_images(path, tmp_path / "d.jpg", tmp_path / "t.jpg", settings)
    assert size == (expected.shape[1], expected.shape[0])
    with Image.open(tmp_path / "d.jpg") as shown:
        assert np.abs(np.asarray(shown).astype(int) - expected).mean() < 3  # a JPEG of the same pixels


def test_an_image_over_the_decompression_bomb_limit_is_a_skip_record(churches, tmp_path, monkeypatch):
    root = tmp_path / "churches"
    shutil.copytree(churches, root)
    parts = json.loads((root / "building_parts.json").read_text())["annotations"]
    big = list(parts)[1]
    # A lower limit stands in for Pillow's 89,478,485 pixels: the synthetic images have 192 x 144 =
    # 27,648, under it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 28_000)
    Image.new("RGB", (200, 150)).save(root / "images" / big, "JPEG")  # 30,000: a warning in Pillow
    Image.new("RGB", (400, 150)).save(root / "images" / "huge.jpg", "JPEG")  # 60,000: Pillow's error
    for decode in (True, False):
        for name in (big, "huge.jpg"):
            problem = check_image(root / "images" / name, decode=decode).problem
            assert problem.startswith("image over Pillow's decompression-bomb limit of 28,000 pixels "
                                      "(PIL.Image.MAX_IMAGE_PIXELS)"), problem
    result = read_dataset("wikichurches", root)
    assert result.skipped["row"].tolist() == [big]
    assert result.skipped["reason"].str.contains("decompression-bomb limit of 28,000").all()
    assert big.removesuffix(".jpg") not in set(result.manifest["image_id"])
    assert big.removesuffix(".jpg") not in set(result.annotations["image_id"])


def test_every_format_gets_the_pixel_columns(tmp_path):
    from encoderlens.data.synthetic_captions import write_synthetic_captions
    from encoderlens.data.synthetic_streets import write_synthetic_streets

    write_synthetic_streets(tmp_path / "streets", n_images=6, seed=0)
    write_synthetic_captions(tmp_path / "captions", n_images=6, seed=0)
    for fmt, root in (("osv5m", tmp_path / "streets"), ("captions", tmp_path / "captions")):
        manifest = read_dataset(fmt, root).manifest
        assert manifest[["exif_orientation", "image_mode", "pixel_conversion"]].drop_duplicates() \
            .to_dict("records") == [{"exif_orientation": 1, "image_mode": "RGB", "pixel_conversion": ""}]
