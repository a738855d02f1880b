# Config look-ups of the caption geo-profiling rules (common.smk only lists caption_targets in
# all_targets).

CAPTIONS = config["captions"]
CAPTION_DATASETS = [name for name, entry in DATASETS.items() if entry["format"] == "captions"]
PLACE_NAME_INDEX = "resources/geonames/name_index"


def caption_presence_model(dataset):
    chosen = CAPTIONS["presence"]["model"]
    models = DATASETS[dataset]["models"]
    if chosen is not None and chosen not in models:
        raise ValueError(f"config: captions.presence.model {chosen!r} is not among "
                         f"datasets.{dataset}.models {models}")
    return chosen or models[0]


def caption_image_embeddings(wildcards):
    return f"results/{wildcards.dataset}/{caption_presence_model(wildcards.dataset)}/frozen/embeddings.h5"


def caption_presence_table(wildcards):
    model = caption_presence_model(wildcards.dataset)
    return f"results/{wildcards.dataset}/captions/{model}/entity_presence.parquet"


def caption_covariates(wildcards):
    return [CAPTIONS["covariates"]["path"]] if CAPTIONS["covariates"]["path"] else []


def caption_llm_params(wildcards):
    return dict(CAPTIONS["llm"])


def caption_llm_cache(wildcards):
    return f"results/{wildcards.dataset}/captions/llm_cache"


def caption_encoder_params(wildcards):
    """The sentence encoder's settings alone, so that re-scoping the index leaves caption vectors be."""
    return {key: CAPTIONS["index"][key] for key in ("encoder", "device", "batch_size", "threads")}


def caption_extraction_params(wildcards):
    return dict(CAPTIONS["extraction"]) | {"entities": CAPTIONS["entities"]}


def caption_targets():
    targets = []
    for dataset in CAPTION_DATASETS:
        folder = f"results/{dataset}/captions"
        model = caption_presence_model(dataset)
        targets += [f"{folder}/distributions.parquet", f"{folder}/evaluation.parquet",
                    f"{folder}/diversity.parquet", f"{folder}/{model}/entity_svm.parquet"]
        if CAPTIONS["presence"]["restrict"]:
            targets.append(f"{folder}/distributions_shown.parquet")
    return targets
