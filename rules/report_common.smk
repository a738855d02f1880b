# Config look-ups, inputs and targets of the figure rules (rules/report.smk), kept apart from the
# rules as in common.smk; only those rules use them.

FIGURES = config["figures"]

FIGURE_TITLES = {
    "leaderboard": "Leaderboard",
    "iou_by_layer": "IoU by layer",
    "threshold_sensitivity": "Threshold sensitivity",
    "head_feature": "Heads x building parts",
    "attention_overlays": "Attention overlays",
    "delta_iou": "Fine-tuning: change in IoU",
    "probe_accuracy": "Probe accuracy",
    "cosine_distance": "Cosine vs distance",
    "geoscore": "GeoScore distribution",
    "gallery": "Gallery",
    "caption_continents": "Caption continents",
    "regional_world": "Regional bias: world",
    "regional_continents": "Regional bias: continents",
    "cka": "Representation similarity (CKA)",
    "failure_gallery": "Failure gallery",
    "plausibility_faithfulness": "Plausibility vs faithfulness",
}


def _check_figure_threshold():
    chosen = FIGURES["threshold"]
    if chosen is not None and float(chosen) not in [float(t) for t in ALIGNMENT["thresholds"]]:
        raise ValueError(f"config: figures.threshold {chosen} is not one of alignment.thresholds "
                         f"{ALIGNMENT['thresholds']}")


_check_figure_threshold()


def figure_threshold():
    """figures.threshold, or the middle of alignment.thresholds when it is null."""
    if FIGURES["threshold"] is not None:
        return float(FIGURES["threshold"])
    values = sorted(float(t) for t in ALIGNMENT["thresholds"])
    return values[(len(values) - 1) // 2]


def figure_outputs(key, name, kind):
    """Named outputs {key}_png, _svg, _data, _caption of one figure; PNG and CSV go in the report."""
    stem = f"results/figures/{{dataset}}/{name}"
    placement = dict(category="{dataset}", subcategory=FIGURE_TITLES[kind])
    labels = {"figure": name.replace("_", " ")}
    return {
        f"{key}_png": report(f"{stem}.png", caption=f"../report/{kind}.rst", **placement,
                             labels=labels | {"file": "figure"}),
        f"{key}_svg": f"{stem}.svg",
        f"{key}_data": report(f"{stem}.csv", caption="../report/figure_data.rst", **placement,
                              labels=labels | {"file": "numbers drawn (csv)"}),
        f"{key}_caption": f"{stem}.txt",
    }


def _producible(path):
    """Whether this workflow can make `path`; the statistics, caption and fine-tuning stages land
    separately, and a figure waits for its stage."""
    return any(rule.is_producer(path) for rule in workflow.rules)


def _tuned_variants(dataset, model):
    return [v for v in variants_of(dataset, model) if v in STYLE_STRATEGIES]


def _models_with_variant(dataset, variant):
    return [m for m in DATASETS[dataset]["models"] if variant in variants_of(dataset, m)]


def _alignment_variants(dataset):
    return list(dict.fromkeys(v for m in DATASETS[dataset]["models"] for v in variants_of(dataset, m)))


def _tuned_models(dataset):
    return [m for m in DATASETS[dataset]["models"] if _tuned_variants(dataset, m)]


# ---- inputs and params -------------------------------------------------------------------------
def alignment_map_figure_inputs(wildcards):
    models = _models_with_variant(wildcards.dataset, wildcards.variant)
    folder = f"results/{wildcards.dataset}/{{model}}/{wildcards.variant}"
    return {
        "alignment": [f"{folder}/alignment.parquet".format(model=m) for m in models],
        "features": [f"{folder}/alignment_features.parquet".format(model=m) for m in models],
        "attention": [f"{folder}/attention.h5".format(model=m) for m in models],
        "manifest": f"results/{wildcards.dataset}/manifest.parquet",
        "annotations": f"results/{wildcards.dataset}/annotations.parquet",
    }


def alignment_figure_params(wildcards):
    return {"threshold": figure_threshold(), "layer_rule": FIGURES["layer"],
            "overlay_methods": FIGURES["overlay_methods"], "dpi": FIGURES["dpi"],
            "min_n": STATS["min_n"]}


def alignment_map_figure_params(wildcards):
    return alignment_figure_params(wildcards) | {
        "models": _models_with_variant(wildcards.dataset, wildcards.variant)}


def delta_iou_figure_inputs(wildcards):
    return [f"results/{wildcards.dataset}/{m}/finetune/delta_iou.parquet"
            for m in _tuned_models(wildcards.dataset)]


def _geo_entries(dataset):
    return [(m, v) for m in DATASETS[dataset]["models"] for v in variants_of(dataset, m)]


def geo_figure_inputs(wildcards):
    dataset = wildcards.dataset
    entries = _geo_entries(dataset)
    first = DATASETS[dataset]["models"][0]
    return {
        "probes": [f"results/{dataset}/{m}/probes.parquet" for m in DATASETS[dataset]["models"]],
        "predictions": [f"results/{dataset}/{m}/{v}/knn_predictions.parquet" for m, v in entries],
        "gallery": [f"results/{dataset}/{m}/{v}/gallery.parquet" for m, v in entries],
        "geometry_bins": [f"results/{dataset}/{m}/{v}/geometry_bins.parquet" for m, v in entries],
        "embeddings": [f"results/{dataset}/{m}/{v}/embeddings.h5" for m, v in entries],
        # group sizes depend on the manifest alone: every model's table is the same
        "groups": f"results/{dataset}/{first}/frozen/gallery_groups.parquet",
        "manifest": f"results/{dataset}/manifest.parquet",
    }


def geo_figure_params(wildcards):
    return {
        "models": DATASETS[wildcards.dataset]["models"],
        "entries": [list(entry) for entry in _geo_entries(wildcards.dataset)],
        "geometry": {"n_pairs": GEO["geometry_pairs"], "seed": GEO["seed"],
                     "bins_km": GEO["distance_bins_km"]},
        "hexbin_gridsize": FIGURES["hexbin_gridsize"],
        "dpi": FIGURES["dpi"],
    }


def geo_depth_figure_inputs(wildcards):
    dataset = wildcards.dataset
    return {"regional": f"results/{dataset}/geo/regional.parquet", "cka": f"results/{dataset}/geo/cka.parquet",
            "failures": f"results/{dataset}/geo/failures.parquet",
            "manifest": f"results/{dataset}/manifest.parquet",
            "attention": [f"results/{dataset}/{model}/frozen/attention.h5" for model in DATASETS[dataset]["models"]]}


def geo_depth_figure_params(wildcards):
    return {"models": DATASETS[wildcards.dataset]["models"], "dpi": FIGURES["dpi"],
            **PRIMARY_RETRIEVAL}


def caption_figure_params(wildcards):
    return {"dpi": FIGURES["dpi"], "continent_scheme": CAPTIONS["continent_scheme"]}


# ---- targets -----------------------------------------------------------------------------------
def _figure_pngs(dataset, names):
    return [f"results/figures/{dataset}/{name}.png" for name in names]


def figure_targets():
    targets = []
    for dataset in ANNOTATED_DATASETS:
        if _producible(f"results/stats/{dataset}/alignment_summary.parquet"):
            targets += _figure_pngs(dataset, ["leaderboard", "iou_by_layer", "threshold_sensitivity"])
        for variant in _alignment_variants(dataset):
            targets += _figure_pngs(dataset, [f"head_feature_{variant}", f"attention_overlays_{variant}"])
        tuned = _tuned_models(dataset)
        if tuned and all(_producible(f"results/{dataset}/{m}/finetune/delta_iou.parquet") for m in tuned):
            targets += _figure_pngs(dataset, ["delta_iou"])
        if dataset in FAITHFULNESS_DATASETS:
            targets += _figure_pngs(dataset, ["plausibility_faithfulness"])
    for dataset in GEO_DATASETS:
        targets += _figure_pngs(dataset, ["probe_accuracy", "cosine_distance", "geoscore", "gallery"])
        if GEO["depth"]["enabled"] and DATASETS[dataset]["models"]:
            targets += _figure_pngs(dataset, ["regional_world", "regional_continents", "cka", "failure_gallery"])
    for dataset in CAPTION_DATASETS:
        if _producible(f"results/{dataset}/captions/distributions.parquet"):
            targets += _figure_pngs(dataset, ["caption_continents"])
    return targets


# ---- headline tables and the summary ---------------------------------------------------------------
# The tables each study publishes (the library's encoderlens.report.summary.STUDIES makes them from the
# study's outputs, and checks these names): results/tables/{dataset}/{name}.csv (tidy copy), .html (in
# the report) and one index per study, results/tables/{dataset}/{study}.json, that the summary reads.
STUDY_TABLES = {
    "alignment": ("leaderboard", "model_comparisons", "variant_comparisons", "head_specialisation"),
    "finetune": ("finetune",),
    "style_probe": ("style_probe",),
    "geo": ("probes", "knn"),
    "geo_depth": ("geo_model_pairs", "regional_continents", "geo_failures"),
    "planted": ("planted",),
    "faithfulness": ("faithfulness",),
    "calibration": ("calibration",),
    "captions": ("caption_accuracy", "caption_unknown", "caption_diversity"),
}
TABLE_SUBCATEGORY = {  # a table sits next to the figure that draws it in the report
    "leaderboard": "Leaderboard", "model_comparisons": "Statistics", "variant_comparisons": "Statistics",
    "head_specialisation": "Heads x building parts", "finetune": "Fine-tuning: change in IoU",
    "style_probe": "Style probe", "probes": "Probe accuracy", "knn": "GeoScore distribution",
    "calibration": "Distance calibration", "caption_accuracy": "Caption accuracy",
    "geo_model_pairs": "Representation similarity (CKA)", "regional_continents": "Regional bias: continents",
    "planted": "Regional bias: world", "geo_failures": "Failure gallery",
    "caption_unknown": "Caption continents", "caption_diversity": "Caption diversity",
    "faithfulness": "Plausibility vs faithfulness",
}


def table_outputs(study):
    """Named outputs {name}_csv, {name}_html of the study's tables (HTML and CSV in the report) and index."""
    outputs = {"index": f"results/tables/{{dataset}}/{study}.json"}
    for name in STUDY_TABLES[study]:
        stem = f"results/tables/{{dataset}}/{name}"
        placement = dict(category="{dataset}", subcategory=TABLE_SUBCATEGORY[name])
        labels = {"table": name.replace("_", " ")}
        outputs[f"{name}_html"] = report(f"{stem}.html", caption="../report/headline_table.rst", **placement,
                                         labels=labels | {"file": "table"})
        outputs[f"{name}_csv"] = report(f"{stem}.csv", caption="../report/headline_table.rst", **placement,
                                        labels=labels | {"file": "table (csv)"})
    return outputs


def _table_settings(dataset):
    return {"dataset": dataset, "threshold": figure_threshold(), "layer_rule": FIGURES["layer"],
            "alpha": STATS["alpha"]}


def alignment_table_params(wildcards):
    return _table_settings(wildcards.dataset)


def finetune_table_inputs(wildcards):
    dataset = wildcards.dataset
    inputs = {"metrics": [f"results/{dataset}/{m}/finetune/{v}/metrics.json"
                          for m in _tuned_models(dataset) for v in _tuned_variants(dataset, m)]}
    variants = f"results/stats/{dataset}/variant_comparisons.parquet"
    if _producible(variants):
        inputs["variants"] = variants
    return inputs


def style_probe_table_inputs(wildcards):
    return {"probes": [f"results/{wildcards.dataset}/{m}/style_probe.parquet"
                       for m in DATASETS[wildcards.dataset]["models"]]}


def geo_table_inputs(wildcards):
    dataset = wildcards.dataset
    return {"probes": [f"results/{dataset}/{m}/probes.parquet" for m in DATASETS[dataset]["models"]],
            "knn": [f"results/{dataset}/{m}/{v}/knn.parquet" for m, v in _geo_entries(dataset)]}


def geo_depth_table_inputs(wildcards):
    folder = f"results/{wildcards.dataset}/geo"
    return {"model_comparisons": f"{folder}/model_comparisons.parquet", "regional": f"{folder}/regional.parquet",
            "failures": f"{folder}/failures.parquet"}


def faithfulness_table_inputs(wildcards):
    folder = f"results/stats/{wildcards.dataset}"
    return {"plausibility": f"{folder}/plausibility_faithfulness.parquet",
            "comparisons": f"{folder}/faithfulness_comparisons.parquet"}


def planted_table_inputs(wildcards):
    return {"planted": f"results/{wildcards.dataset}/geo/planted.parquet"}


def _calibrated_models(dataset):
    return [m for m in DATASETS[dataset]["models"] if CALIBRATED in variants_of(dataset, m)]


def calibration_table_inputs(wildcards):
    return {"calibration": [f"results/{wildcards.dataset}/{m}/calibration.parquet"
                            for m in _calibrated_models(wildcards.dataset)]}


def calibration_table_params(wildcards):
    return _table_settings(wildcards.dataset) | {"variant": CALIBRATED}


def _study_datasets():
    """study -> the datasets it ran on (those whose study outputs this workflow makes)."""
    annotated = [d for d in ANNOTATED_DATASETS
                 if _producible(f"results/stats/{d}/alignment_summary.parquet")]
    return {
        "alignment": [d for d in annotated
                      if _producible(f"results/stats/{d}/head_specialisation.parquet")],
        "finetune": [d for d in ANNOTATED_DATASETS if _tuned_models(d)],
        "style_probe": [d for d in ANNOTATED_DATASETS if FINETUNE["style_probe"]["enabled"]],
        "geo": list(GEO_DATASETS),
        "geo_depth": [d for d in GEO_DATASETS if GEO["depth"]["enabled"] and DATASETS[d]["models"]],
        "planted": [d for d in PLANTED_DATASETS if DATASETS[d]["models"]],
        "faithfulness": list(FAITHFULNESS_DATASETS),
        "calibration": [d for d in GEO_DATASETS if _calibrated_models(d)],
        "captions": [d for d in CAPTION_DATASETS
                     if _producible(f"results/{d}/captions/evaluation.parquet")],
    }


def summary_inputs(wildcards):
    """Every study's table index, dataset by dataset in the config's order."""
    studies = _study_datasets()
    return [f"results/tables/{dataset}/{study}.json"
            for dataset in DATASETS for study, datasets in studies.items() if dataset in datasets]


def summary_targets():
    return ["results/summary.md", "results/summary.html"]
