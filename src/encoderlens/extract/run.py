"""Batched extraction of embeddings and attention maps from one model over one image list.

The embeddings come from one forward pass per batch; the maps are those of every map method that
applies to the model's family (`attention.methods`), each computed from that forward pass or in a
pass of its own, and stored under the method's dataset, shape and dtype.

Memory: where the adapter exposes its attention modules and every attention method offers a per-layer
reducer (`attention.methods`), the forward pass runs without `output_attentions` and each layer's
attention is reduced on the device as the layer finishes (the kept CLS rows, mean received vectors,
the rollout's running product); otherwise every layer's attention is returned and the methods read
the full list. Both give the same maps.

Each batch's arrays go to a shard, in the dtype its HDF5 dataset stores, as soon as they are computed
(see `shards`); once every batch is
done the shards are gathered into `embeddings.h5` and `attention.h5` and removed. A killed run resumes
at the first missing batch, and because batches always hold the same images in the same order the
resumed files equal an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from encoderlens import __version__
from encoderlens.attention.methods import (ForwardPass, IntegratedGradients, MapMethod, method_class,
                                          methods_for)
from encoderlens.attention.targets import ExplainedScalar
from encoderlens.extract.h5 import atomic_h5, create_per_image, set_attributes, write_ids
from encoderlens.extract.loading import (DevicePreprocess, EncodedFiles, ImageFiles, collate_encoded,
                                         decode_on, loader_workers)
from encoderlens.extract.shards import ShardStore
from encoderlens.models.base import FamilyAdapter


@dataclass
class ExtractionSettings:
    batch_size: int | str = 8  # or "auto": see `batch_size.auto_batch_size`
    attention_layers: str | list[int] = "all"
    embedding_layers: list[int] = field(default_factory=list)
    rollout_start_layer: int = 0
    rollout_head_fusion: str = "mean"
    num_workers: int | str = 0  # or "auto": see `loading.loader_workers`
    threads: int = 1  # the job's cores (picks num_workers: auto)
    decode: str = "cpu"  # or "gpu": see `loading`
    device: str = "auto"
    precision: str = "fp32"
    gradcam_target_class: int | None = None  # None: each image's own top class
    map_methods: str | list[str] | None = None  # None: each family's default methods; "all"; or names
    ig_steps: int = IntegratedGradients.default_steps
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


def extract(ids: Sequence[str], paths: Sequence[str], adapter: FamilyAdapter,
            embeddings_path: str | Path, attention_path: str | Path,
            settings: ExtractionSettings, attributes: dict, log=sys.stderr,
            target: ExplainedScalar | None = None) -> None:
    """Write both HDF5 files for `ids` (whose images lie at `paths`), resuming earlier shards.
    `target`: the scalar the gradient map methods explain (default: each image's self-similarity),
    recorded as the files' `map_target` attribute."""
    if len(ids) != len(paths) or len(set(ids)) != len(ids):
        raise ValueError("ids must be unique and match paths one to one")
    info = adapter.info
    attention_layers = resolve_layers(settings.attention_layers, info.num_layers) if info.num_layers else []
    embedding_layers = resolve_layers(settings.embedding_layers, info.num_layers) if info.num_layers else []
    attributes = {
        **attributes,
        "family": info.family, "image_size": info.image_size, "patch_size": info.patch_size,
        "grid_h": info.grid_h, "grid_w": info.grid_w, "n_prefix_tokens": info.n_prefix_tokens,
        "encoderlens_version": __version__, "map_target": (target or ExplainedScalar()).name,
    }
    fingerprint = {
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "settings": asdict(settings) | {"device": None, "num_workers": None, "threads": None},
        "attributes": {k: v for k, v in attributes.items() if k != "encoderlens_version"},
    }
    shards = ShardStore(Path(embeddings_path).parent / ".extract_shards", fingerprint)
    batches_done = shards.open()

    device = resolve_device(settings.device)
    adapter.to(device)
    methods = [method(adapter, settings, attention_layers, target)
               for method in methods_for(adapter.traits, settings.map_methods)]
    step = ExtractionStep(adapter, methods, settings, embedding_layers)
    batch_size = _batch_size(settings, step, shards, batches_done, len(ids), log)
    attributes["batch_size"] = batch_size
    first_image = batches_done * batch_size
    workers = loader_workers(settings.num_workers, settings.threads, device)
    if decode_on(settings.decode, device, log) == "gpu":
        files = EncodedFiles(paths[first_image:], adapter.preprocess)
        to_device = DevicePreprocess(files, info.image_size, adapter.mean, adapter.std, device)
        loader = DataLoader(files, batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate_encoded)
    else:
        loader = DataLoader(ImageFiles(paths[first_image:], adapter.preprocess),
                            batch_size=batch_size, shuffle=False, num_workers=workers)
        to_device = lambda pixels: pixels.to(device)  # noqa: E731
    n_batches = -(-len(ids) // batch_size)
    if batches_done:
        print(f"resuming after {batches_done} of {n_batches} finished batches", file=log)
    print(f"attention maps: {'reduced layer by layer' if step.layerwise else 'from every layer at once'}"
          if step.attentions else "attention maps: none from the forward pass", file=log)
    progress = tqdm(loader, total=n_batches, initial=batches_done, file=log, mininterval=5,
                    desc=f"{attributes.get('model', info.family)}", unit="batch")
    for batch_index, pixels in enumerate(progress, start=batches_done):
        shards.write(batch_index, step(to_device(pixels)))

    _gather(shards, n_batches, list(ids), embeddings_path, attention_path, attributes,
            attention_layers, embedding_layers)
    shards.remove()


class ExtractionStep:
    """One batch of pixels -> its arrays (embeddings and every method's maps), each in the dtype its
    HDF5 dataset stores. `layerwise`: the attention methods are fed layer by layer (see the module
    docstring); False falls back to the full list of every layer's attention."""

    def __init__(self, adapter: FamilyAdapter, methods: list[MapMethod], settings: ExtractionSettings,
                 embedding_layers: list[int], layerwise: bool | None = None):
        self.adapter, self.methods, self.settings = adapter, methods, settings
        self.embedding_layers = embedding_layers
        readers = [method for method in methods if method.needs_attentions]
        self.attentions = bool(readers)
        possible = (self.attentions and all(method.reducer() is not None for method in readers)
                    and adapter.attention_modules() is not None)
        if layerwise and not possible:
            raise ValueError(f"{adapter.family}: layer-by-layer attention is not available for this adapter "
                             f"and these methods")
        self.layerwise = possible if layerwise is None else layerwise
        # the stored layers' embeddings from hooks on the blocks too, where they are the layers
        self.layer_hooks = (self.layerwise and bool(embedding_layers)
                            and len(adapter.blocks()) == adapter.info.num_layers)

    def __call__(self, pixels: torch.Tensor) -> dict[str, np.ndarray]:
        if not self.layerwise:
            arrays, forward = _encode_batch(self.adapter, pixels, self.settings, self.embedding_layers,
                                            attentions=self.attentions)
            computed = {method.name: method.compute(forward) for method in self.methods}
        else:
            reducers = {method.name: method.reducer() for method in self.methods if method.needs_attentions}

            def feed(layer: int, attention: torch.Tensor) -> None:
                for reducer in reducers.values():
                    reducer.layer(layer, attention)

            with self.adapter.layer_attentions(feed) as reported:
                arrays, forward = _encode_batch(self.adapter, pixels, self.settings, self.embedding_layers,
                                                attentions=False, layer_hooks=self.layer_hooks)
            expected = list(range(self.adapter.info.num_layers))
            if reported != expected:
                raise RuntimeError(f"{self.adapter.family}: attention reported for layers {reported}, "
                                   f"expected {expected}")
            computed = {}
            for method in self.methods:
                if method.name in reducers:
                    computed[method.name] = reducers[method.name].result().detach().cpu().numpy()
                else:
                    computed[method.name] = method.compute(forward)
        for method in self.methods:
            maps = _checked(method, computed[method.name], len(pixels))
            arrays[MAP_PREFIX + method.name] = maps.astype(method.dtype, copy=False)
        return {key: values.astype(_layout(key)[2], copy=False) for key, values in arrays.items()}


def _batch_size(settings: ExtractionSettings, step: ExtractionStep, shards: ShardStore,
                batches_done: int, n_images: int, log) -> int:
    """The configured batch size, or for "auto" the one the unfinished run used (its shards hold
    batches of that size), else the probe's (`batch_size.auto_batch_size`), recorded with the shards."""
    if settings.batch_size != "auto":
        return int(settings.batch_size)
    recorded = shards.recorded("batch_size")
    if batches_done and recorded:
        print(f"batch_size auto: {recorded}, as the finished shards", file=log)
        return int(recorded)
    from encoderlens.extract.batch_size import auto_batch_size
    size = auto_batch_size(step, n_images, log=log)
    shards.record("batch_size", size)
    return size


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return nullcontext()


def _encode_batch(adapter: FamilyAdapter, pixels: torch.Tensor, settings: ExtractionSettings,
                  embedding_layers: list[int], attentions: bool,
                  layer_hooks: bool = False) -> tuple[dict[str, np.ndarray], ForwardPass]:
    """The batch's embeddings, and its forward pass for the map methods. `layer_hooks`: the stored
    layers' tokens come from hooks on the blocks (see `_layer_tokens`), not from every layer's states."""
    info = adapter.info
    kept: dict[int, torch.Tensor] = {}
    with torch.no_grad(), _autocast(pixels.device, settings.precision), \
            _layer_tokens(adapter, embedding_layers if layer_hooks else [], kept):
        output = adapter.encode(pixels, attentions=attentions,
                                hidden_states=bool(embedding_layers) and not layer_hooks)
    arrays = {"cls": _numpy(output.cls), "mean": _numpy(output.mean)}
    if output.cls_raw is not None:
        arrays["cls_raw"] = _numpy(output.cls_raw)
    if embedding_layers:
        if layer_hooks:
            states = [kept.get(layer) for layer in range(info.num_layers)]
        else:
            states = output.hidden_states
            if len(states) == info.num_layers + 1:  # HF puts the patch-embedding output first
                states = states[1:]
        for layer in embedding_layers:
            tokens = _numpy(states[layer])
            arrays[f"layer_{layer}"] = tokens[:, 0] if info.has_cls else tokens[:, info.n_prefix_tokens:].mean(1)
    return arrays, ForwardPass(pixels, output)


@contextmanager
def _layer_tokens(adapter: FamilyAdapter, layers: list[int], kept: dict[int, torch.Tensor]):
    """Keep the tokens the stored layer embeddings read (the CLS token, or the patch tokens where there
    is none) of `layers` only, from forward hooks on the blocks, instead of every layer's states."""
    blocks = adapter.blocks() if layers else []

    def hook_for(layer: int):
        def hook(_module, _args, output):
            tokens = output[0] if isinstance(output, (tuple, list)) else output
            # a copy, so that the layer's whole (B, T, D) output is not kept alive through a view
            kept[layer] = tokens[:, :1].clone() if adapter.info.has_cls else tokens.detach()
        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        missing = sorted(set(layers) - set(kept))
        if missing and sys.exc_info()[0] is None:
            raise RuntimeError(f"{adapter.family}: blocks {missing} never ran")


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
