"""A cost model users can plan with: per-image cost of each stage, and projected wall time and disk.

    python benchmarks/cost_model.py measure     # measures the missing rows -> benchmarks/cost_model.json
    python benchmarks/cost_model.py project     # the projection table from cost_model.json (markdown)

`measure` times, on this machine, what RESULTS.md had no figure for: the input path alone (JPEG decode
+ resize + normalise at OSV-5M's image size, one core, the adapter's own preprocess), the bytes per
image of embeddings.h5 (the real per-image layout and compression, random float32 rows) and the gather
of a chunked extraction (`encoderlens.extract.gather`, ViT-L/14-336 last-layer shapes). The other
per-image costs are figures already measured here, each quoted with its source in MEASURED_ELSEWHERE.
`project` combines them with the assumptions in ASSUMPTIONS (stated in its output) for OSV-5M's test
and train splits and the WikiChurches preset, on this 2-core machine, one GPU node, and 16 GPU nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
MEASURED = HERE / "cost_model.json"

# Per-image figures measured earlier on this machine (2 cores), with where they are recorded.
MEASURED_ELSEWHERE = {
    "extract_cpu_vitb16_s": {
        "value": 1 / 4.10, "unit": "s per image, 2 threads, whole job (decode .. HDF5)",
        "source": "RESULTS.md, Extraction throughput: ViT-B/16-sized, 4.10 img/s",
        "reproduce": "python benchmarks/extraction_throughput.py --hidden 768 --heads 12 --workers 0"},
    "extract_cpu_vitl14_336_s": {
        "value": 2.1, "unit": "s per image, 2 threads, model forward (batch 4)",
        "source": "/work/shared/FACTS.md: ViT-L/14-336 about 2.1 s per image on 2 threads",
        "reproduce": "python benchmarks/extraction_throughput.py --hidden 1024 --heads 16 --layers 24 --image-size 336 --patch 14 --batch 4"},
    "attention_bytes_vitb16_all_layers": {
        "value": 39_265, "unit": "bytes per image on disk (12x12 CLS maps + rollout, gzip)",
        "source": "RESULTS.md, attention.h5 size per image", "reproduce": "python benchmarks/extraction_throughput.py"},
    "attention_bytes_vitl14_last_layer": {
        "value": 11 * 1024, "unit": "bytes per image on disk (last layer's 16 CLS maps, gzip)",
        "source": "/work/shared/FACTS.md: ViT-L last layer only about 11 KB", "reproduce": "-"},
    "scoring_s_per_map": {
        "value": 153e-6, "unit": "s per (image, map) pair, one core",
        "source": "RESULTS.md, Alignment scoring: 153 us per map unpreempted",
        "reproduce": "python benchmarks/alignment_throughput.py"},
    "probe_s_per_row_class_eval": {
        "value": 4.0 / (32_000 * 2_000), "unit": "s per training row x class x objective evaluation, 1,024-d, 2 threads",
        "source": "RESULTS.md, Linear probe solver: one objective + gradient 3.8-4.1 s at 32,000 x 1,024, 2,000 classes",
        "reproduce": "python benchmarks/probe_speed.py"},
    "knn_flops_per_s_per_core": {
        "value": 80e9, "unit": "float32 flop/s per core, exact search",
        "source": "RESULTS.md, kNN search: about 80 GFLOP/s per core",
        "reproduce": "python benchmarks/knn_speed.py"},
}

ASSUMPTIONS = {
    "cpu_cores": 2,
    "gpu_node": "1 GPU (H100-class) + 8 CPU cores, the node of issue 16",
    "gpu_bf16_flops": 200e12,  # sustained bf16 on ViT inference: ~20% of an H100's 989 TFLOP/s dense peak
    "gpu_fp32_flops": 25e12,   # sustained fp32/TF32 GEMM for probes and exact kNN (faiss-gpu)
    "gflop_per_image": {"vitb16_224": 35, "vitl14_336": 382},  # FACTS.md
    "probe_evaluations": 100,  # objective evaluations per L-BFGS fit (48 iterations measured at tol 1e-5)
    "probe_fits_per_model": "4 levels x 3 feature sets (geo.levels, geo.probe_features defaults)",
    "osv5m_classes": {"country": 210, "region": 2_600, "sub-region": 13_000, "city": 70_000},
    "knn_query_fraction": 0.2,
    "image_bytes": {"osv5m": 259e9 / 5_104_807, "wikichurches": 200 * 1024},
    "image_copies": 2,  # the download cache keeps the zips beside the unpacked images
    "nodes": 16,
}

# What each study runs per image (the presets).
WORKLOADS = {
    "osv5m test (210,122)": {"images": 210_122, "models": 2, "arch": "vitl14_336", "chunk": 50_000,
                             "geo": True, "dim": 768, "probe_dim": 1024, "scored": 0},
    "osv5m train (4,894,685)": {"images": 4_894_685, "models": 2, "arch": "vitl14_336", "chunk": 50_000,
                                "geo": True, "dim": 768, "probe_dim": 1024, "scored": 0},
    "WikiChurches preset (4,790)": {"images": 4_790, "models": 6, "arch": "vitb16_224", "chunk": None,
                                    "geo": False, "scored": 139, "maps_per_image": 12 * 13 + 3},
}


# ---- measure -------------------------------------------------------------------------------------
def measure_input_path(folder: Path, n: int = 40) -> float:
    """Seconds per image on one core: decode a 792 x 512 JPEG (OSV-5M's average size) and preprocess
    it at 336 px with the CLIP adapter's own preprocess."""
    import torch
    from PIL import Image

    from encoderlens.data.images import as_rgb
    from encoderlens.models.registry import build_tiny, load_adapter

    torch.set_num_threads(1)
    build_tiny("clip", folder / "clip", seed=0)
    adapter = load_adapter("clip", folder / "clip", image_size=336)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(n):
        # smooth content with noise: closer to a photo's JPEG size than pure noise
        base = np.linspace(0, 255, 792)[None, :, None] * np.ones((512, 1, 3))
        pixels = np.clip(base + rng.normal(0, 20, size=(512, 792, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{index}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    best = math.inf
    for _ in range(3):  # CPU time of this process: what one core spends, whatever else shares it
        start = time.process_time()
        for path in paths:
            with Image.open(path) as image:
                adapter.preprocess(as_rgb(image))
        best = min(best, (time.process_time() - start) / n)
    return best


def embedding_shapes(arch: str) -> dict[str, int]:
    # CLIP-style: projected CLS, mean patch token, raw CLS, and the last layer's CLS (/layers/-1)
    if arch == "vitl14_336":
        return {"cls": 768, "mean": 1024, "cls_raw": 1024, "layers/23": 1024}
    return {"cls": 512, "mean": 768, "cls_raw": 768}


def measure_embedding_bytes(folder: Path, arch: str, n: int = 2_000) -> float:
    import h5py

    from encoderlens.extract.h5 import create_per_image

    rng = np.random.default_rng(0)
    path = folder / f"embeddings_{arch}.h5"
    with h5py.File(path, "w") as handle:
        for name, dim in embedding_shapes(arch).items():
            create_per_image(handle, name, n, (dim,), np.float32)[:] = rng.normal(size=(n, dim)).astype(np.float32)
    return path.stat().st_size / n


def measure_gather(folder: Path, rows_per_chunk: int = 2_000, chunks: int = 3) -> float:
    """Seconds per image of gathering chunk files of ViT-L/14-336 last-layer shapes."""
    import h5py

    from encoderlens.extract.gather import gather_chunks
    from encoderlens.extract.h5 import atomic_h5, create_per_image, write_ids

    rng = np.random.default_rng(0)
    paths, ids = [], []
    for chunk in range(chunks):
        chunk_ids = [f"{chunk}_{row}" for row in range(rows_per_chunk)]
        ids += chunk_ids
        path = folder / f"chunk{chunk}.h5"
        with atomic_h5(path) as handle:
            write_ids(handle, chunk_ids)
            handle.create_dataset("layers", data=np.array([23]))
            create_per_image(handle, "cls", rows_per_chunk, (1, 16, 24, 24), np.float16)[:] = \
                rng.random((rows_per_chunk, 1, 16, 24, 24), dtype=np.float32).astype(np.float16)
            create_per_image(handle, "rollout", rows_per_chunk, (24, 24), np.float32)[:] = \
                rng.random((rows_per_chunk, 24, 24), dtype=np.float32)
        paths.append(path)
    start = time.process_time()  # CPU time (the copy is CPU-bound on a local disk)
    gather_chunks(paths, folder / "gathered.h5", ids, log=open("/dev/null", "w"))
    seconds = (time.process_time() - start) / len(ids)
    with h5py.File(folder / "gathered.h5") as handle:
        assert handle["cls"].shape[0] == len(ids)
    return seconds


def measure() -> dict:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = {
            "input_path_s_per_image_core": measure_input_path(folder),
            "embedding_bytes_vitl14_336": measure_embedding_bytes(folder, "vitl14_336"),
            "embedding_bytes_vitb16_224": measure_embedding_bytes(folder, "vitb16_224"),
            "gather_s_per_image": measure_gather(folder),
            "load_average": os.getloadavg()[0],
            "measured_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        }
    MEASURED.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---- project -------------------------------------------------------------------------------------
def stage_seconds(work: dict, measured: dict, machine: str) -> dict[str, float]:
    """Wall seconds per stage of one workload on `machine` (cpu, gpu1, gpu16)."""
    a, m = ASSUMPTIONS, {k: v["value"] for k, v in MEASURED_ELSEWHERE.items()} | measured
    n, models = work["images"], work["models"]
    decode = m["input_path_s_per_image_core"]
    if machine == "cpu":
        per_image = (m["extract_cpu_vitl14_336_s"] + decode / a["cpu_cores"] if work["arch"] == "vitl14_336"
                     else m["extract_cpu_vitb16_s"])  # the ViT-B row is the whole job, decode included
        extraction = per_image * n * models
    else:
        model_rate = a["gpu_bf16_flops"] / (a["gflop_per_image"][work["arch"]] * 1e9)
        input_rate = 8 / decode  # the node's 8 cores decoding
        per_job = n / min(model_rate, input_rate)
        jobs_per_model = math.ceil(n / work["chunk"]) if work["chunk"] else 1
        if machine == "gpu1":
            extraction = per_job * models
        else:  # chunks spread over the nodes in waves; a wave lasts one chunk
            waves = math.ceil(jobs_per_model * models / a["nodes"])
            extraction = waves * per_job / jobs_per_model
    stages = {"extraction": extraction}
    if work["chunk"]:  # models gathered side by side on a cluster, one after another on one machine
        gathers = models if machine != "gpu16" else 1
        stages["gather"] = m["gather_s_per_image"] * n * gathers
    if work["scored"]:
        scoring = m["scoring_s_per_map"] * work["scored"] * work["maps_per_image"] * models
        stages["scoring"] = scoring / (a["cpu_cores"] if machine == "cpu" else 8)
    if work["geo"]:
        train_rows = n * 0.8
        fits = sum(a["osv5m_classes"].values()) * 3  # 3 feature sets per level
        row_class_evals = train_rows * fits * a["probe_evaluations"] * work["probe_dim"] / 1024
        queries, gallery = n * a["knn_query_fraction"], n * (1 - a["knn_query_fraction"])
        knn_flops = 2 * queries * gallery * work["dim"]
        if machine == "cpu":
            stages["probes"] = row_class_evals * m["probe_s_per_row_class_eval"] * models
            stages["knn"] = knn_flops / (m["knn_flops_per_s_per_core"] * a["cpu_cores"]) * models
        else:  # 4 flop per row x class x feature per evaluation (two GEMMs); per model in parallel on 16
            parallel = models if machine == "gpu16" else 1
            stages["probes"] = 4 * row_class_evals * 1024 / a["gpu_fp32_flops"] * models / parallel
            stages["knn"] = knn_flops / a["gpu_fp32_flops"] * models / parallel
    return stages


def disk_bytes(work: dict, measured: dict) -> dict[str, float]:
    a, m = ASSUMPTIONS, {k: v["value"] for k, v in MEASURED_ELSEWHERE.items()} | measured
    n = work["images"]
    kind = "osv5m" if work["geo"] else "wikichurches"
    if work["arch"] == "vitl14_336":
        per_model = m["embedding_bytes_vitl14_336"] + m["attention_bytes_vitl14_last_layer"]
    else:
        per_model = m["embedding_bytes_vitb16_224"] + m["attention_bytes_vitb16_all_layers"]
    outputs = per_model * n * work["models"]
    return {"images": a["image_bytes"][kind] * a["image_copies"] * n, "outputs": outputs,
            # chunks are removed after their gather; on a cluster every model's chunks can be there at once
            "peak_extra": outputs if work["chunk"] else 0.0}


def human_time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def project(measured: dict) -> str:
    lines = ["| workload | machine | " + " | ".join(
        ["extraction", "gather", "scoring", "probes", "kNN", "total"]) + " | disk (images + outputs, peak) |",
             "|---|---|" + "---|" * 7]
    names = {"cpu": "this machine (2 cores)", "gpu1": "1 GPU node", "gpu16": "16 GPU nodes"}
    for label, work in WORKLOADS.items():
        disk = disk_bytes(work, measured)
        for machine, name in names.items():
            stages = stage_seconds(work, measured, machine)
            cells = [human_time(stages[key]) if key in stages else "-"
                     for key in ("extraction", "gather", "scoring", "probes", "knn")]
            total = human_time(sum(stages.values()))
            gb = (disk["images"] + disk["outputs"]) / 1e9
            peak = (disk["images"] + disk["outputs"] + disk["peak_extra"]) / 1e9
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {total} | "
                         f"{gb:,.1f} GB ({disk['images'] / 1e9:,.1f} + {disk['outputs'] / 1e9:,.1f}), peak {peak:,.1f} GB |")
    return "\n".join(lines)


def per_image_table(measured: dict) -> str:
    rows = ["| stage | per-image cost | source |", "|---|---|---|"]
    for key, entry in MEASURED_ELSEWHERE.items():
        rows.append(f"| {key} | {entry['value']:.3g} {entry['unit']} | {entry['source']} |")
    for key in ("input_path_s_per_image_core", "embedding_bytes_vitl14_336", "embedding_bytes_vitb16_224",
                "gather_s_per_image"):
        rows.append(f"| {key} | {measured[key]:.3g} | `python benchmarks/cost_model.py measure` "
                    f"({measured['measured_utc']} UTC, load {measured['load_average']:.0f}) |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["measure", "project"])
    args = parser.parse_args()
    if args.command == "measure":
        print(json.dumps(measure(), indent=2))
        return
    measured = json.loads(MEASURED.read_text())
    print(per_image_table(measured))
    print()
    print(project(measured))
    print()
    print("Assumptions: " + json.dumps(ASSUMPTIONS))


if __name__ == "__main__":
    sys.exit(main())
