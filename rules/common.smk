# The only place that reads the config: validation, wildcard constraints, input functions and the
# list of final targets. Every value a job uses reaches it through params built from its wildcards.

from snakemake.utils import validate

from encoderlens.attention.methods import methods_for
from encoderlens.models.families import family_traits

validate(config, schema="../schemas/config.schema.yaml")

DATASETS = config["datasets"]
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
    """The names of the map methods extraction stores for the model's family."""
    return [method.name for method in methods_for(MODELS[model]["family"])]


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


# ---- fine-tuned variants -----------------------------------------------------------------------
def variants_of(dataset, model):
    """The variants extracted for one dataset and model: frozen, plus the ones configured for them."""
    variants = ["frozen"]
    if DATASETS[dataset]["format"] in GEO_FORMATS and model in CALIBRATED_MODELS:
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
            for variant in variants_of(dataset, model)
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


def geo_targets():
    targets = []
    for dataset in GEO_DATASETS:
        for model in DATASETS[dataset]["models"]:
            folder = f"results/{dataset}/{model}/frozen"
            targets += [f"results/{dataset}/{model}/probes.parquet", f"{folder}/knn.parquet"]
            if "cls" in map_methods_of(model):  # the statistics read CLS attention
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
                 "last_blocks", "weight_decay", "warmup_fraction", "grad_clip", "patience", "lora", "seed")


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
    return {"classes": FINETUNE["classes"], "seed": FINETUNE["seed"], **FINETUNE["style_probe"]}


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
    return ([GEONAMES_PLACES] + manifests + extraction_targets() + alignment_targets()
            + geo_targets() + dashboard_targets() + finetune_targets() + caption_targets()
            + figure_targets() + stats_targets())


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
        }
    return {
        "annotated": annotated,
        "geo": {dataset: list(DATASETS[dataset]["models"]) for dataset in GEO_DATASETS},
        "captions": [dataset for dataset in CAPTION_DATASETS if _caption_distributions(dataset)],
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
        inputs += [path for path in [_stats_summary(dataset)] if path]
    for dataset in GEO_DATASETS:
        for model in DATASETS[dataset]["models"]:
            inputs += [f"results/{dataset}/{model}/probes.parquet",
                       f"results/{dataset}/{model}/frozen/knn.parquet",
                       f"results/{dataset}/{model}/frozen/geometry.parquet"]
    inputs += [path for path in map(_caption_distributions, CAPTION_DATASETS) if path]
    return inputs
