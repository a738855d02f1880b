# Caption geo-profiling (issue #7): translate -> extract -> retrieve -> predict -> distributions,
# evaluation, entity presence and diversity, for every dataset of format `captions`.
# Config look-ups for these rules live in captions_common.smk (snakemake --lint wants rules and
# functions in separate files).


include: "captions_common.smk"


rule caption_table:
    input:
        dataset_inputs,
    output:
        "results/{dataset}/captions/captions.parquet",
    params:
        folder=dataset_folder,
        default_language=lambda wildcards: CAPTIONS["default_language"],
    log:
        "logs/captions/{dataset}/table.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_table.py"


rule caption_translate:
    input:
        "results/{dataset}/captions/captions.parquet",
    output:
        "results/{dataset}/captions/translated.parquet",
    params:
        translation=lambda wildcards: CAPTIONS["translation"],
    log:
        "logs/captions/{dataset}/translate.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        gpu=caption_translation_gpus,
        mem_mb=memory_mb(6000, per_image_kb=8),
        runtime=runtime_minutes(20, per_image_s=0.5),
        **slurm_partition(gpu=caption_translation_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/captions_translate.py"


rule place_name_index:
    input:
        GEONAMES_PLACES,
    output:
        directory(PLACE_NAME_INDEX),
    params:
        index=lambda wildcards: CAPTIONS["index"],
    log:
        "logs/captions/place_name_index.log",
    threads: lambda wildcards: CAPTIONS["index"]["threads"]
    resources:
        gpu=caption_index_gpus,
        mem_mb=memory_mb(6000),
        runtime=runtime_minutes(60),
        **slurm_partition(gpu=caption_index_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/captions_index.py"


rule caption_extract:
    input:
        translated="results/{dataset}/captions/translated.parquet",
        places=GEONAMES_PLACES,
    output:
        mentions="results/{dataset}/captions/mentions.parquet",
        status="results/{dataset}/captions/extract_status.parquet",
    params:
        extraction=caption_extraction_params,
        llm=caption_llm_params,
        cache=caption_llm_cache,
    log:
        "logs/captions/{dataset}/extract.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_extract.py"


rule caption_retrieve:
    input:
        mentions="results/{dataset}/captions/mentions.parquet",
        index=PLACE_NAME_INDEX,
    output:
        "results/{dataset}/captions/candidates.parquet",
    params:
        k=lambda wildcards: CAPTIONS["retrieval"]["k"],
        orthographic=lambda wildcards: CAPTIONS["retrieval"]["orthographic"],
        encoder=caption_encoder_params,
    log:
        "logs/captions/{dataset}/retrieve.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        gpu=caption_index_gpus,
        mem_mb=memory_mb(4000, per_image_kb=8),
        runtime=runtime_minutes(15, per_image_s=0.05),
        **slurm_partition(gpu=caption_index_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/captions_retrieve.py"


rule caption_predict:
    input:
        captions="results/{dataset}/captions/captions.parquet",
        translated="results/{dataset}/captions/translated.parquet",
        mentions="results/{dataset}/captions/mentions.parquet",
        candidates="results/{dataset}/captions/candidates.parquet",
    output:
        predictions="results/{dataset}/captions/predictions.parquet",
        status="results/{dataset}/captions/predict_status.parquet",
    params:
        prediction=lambda wildcards: CAPTIONS["prediction"],
        entities=lambda wildcards: CAPTIONS["entities"],
        continent_scheme=lambda wildcards: CAPTIONS["continent_scheme"],
        llm=caption_llm_params,
        cache=caption_llm_cache,
    log:
        "logs/captions/{dataset}/predict.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_predict.py"


rule caption_distributions:
    input:
        predictions="results/{dataset}/captions/predictions.parquet",
        covariates=caption_covariates,
    output:
        distributions="results/{dataset}/captions/distributions.parquet",
        correlations="results/{dataset}/captions/covariate_correlations.parquet",
    params:
        continent_scheme=lambda wildcards: CAPTIONS["continent_scheme"],
        covariates=lambda wildcards: CAPTIONS["covariates"],
    log:
        "logs/captions/{dataset}/distributions.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_distributions.py"


rule caption_distributions_shown:
    input:
        predictions="results/{dataset}/captions/predictions.parquet",
        presence=caption_presence_table,
    output:
        "results/{dataset}/captions/distributions_shown.parquet",
    params:
        continent_scheme=lambda wildcards: CAPTIONS["continent_scheme"],
    log:
        "logs/captions/{dataset}/distributions_shown.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_distributions_shown.py"


rule caption_evaluation:
    input:
        "results/{dataset}/captions/predictions.parquet",
    output:
        evaluation="results/{dataset}/captions/evaluation.parquet",
        confusion="results/{dataset}/captions/confusion.parquet",
    params:
        top=lambda wildcards: CAPTIONS["evaluation"]["top_countries"],
    log:
        "logs/captions/{dataset}/evaluation.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_evaluation.py"


rule caption_embeddings:
    input:
        "results/{dataset}/captions/translated.parquet",
    output:
        "results/{dataset}/captions/caption_embeddings.h5",
    params:
        encoder=caption_encoder_params,
    log:
        "logs/captions/{dataset}/caption_embeddings.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        gpu=caption_index_gpus,
        mem_mb=memory_mb(4000, per_image_kb=8),
        runtime=runtime_minutes(15, per_image_s=0.05),
        **slurm_partition(gpu=caption_index_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/captions_embeddings.py"


rule entity_presence:
    input:
        predictions="results/{dataset}/captions/predictions.parquet",
        embeddings="results/{dataset}/{model}/frozen/embeddings.h5",
    output:
        presence="results/{dataset}/captions/{model}/entity_presence.parquet",
        svm="results/{dataset}/captions/{model}/entity_svm.parquet",
    params:
        presence=lambda wildcards: CAPTIONS["presence"],
        entities=lambda wildcards: CAPTIONS["entities"],
    log:
        "logs/captions/{dataset}/{model}/entity_presence.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_presence.py"


rule caption_diversity:
    input:
        predictions="results/{dataset}/captions/predictions.parquet",
        captions="results/{dataset}/captions/caption_embeddings.h5",
        images=caption_image_embeddings,
    output:
        "results/{dataset}/captions/diversity.parquet",
    params:
        feature=lambda wildcards: CAPTIONS["presence"]["feature"],
        min_items=lambda wildcards: CAPTIONS["diversity"]["min_items"],
    log:
        "logs/captions/{dataset}/diversity.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/captions_diversity.py"
