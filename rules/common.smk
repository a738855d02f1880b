# The only place that reads the config: validation, wildcard constraints, input functions and the
# list of final targets. Every value a job uses reaches it through params built from its wildcards.

import json

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

DATASETS = config["datasets"]
MODELS = config["models"]
VARIANTS = ["frozen"]


def _check_model_references():
    for dataset, entry in DATASETS.items():
        unknown = [m for m in entry["models"] if m not in MODELS]
        if unknown:
            raise ValueError(
                f"config: datasets.{dataset}.models names {unknown}, which are not keys of models: "
                f"{sorted(MODELS)}"
            )


_check_model_references()


def _alternatives(names):
    return "|".join(sorted(names)) or "__none__"


DOWNLOADERS = {"osv5m": "Hugging Face dataset", "wikichurches": "Zenodo"}


def _check_dataset_sources():
    for dataset, entry in DATASETS.items():
        if entry["source"] == "download" and entry["format"] not in DOWNLOADERS:
            raise ValueError(
                f"config: datasets.{dataset}: format {entry['format']!r} has no download source; "
                f"use source: local with a path (downloadable formats: {sorted(DOWNLOADERS)})"
            )


_check_dataset_sources()


def _datasets_from(source, dataset_format=None):
    return [name for name, entry in DATASETS.items()
            if entry["source"] == source and dataset_format in (None, entry["format"])]


SYNTHETIC_DATASETS = _datasets_from("synthetic")
OSV5M_DOWNLOADS = _datasets_from("download", "osv5m")
WIKICHURCHES_DOWNLOADS = _datasets_from("download", "wikichurches")
TINY_MODELS = [name for name, entry in MODELS.items() if entry["source"] == "tiny"]
HUB_MODELS = [name for name, entry in MODELS.items() if entry["source"] == "hub"]


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    variant=_alternatives(VARIANTS),


# ---- datasets ----------------------------------------------------------------------------------
def dataset_folder(wildcards):
    entry = DATASETS[wildcards.dataset]
    if entry["source"] == "local":
        return entry["path"]
    return f"resources/datasets/{wildcards.dataset}"


def synthetic_params(wildcards):
    entry = DATASETS[wildcards.dataset]
    return {"format": entry["format"], **entry["synthetic"]}


def osv5m_download_params(wildcards):
    settings = DATASETS[wildcards.dataset]["download"]
    keys = ("repo_id", "revision", "shards", "sample_count", "sample_seed", "stratify")
    return {key: settings[key] for key in keys}


def wikichurches_download_params(wildcards):
    settings = DATASETS[wildcards.dataset]["download"]
    keys = ("base_url", "api_url", "checksums", "images", "keep_archive")
    return {key: settings[key] for key in keys}


def dataset_format(wildcards):
    return DATASETS[wildcards.dataset]["format"]


# ---- models ------------------------------------------------------------------------------------
def model_folder(wildcards):
    entry = MODELS[wildcards.model]
    if entry["source"] == "local":
        return entry["path"]
    return f"resources/models/{wildcards.model}"


def tiny_params(wildcards):
    entry = MODELS[wildcards.model]
    return {"family": entry["family"], **entry["tiny"]}


def hub_params(wildcards):
    entry = MODELS[wildcards.model]
    return {"family": entry["family"], "hub_id": entry["hub_id"], "revision": entry["revision"]}


def model_identity(wildcards):
    """What the HDF5 attributes record about where the weights came from."""
    entry = MODELS[wildcards.model]
    model_id = {"tiny": "tiny", "hub": entry.get("hub_id"), "local": entry.get("path")}[entry["source"]]
    return {
        "model": wildcards.model,
        "family": entry["family"],
        "model_id": model_id,
        "revision": entry["revision"] if entry["source"] == "hub" else "",
    }


EXTRACTION_KEYS = ("image_size", "batch_size", "num_workers", "device", "precision",
                   "attention_layers", "embedding_layers", "rollout", "gradcam_target_class")


def extraction_params(wildcards):
    entry = MODELS[wildcards.model]
    settings = {key: entry[key] for key in EXTRACTION_KEYS}
    if entry["source"] == "tiny":
        settings["tiny"] = entry["tiny"]  # a rebuilt tiny model is a different model
    return settings


def extraction_threads(wildcards):
    return MODELS[wildcards.model]["threads"]


def extraction_gpus(wildcards):
    """GPU jobs hold the `gpu` resource the profile caps; a model pinned to the CPU holds none."""
    return 0 if MODELS[wildcards.model]["device"] == "cpu" else 1


# ---- targets -----------------------------------------------------------------------------------
def extraction_targets():
    return [
        f"results/{dataset}/{model}/{variant}/{name}.h5"
        for dataset, entry in DATASETS.items()
        for model in entry["models"]
        for variant in VARIANTS
        for name in ("embeddings", "attention")
    ]


# ---- alignment ---------------------------------------------------------------------------------
ANNOTATED_FORMATS = ("wikichurches",)
ANNOTATED_DATASETS = [name for name, entry in DATASETS.items() if entry["format"] in ANNOTATED_FORMATS]
ALIGNMENT = config["alignment"]


def alignment_params(wildcards):
    keys = ("thresholds", "analysis_size", "pointing_tolerance", "methods")
    return {key: ALIGNMENT[key] for key in keys}


def baseline_params(wildcards):
    return {
        "baselines": ALIGNMENT["baselines"],
        "size": ALIGNMENT["analysis_size"] or ALIGNMENT["baseline_size"],
        "thresholds": ALIGNMENT["thresholds"],
        "pointing_tolerance": ALIGNMENT["pointing_tolerance"],
        "random_draws": ALIGNMENT["random_draws"],
        "seed": ALIGNMENT["seed"],
    }


def alignment_targets():
    targets = []
    for dataset in ANNOTATED_DATASETS:
        targets += [f"results/{dataset}/baselines/alignment.parquet"]
        targets += [
            f"results/{dataset}/{model}/{variant}/alignment.parquet"
            for model in DATASETS[dataset]["models"]
            for variant in VARIANTS
        ]
    return targets


GEONAMES_PLACES = "resources/geonames/places.parquet"


# ---- street-view studies ------------------------------------------------------------------------
GEO_FORMATS = ("osv5m",)
GEO_DATASETS = [name for name, entry in DATASETS.items() if entry["format"] in GEO_FORMATS]
GEO = config["geo"]


def probe_params(wildcards):
    keys = ("levels", "probe_features", "min_per_class", "test_size", "probe_C", "seed")
    return {key: GEO[key] for key in keys} | {"device": MODELS[wildcards.model]["device"]}


def attention_stats_params(wildcards):
    return {"layers": GEO["attention_layers"]}


def retrieval_params(wildcards):
    keys = ("retrieval_features", "query_fraction", "knn_k", "geometry_pairs", "distance_bins_km",
            "gallery_size", "gallery_seeds", "gallery_groups", "seed")
    return {key: GEO[key] for key in keys}


def _has_cls_attention(model):
    return MODELS[model]["family"] in ("dinov2", "dinov3", "mae", "clip")


def geo_targets():
    targets = []
    for dataset in GEO_DATASETS:
        for model in DATASETS[dataset]["models"]:
            folder = f"results/{dataset}/{model}/frozen"
            targets += [f"results/{dataset}/{model}/probes.parquet", f"{folder}/knn.parquet"]
            if _has_cls_attention(model):
                targets.append(f"{folder}/attention_stats.parquet")
    return targets


def geonames_params(wildcards):
    return dict(config["geonames"])


def all_targets():
    manifests = [f"results/{dataset}/manifest.parquet" for dataset in DATASETS]
    return ([GEONAMES_PLACES] + manifests + extraction_targets() + alignment_targets()
            + geo_targets())
