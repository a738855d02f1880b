"""One extraction job: a manifest and a model folder in, embeddings.h5 and attention.h5 out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from encoderlens.attention.targets import ExplainedScalar
from encoderlens.extract.gather import select_images
from encoderlens.extract.h5 import atomic_h5, write_ids
from encoderlens.extract.run import ExtractionSettings, extract, settings_sha256
from encoderlens.models.hub import PROVENANCE
from encoderlens.models.registry import load_adapter
from encoderlens.models.tuned import apply_tuned_weights


def resolved_revision(model_folder) -> str | None:
    """The commit a hub snapshot resolved its revision to (recorded by the snapshot), if known."""
    stamp = Path(model_folder) / PROVENANCE
    return json.loads(stamp.read_text())["commit"] if stamp.exists() else None


def extraction_settings(settings: dict, threads: int = 1) -> ExtractionSettings:
    rollout = settings.get("rollout", {})
    return ExtractionSettings(
        batch_size=settings["batch_size"],
        attention_layers=settings["attention_layers"],
        embedding_layers=list(settings["embedding_layers"]),
        rollout_start_layer=rollout.get("start_layer", 0),
        rollout_head_fusion=rollout.get("head_fusion", "mean"),
        num_workers=settings["num_workers"],
        threads=threads,
        decode=settings.get("decode", "cpu"),
        device=settings["device"],
        precision=settings["precision"],
        gradcam_target_class=settings.get("gradcam_target_class"),
        map_methods=settings.get("map_methods"),
        ig_steps=settings.get("ig", {}).get("steps", ExtractionSettings.ig_steps),
        ig_baseline=settings.get("ig", {}).get("baseline", ExtractionSettings.ig_baseline),
    )


def write_empty_chunk(embeddings_path, attention_path) -> None:
    for path in (embeddings_path, attention_path):
        with atomic_h5(path) as handle:
            write_ids(handle, [])


def extract_manifest(manifest_path, model_folder, identity: dict, settings: dict,
                     embeddings_path, attention_path, threads: int = 1, variant: str = "frozen",
                     tuned_folder=None, splits: list[str] | None = None,
                     rows: tuple[int, int | None] | None = None) -> None:
    """Extract one model (with a fine-tuned variant's weights from `tuned_folder`, if given), over the
    manifest's images or, when `splits` is given, over those of the named splits (manifest order).

    `rows` = (start, stop) extracts one chunk: those rows of that image list (stop None: to its end).
    The files are stamped exactly as a whole extraction's, so the chunks gathered in order
    (`encoderlens.extract.gather`) equal it. A chunk that starts past the end (the dataset's declared
    size overstated its manifest) writes files with no images, which the gather skips."""
    torch.set_num_threads(max(1, threads))
    manifest = select_images(manifest_path, splits)
    if rows is not None:
        start, stop = rows
        print(f"chunk: rows {start} to {'the end' if stop is None else stop} of {len(manifest)}",
              file=sys.stderr)
        manifest = manifest.iloc[start:stop]
        if manifest.empty:
            print(f"{manifest_path}: no images from row {start} on; this chunk is empty", file=sys.stderr)
            write_empty_chunk(embeddings_path, attention_path)
            return
    adapter = load_adapter(identity["family"], model_folder, image_size=settings.get("image_size"))
    applied = "none"
    if tuned_folder is not None:
        model, applied = apply_tuned_weights(adapter.model, tuned_folder)
        adapter.model = model.eval()
    attributes = {
        "model": identity["model"],
        "model_id": identity["model_id"] or "",
        "revision": resolved_revision(model_folder) or identity["revision"] or "",
        "revision_requested": identity["revision"] or "",
        "config_sha256": settings_sha256(settings),
        "variant": variant,
        "tuned_weights": applied,
        "images": "all" if splits is None else "|".join(splits),
    }
    print(f"{len(manifest)} images, model {identity['model']} ({identity['family']}) "
          f"from {model_folder}, variant {variant} (tuned weights: {applied})", file=sys.stderr)
    target = ExplainedScalar.for_variant(tuned_folder)  # a variant with a head explains its class
    extract(manifest["image_id"].astype(str).tolist(), manifest["path"].tolist(), adapter,
            embeddings_path, attention_path, extraction_settings(settings, threads), attributes,
            target=target)
