rule probes:
    input:
        embeddings="results/{dataset}/{model}/frozen/embeddings.h5",
        manifest="results/{dataset}/manifest.parquet",
    output:
        table="results/{dataset}/{model}/probes.parquet",
        # the held-out images' answers (true, predicted class, confidence) per level and features
        predictions="results/{dataset}/{model}/probe_predictions.parquet",
    params:
        probes=probe_params,
    log:
        "logs/geo/{dataset}/{model}/probes.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    threads: 2
    resources:
        gpu=extraction_gpus,
        mem_mb=memory_mb(2000, per_image_kb=40),
        runtime=runtime_minutes(20, per_image_s=0.05),
        **slurm_partition(gpu=extraction_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/probes.py"


rule attention_stats:
    input:
        attention="results/{dataset}/{model}/{variant}/attention.h5",
        manifest="results/{dataset}/manifest.parquet",
    output:
        per_image="results/{dataset}/{model}/{variant}/attention_stats.parquet",
        per_country="results/{dataset}/{model}/{variant}/attention_stats_by_country.parquet",
    params:
        stats=attention_stats_params,
    log:
        "logs/geo/{dataset}/{model}/{variant}/attention_stats.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=2),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/attention_stats.py"


rule retrieval:
    input:
        embeddings="results/{dataset}/{model}/{variant}/embeddings.h5",
        manifest="results/{dataset}/manifest.parquet",
        places=GEONAMES_ADMIN,
    output:
        knn="results/{dataset}/{model}/{variant}/knn.parquet",
        predictions="results/{dataset}/{model}/{variant}/knn_predictions.parquet",
        geometry="results/{dataset}/{model}/{variant}/geometry.parquet",
        geometry_bins="results/{dataset}/{model}/{variant}/geometry_bins.parquet",
        gallery="results/{dataset}/{model}/{variant}/gallery.parquet",
        gallery_groups="results/{dataset}/{model}/{variant}/gallery_groups.parquet",
    params:
        retrieval=retrieval_params,
    log:
        "logs/geo/{dataset}/{model}/{variant}/retrieval.log",
    resources:
        mem_mb=memory_mb(4000, per_image_kb=20),
        runtime=runtime_minutes(15, per_image_s=0.05),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/retrieval.py"


rule distance_calibration:
    input:
        manifest="results/{dataset}/manifest.parquet",
        embeddings="results/{dataset}/{model}/frozen/embeddings.h5",
        model=model_folder,
    output:
        adapter=f"results/{{dataset}}/{{model}}/finetune/{CALIBRATED}/adapter/adapter_model.safetensors",
        history=f"results/{{dataset}}/{{model}}/finetune/{CALIBRATED}/history.csv",
        curve=f"results/{{dataset}}/{{model}}/finetune/{CALIBRATED}/target_curve.parquet",
    params:
        calibration=calibration_params,
        family=lambda wildcards: MODELS[wildcards.model]["family"],
    log:
        "logs/geo/{dataset}/{model}/distance_calibration.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
        model=_alternatives(CALIBRATED_MODELS),
    threads: extraction_threads
    resources:
        gpu=extraction_gpus,
        mem_mb=model_memory_mb(8000, per_image_kb=16),
        runtime=runtime_minutes(30, per_image_s=0.2),
        **slurm_partition(gpu=extraction_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/distance_calibration.py"


rule calibration_summary:
    input:
        frozen_knn="results/{dataset}/{model}/frozen/knn.parquet",
        frozen_geometry="results/{dataset}/{model}/frozen/geometry.parquet",
        frozen_embeddings="results/{dataset}/{model}/frozen/embeddings.h5",
        calibrated_knn=f"results/{{dataset}}/{{model}}/{CALIBRATED}/knn.parquet",
        calibrated_geometry=f"results/{{dataset}}/{{model}}/{CALIBRATED}/geometry.parquet",
        calibrated_embeddings=f"results/{{dataset}}/{{model}}/{CALIBRATED}/embeddings.h5",
    output:
        "results/{dataset}/{model}/calibration.parquet",
    params:
        feature=lambda wildcards: GEO["calibration"]["feature"],
    log:
        "logs/geo/{dataset}/{model}/calibration_summary.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
        model=_alternatives(CALIBRATED_MODELS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/calibration_summary.py"


rule geo_depth:
    input:
        unpack(geo_depth_inputs),
    output:
        **{name: f"results/{{dataset}}/geo/{name}.parquet" for name in GEO_DEPTH_TABLES},
    params:
        depth=geo_depth_params,
    log:
        "logs/geo/{dataset}/geo_depth.log",
    resources:
        mem_mb=memory_mb(3000, per_image_kb=40),
        runtime=runtime_minutes(15, per_image_s=0.02),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/geo_depth.py"


rule planted_answers:
    input:
        unpack(planted_inputs),
    output:
        "results/{dataset}/geo/planted.parquet",
    params:
        planted=planted_params,
    log:
        "logs/geo/{dataset}/planted_answers.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(5, per_image_s=0.001),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(PLANTED_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/planted_answers.py"
