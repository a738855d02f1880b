"""The input path of extraction: image files -> batches of preprocessed pixels on the model's device.

`decode: cpu` (the default): the loader workers open each file with Pillow, convert it to RGB
(`data.images.as_rgb`) and resize it to the model's square (`FamilyAdapter.preprocess`).

`decode: gpu`: the workers only read the bytes of each JPEG whose pixels are RGB or greyscale; the
main process decodes the batch with nvjpeg (`torchvision.io.decode_jpeg(device=...)`) and resizes it
on the device (bicubic with antialiasing, rounded to 8 bits as Pillow does, then normalised). Any other
file (PNG, CMYK JPEG, ...) and any JPEG nvjpeg refuses goes through the Pillow path, so every image is
decoded one way or the other. EXIF orientation is not applied on either path (the manifest records it).
The two paths differ by decoder and resampling rounding (tests: a few 8-bit levels at most); `decode`
is part of the extraction settings, so switching it reruns the extraction. Without CUDA, `gpu` falls
back to `cpu` with a log line.

`num_workers: auto` picks the loader processes from the job's cores: on CUDA the model runs on the
GPU and decoding is the limit, so every core but the main process's decodes (threads - 1); on the
CPU the model is the limit (a ViT-B/16 image costs about 1 s of one core against 35 ms to decode), so
the main process decodes between batches (0 workers).
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from encoderlens.data.images import as_rgb

JPEG_MODES = ("RGB", "L")  # what nvjpeg decodes to RGB like Pillow's conversion does


def loader_workers(num_workers: int | str, threads: int, device: torch.device) -> int:
    if num_workers != "auto":
        return int(num_workers)
    return max(0, threads - 1) if device.type == "cuda" else 0


def decode_on(decode: str, device: torch.device, log=sys.stderr) -> str:
    """The decode setting in effect: gpu only where the model runs on CUDA."""
    if decode == "gpu" and device.type != "cuda":
        print(f"decode: gpu needs a CUDA device, the model runs on {device}: decoding on the CPU "
              f"(Pillow) instead", file=log)
        return "cpu"
    return decode


class ImageFiles(Dataset):
    def __init__(self, paths: Sequence[str], preprocess: Callable[[Image.Image], torch.Tensor]):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.preprocess(as_rgb(image))


class EncodedFiles(ImageFiles):
    """Items for `decode: gpu`: ("jpeg", the file's bytes) for a JPEG nvjpeg can decode to what
    Pillow would, else ("pixels", the Pillow path's preprocessed tensor)."""

    def __getitem__(self, index: int):
        path = self.paths[index]
        with Image.open(path) as image:  # reads the header only, unless it is not a plain JPEG
            if image.format == "JPEG" and image.mode in JPEG_MODES:
                with open(path, "rb") as handle:
                    return "jpeg", torch.frombuffer(bytearray(handle.read()), dtype=torch.uint8), index
            return "pixels", self.preprocess(as_rgb(image)), index

    def preprocess_cpu(self, index: int) -> torch.Tensor:
        return ImageFiles.__getitem__(self, index)


def collate_encoded(items):
    return list(items)


class DevicePreprocess:
    """Batches of `EncodedFiles` items -> (B, 3, S, S) pixels on `device`, in the items' order."""

    def __init__(self, dataset: EncodedFiles, size: int, mean: torch.Tensor, std: torch.Tensor,
                 device: torch.device):
        self.dataset, self.size, self.device = dataset, size, device
        self.mean = mean.to(device).view(1, 3, 1, 1)
        self.std = std.to(device).view(1, 3, 1, 1)

    def __call__(self, items) -> torch.Tensor:
        pixels: list[torch.Tensor | None] = [None] * len(items)
        jpegs = [(slot, data) for slot, (kind, data, _) in enumerate(items) if kind == "jpeg"]
        decoded = self.decode([data for _, data in jpegs])
        for (slot, _), image in zip(jpegs, decoded):
            if image is not None:
                pixels[slot] = self.resize(image)
        for slot, (kind, data, index) in enumerate(items):
            if kind == "pixels":
                pixels[slot] = data.to(self.device)
            elif pixels[slot] is None:  # nvjpeg refused it: Pillow decodes it
                pixels[slot] = self.dataset.preprocess_cpu(index).to(self.device)
        return torch.stack(pixels)

    def decode(self, data: list[torch.Tensor]) -> list[torch.Tensor | None]:
        from torchvision.io import ImageReadMode, decode_jpeg
        if not data:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its decoders for torchcodec
            try:
                return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                decoded = []
                for one in data:  # find the one(s) it refuses
                    try:
                        decoded.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=self.device))
                    except RuntimeError:
                        decoded.append(None)
                return decoded

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, h, w) uint8 -> (3, S, S) normalised float, as `FamilyAdapter.preprocess` does it."""
        resized = torch.nn.functional.interpolate(image[None].float(), size=(self.size, self.size),
                                                  mode="bicubic", antialias=True, align_corners=False)
        resized = resized.clamp_(0, 255).round_() / 255.0
        return ((resized - self.mean) / self.std)[0]
