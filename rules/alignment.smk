rule alignment:
    input:
        attention="results/{dataset}/{model}/{variant}/attention.h5",
        annotations="results/{dataset}/annotations.parquet",
    output:
        scores="results/{dataset}/{model}/{variant}/alignment.parquet",
        features="results/{dataset}/{model}/{variant}/alignment_features.parquet",
    params:
        alignment=alignment_params,
    log:
        "logs/alignment/{dataset}/{model}/{variant}.log",
    resources:
        mem_mb=memory_mb(3000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.3),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/alignment.py"


rule baselines:
    input:
        manifest="results/{dataset}/manifest.parquet",
        annotations="results/{dataset}/annotations.parquet",
    output:
        scores="results/{dataset}/baselines/alignment.parquet",
        features="results/{dataset}/baselines/alignment_features.parquet",
    params:
        baselines=baseline_params,
    log:
        "logs/alignment/{dataset}/baselines.log",
    resources:
        mem_mb=memory_mb(3000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.3),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/baselines.py"
