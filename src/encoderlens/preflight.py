"""Checks before a long run: disk, tokens for gated models, a GPU where the CPU would take days.

`run_checks(plan)` turns what the config asks for (datasets with their image counts, models with their
source and device) into rows of a short table. A row fails only where the run would certainly fail
later (a gated checkpoint still to download and no token anywhere; less free disk than the downloads
alone need); everything uncertain is a warning. Sizes are estimates with a stated basis (see the
constants below); nothing is downloaded or asked of a server.

The plan (built by the workflow from the config):

    {"root": ".",                                       # the folder results/ and resources/ live in
     "datasets": {name: {"images": int, "source": str, "format": str, "models": [model, ...],
                         "passes": {model: int},         # extraction passes: variants per model
                         "forwards": {model: float}}},   # a pass per image in forward passes (maps)
     "models": {name: {"source": str, "hub_id": str | None, "family": str, "device": str,
                       "all_layers": bool, "folder": "resources/models/<name>"}},
     "seconds_per_image": {"gpu": float, "cpu": float}}  # extraction cost of a ViT-B/16
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GB = 1024 ** 3
MB = 1024 ** 2

# Hub checkpoints a user must accept a licence for before the download works (a token is needed).
GATED_HUB_IDS = (re.compile(r"^facebook/dinov3-"),)

# Checkpoint download sizes: fp32 parameters x 4 bytes (model cards' parameter counts, whole
# checkpoint: text towers included for CLIP/SigLIP, the decoder for MAE).
HUB_PARAMETERS_M = (
    (re.compile(r"^facebook/dinov2-with-registers-base"), 86),
    (re.compile(r"^facebook/dinov2-base"), 86),
    (re.compile(r"^facebook/dinov3-vitb16"), 86),
    (re.compile(r"^facebook/vit-mae-base"), 112),
    (re.compile(r"^openai/clip-vit-base-patch16"), 150),
    (re.compile(r"^openai/clip-vit-large-patch14"), 428),
    (re.compile(r"^geolocal/StreetCLIP$"), 428),
    (re.compile(r"^google/siglip2?-base-patch16"), 375),
    (re.compile(r"^timm/resnet50"), 26),
)
# ViT-L/14 at 336 px costs about 11x the FLOPs of ViT-B/16 at 224 px (382 vs 35 GFLOP per image)
LARGE_MODEL = re.compile(r"large|StreetCLIP", re.IGNORECASE)
LARGE_MODEL_COST = 11.0

# Per image: a downloaded street-view/photo JPEG; per image and extraction pass: attention.h5 and
# embeddings.h5 of a ViT-B/16 with every layer's maps kept (benchmarks/RESULTS.md: 39 KB compressed
# maps + 2 x 768 float32 embeddings), or the last layer's only
IMAGE_BYTES = 200 * 1024
OUTPUT_BYTES_ALL_LAYERS = 48 * 1024
OUTPUT_BYTES_LAST_LAYER = 16 * 1024
# A CPU run longer than this asks for a GPU warning
CPU_WARNING_HOURS = 1.0


@dataclass
class Check:
    name: str
    value: str
    status: str  # ok | warn | fail
    note: str = ""


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / GB:,.1f} GB" if n_bytes >= 0.1 * GB else f"{n_bytes / MB:,.0f} MB"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


def model_download_bytes(hub_id: str | None) -> int | None:
    for pattern, millions in HUB_PARAMETERS_M:
        if hub_id and pattern.search(hub_id):
            return millions * 1_000_000 * 4
    return None


def is_gated(hub_id: str | None) -> bool:
    return any(pattern.search(hub_id or "") for pattern in GATED_HUB_IDS)


def hub_token(environ) -> str | None:
    """The token a download would send: $HF_TOKEN, else the one `hf auth login` stored."""
    if environ.get("HF_TOKEN"):
        return environ["HF_TOKEN"]
    try:
        from huggingface_hub import get_token
    except ImportError:
        return None
    return get_token() or None


def detect_accelerator() -> str | None:
    """'cuda' or 'mps' where `device: auto` would find one, else None (imports torch)."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return None


def run_checks(plan: dict, environ=None, free_bytes: int | None = None,
               accelerator: Callable[[], str | None] = detect_accelerator) -> list[Check]:
    environ = os.environ if environ is None else environ
    root = Path(plan.get("root", "."))
    datasets, models = plan["datasets"], plan["models"]
    checks: list[Check] = []

    # ---- downloads --------------------------------------------------------------------------------
    download, unknown = 0, []
    for name, entry in models.items():
        if entry["source"] != "hub" or Path(root, entry["folder"]).exists():
            continue
        size = model_download_bytes(entry.get("hub_id"))
        if size is None:
            unknown.append(name)
        else:
            download += size
        checks.append(Check(f"download {name}", entry.get("hub_id") or "", "ok",
                            f"≈ {_gib(size)}" if size else "size unknown"))
    for name, entry in datasets.items():
        if entry["source"] != "download" or Path(root, "resources", "datasets", name).exists():
            continue
        size = entry["images"] * IMAGE_BYTES
        download += size
        checks.append(Check(f"download {name}", f"{entry['images']:,} images", "ok",
                            f"≈ {_gib(size)} at {IMAGE_BYTES // 1024} KB per image"))

    # ---- disk -------------------------------------------------------------------------------------
    outputs = 0
    for name, entry in datasets.items():
        for model in entry["models"]:
            per_image = OUTPUT_BYTES_ALL_LAYERS if models[model]["all_layers"] else OUTPUT_BYTES_LAST_LAYER
            outputs += entry["images"] * entry.get("passes", {}).get(model, 1) * per_image
    if free_bytes is None:
        probe = root
        while not probe.exists():
            probe = probe.parent
        free_bytes = shutil.disk_usage(probe).free
    needed = download + outputs
    status = "fail" if free_bytes < download else "warn" if free_bytes < needed else "ok"
    note = {"fail": "the downloads alone do not fit", "warn": "the outputs may not fit",
            "ok": ""}[status]
    if unknown:
        note = (note + "; " if note else "") + f"without {', '.join(unknown)} (size unknown)"
    checks.append(Check("disk", f"≈ {_gib(needed)} needed, {_gib(free_bytes)} free", status, note))

    # ---- tokens -----------------------------------------------------------------------------------
    gated = [name for name, entry in models.items() if entry["source"] == "hub"
             and is_gated(entry.get("hub_id")) and not Path(root, entry["folder"]).exists()]
    if gated:
        has_token = hub_token(environ) is not None
        checks.append(Check("HF_TOKEN", "set" if has_token else "missing", "ok" if has_token else "fail",
                            f"gated: {', '.join(gated)}" + ("" if has_token else
                            " (accept the licence on the hub, then export HF_TOKEN)")))

    # ---- device -----------------------------------------------------------------------------------
    seconds = plan["seconds_per_image"]
    wants_gpu = {name for name, entry in models.items() if entry["device"] in ("auto",) or
                 entry["device"].startswith("cuda")}
    cpu_seconds = gpu_seconds = 0.0
    for name, entry in datasets.items():
        for model in entry["models"]:
            if model in wants_gpu:
                # on a GPU decoding and writing set the pace; on the CPU the model's FLOPs do
                scale = LARGE_MODEL_COST if LARGE_MODEL.search(models[model].get("hub_id") or "") else 1.0
                images = (entry["images"] * entry.get("passes", {}).get(model, 1)
                          * entry.get("forwards", {}).get(model, 1.0))
                cpu_seconds += images * seconds["cpu"] * scale
                gpu_seconds += images * seconds["gpu"]
    pinned = sorted(name for name in wants_gpu if models[name]["device"].startswith("cuda"))
    if cpu_seconds / 3600 >= CPU_WARNING_HOURS or pinned:
        found = accelerator()
        if found:
            checks.append(Check("GPU", found, "ok", f"extraction ≈ {_hours(gpu_seconds)}"))
        else:
            checks.append(Check(
                "GPU", "none", "fail" if pinned else "warn",
                (f"{', '.join(pinned)} pinned to cuda; " if pinned else "") +
                f"device: auto falls back to the CPU, about {cpu_seconds / gpu_seconds:.0f}x slower: "
                f"extraction ≈ {_hours(cpu_seconds)} on the CPU (≈ {_hours(gpu_seconds)} on a GPU)"))
    return checks


def format_table(checks: list[Check]) -> str:
    rows = [("check", "value", "status", "note")] + [(c.name, c.value, c.status.upper(), c.note)
                                                      for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip()
                     for a, b, c, d in rows)


class PreflightError(RuntimeError):
    pass


def preflight(plan: dict, output: str | Path | None = None, **kwargs) -> list[Check]:
    """Run the checks, print the table (and write it to `output`); raise PreflightError listing the
    failed rows, after writing nothing, if any row fails."""
    checks = run_checks(plan, **kwargs)
    table = format_table(checks)
    print(table, flush=True)
    if sys.stderr is not sys.__stdout__:
        print(table, file=sys.stderr, flush=True)  # and into the job's log
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise PreflightError("preflight failed: " + "; ".join(f"{c.name}: {c.value} ({c.note})" for c in failed))
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(table + "\n", encoding="utf-8")
    return checks
