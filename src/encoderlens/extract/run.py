"""Batched extraction of embeddings and attention maps from one model over one image list.

The embeddings come from one forward pass per batch; the maps are those of every map method that
applies to the model's family (`attention.methods`), each computed from that forward pass or in a
pass of its own, and stored under the method's dataset, shape and dtype.

Each batch's arrays go to a shard as soon as they are computed (see `shards`); once every batch is
done the shards are gathered into `embeddings.h5` and `attention.h5` and removed. A killed run resumes
at the first missing batch, and because batches always hold the same images in the same order the
resumed files equal an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from encoderlens import __version__
from encoderlens.attention.methods import ForwardPass, MapMethod, method_class, methods_for
from encoderlens.data.images import as_rgb
from encoderlens.extract.h5 import atomic_h5, create_per_image, set_attributes, write_ids
from encoderlens.extract.shards import ShardStore
from encoderlens.models.base import FamilyAdapter


@dataclass
class ExtractionSettings:
    batch_size: int = 8
    attention_layers: str | list[int] = "all"
    embedding_layers: list[int] = field(default_factory=list)
    rollout_start_layer: int = 0
    rollout_head_fusion: str = "mean"
    num_workers: int = 0
    device: str = "auto"
    precision: str = "fp32"
    gradcam_target_class: int | None = None  # None: each image's own top class
    map_methods: str | list[str] | None = None  # None: each family's default methods; "all"; or names
    ig_steps: int = 32
    ig_baseline: str = "mean"
    # rollout_*, gradcam_* and ig_* are read by those map methods


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_layers(spec: str | Sequence[int], num_layers: int) -> list[int]:
    """'all', or indices (negative counts from the end), as sorted unique non-negative indices."""
    if spec == "all":
        return list(range(num_layers))
    resolved = set()
    for index in spec:
        if not -num_layers <= index < num_layers:
            raise ValueError(f"layer {index} does not exist: the model has {num_layers} layers")
        resolved.add(index % num_layers)
    return sorted(resolved)


def settings_sha256(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class ImageFiles(Dataset):
    def __init__(self, paths: Sequence[str], preprocess: Callable[[Image.Image], torch.Tensor]):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.preprocess(as_rgb(image))


def extract(ids: Sequence[str], paths: Sequence[str], adapter: FamilyAdapter,
            embeddings_path: str | Path, attention_path: str | Path,
            settings: ExtractionSettings, attributes: dict, log=sys.stderr) -> None:
    """Write both HDF5 files for `ids` (whose images lie at `paths`), resuming earlier shards."""
    if len(ids) != len(paths) or len(set(ids)) != len(ids):
        raise ValueError("ids must be unique and match paths one to one")
    info = adapter.info
    attention_layers = resolve_layers(settings.attention_layers, info.num_layers) if info.num_layers else []
    embedding_layers = resolve_layers(settings.embedding_layers, info.num_layers) if info.num_layers else []
    attributes = {
        **attributes,
        "family": info.family, "image_size": info.image_size, "patch_size": info.patch_size,
        "grid_h": info.grid_h, "grid_w": info.grid_w, "n_prefix_tokens": info.n_prefix_tokens,
        "encoderlens_version": __version__,
    }
    fingerprint = {
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "settings": asdict(settings) | {"device": None, "num_workers": None},
        "attributes": {k: v for k, v in attributes.items() if k != "encoderlens_version"},
    }
    shards = ShardStore(Path(embeddings_path).parent / ".extract_shards", fingerprint)
    batches_done = shards.open()

    device = resolve_device(settings.device)
    adapter.to(device)
    first_image = batches_done * settings.batch_size
    loader = DataLoader(ImageFiles(paths[first_image:], adapter.preprocess),
                        batch_size=settings.batch_size, shuffle=False,
                        num_workers=settings.num_workers)
    n_batches = -(-len(ids) // settings.batch_size)
    if batches_done:
        print(f"resuming after {batches_done} of {n_batches} finished batches", file=log)
    progress = tqdm(loader, total=n_batches, initial=batches_done, file=log, mininterval=5,
                    desc=f"{attributes.get('model', info.family)}", unit="batch")
    methods = [method(adapter, settings, attention_layers)
               for method in methods_for(adapter.traits, settings.map_methods)]
    for batch_index, pixels in enumerate(progress, start=batches_done):
        pixels = pixels.to(device)
        arrays, forward = _encode_batch(adapter, pixels, settings, embedding_layers,
                                        attentions=any(m.needs_attentions for m in methods))
        for method in methods:
            arrays[MAP_PREFIX + method.name] = _checked(method, method.compute(forward), len(pixels))
        shards.write(batch_index, arrays)

    _gather(shards, n_batches, list(ids), embeddings_path, attention_path, attributes,
            attention_layers, embedding_layers)
    shards.remove()


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return nullcontext()


def _encode_batch(adapter: FamilyAdapter, pixels: torch.Tensor, settings: ExtractionSettings,
                  embedding_layers: list[int], attentions: bool) -> tuple[dict[str, np.ndarray], ForwardPass]:
    """The batch's embeddings, and its forward pass for the map methods."""
    info = adapter.info
    with torch.no_grad(), _autocast(pixels.device, settings.precision):
        output = adapter.encode(pixels, attentions=attentions, hidden_states=bool(embedding_layers))
    arrays = {"cls": _numpy(output.cls), "mean": _numpy(output.mean)}
    if output.cls_raw is not None:
        arrays["cls_raw"] = _numpy(output.cls_raw)
    if embedding_layers:
        states = output.hidden_states
        if len(states) == info.num_layers + 1:  # HF puts the patch-embedding output first
            states = states[1:]
        for layer in embedding_layers:
            tokens = _numpy(states[layer])
            arrays[f"layer_{layer}"] = tokens[:, 0] if info.has_cls else tokens[:, info.n_prefix_tokens:].mean(1)
    return arrays, ForwardPass(pixels, output)


def _checked(method: MapMethod, maps: np.ndarray, n_images: int) -> np.ndarray:
    expected = (n_images, *method.shape())
    if tuple(maps.shape) != expected:
        raise RuntimeError(f"{method.name} maps have shape {tuple(maps.shape)}, expected {expected}")
    return maps


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


EMBEDDINGS = ("cls", "mean", "cls_raw")  # pooled embeddings, stored under their own names
MAP_PREFIX = "att_"  # shard key of a map method's maps: the prefix and the method's name


def _layout(key: str):
    """Shard key -> (file, dataset name in the file, dtype on disk)."""
    if key.startswith(MAP_PREFIX):
        method = method_class(key.removeprefix(MAP_PREFIX))
        return "attention", method.dataset, method.dtype
    if key.startswith("layer_"):
        return "embeddings", f"layers/{key.removeprefix('layer_')}", np.float32
    if key in EMBEDDINGS:
        return "embeddings", key, np.float32
    raise KeyError(f"shard key {key!r} is neither an embedding nor a map method's")


def _gather(shards: ShardStore, n_batches: int, ids: list[str], embeddings_path, attention_path,
            attributes: dict, attention_layers: list[int], embedding_layers: list[int]) -> None:
    n_images = len(ids)
    with atomic_h5(embeddings_path) as embeddings, atomic_h5(attention_path) as attention:
        files = {"embeddings": embeddings, "attention": attention}
        for handle in files.values():
            write_ids(handle, ids)
            set_attributes(handle, attributes)
        attention.create_dataset("layers", data=np.array(attention_layers, dtype=np.int64))
        embeddings.attrs["embedding_layers"] = np.array(embedding_layers, dtype=np.int64)
        datasets = {}
        row = 0
        for batch_index in range(n_batches):
            arrays = shards.read(batch_index)
            for key, values in arrays.items():
                if key not in datasets:
                    file, name, dtype = _layout(key)
                    datasets[key] = create_per_image(files[file], name, n_images, values.shape[1:], dtype)
                datasets[key][row:row + len(values)] = values
            row += len(next(iter(arrays.values())))
        if row != n_images:
            raise RuntimeError(f"shards hold {row} images, expected {n_images}")
