# Faithfulness of the stored maps (config `faithfulness:`): deletion and insertion curves per dataset x
# model x variant (a forward-pass job like extraction), then their statistics per dataset: bootstrap
# CIs per map, paired comparisons, and plausibility (alignment IoU) against faithfulness.


rule faithfulness:
    input:
        manifest="results/{dataset}/manifest.parquet",
        annotations="results/{dataset}/annotations.parquet",
        attention="results/{dataset}/{model}/{variant}/attention.h5",
        model=model_folder,
        tuned=tuned_weights,
    output:
        scores="results/{dataset}/{model}/{variant}/faithfulness.parquet",
        curves="results/{dataset}/{model}/{variant}/faithfulness_curves.parquet",
    params:
        faithfulness=faithfulness_params,
        tuned_folder=tuned_folder,
    log:
        "logs/faithfulness/{dataset}/{model}/{variant}.log",
    threads: extraction_threads
    resources:
        gpu=extraction_gpus,
        mem_mb=model_memory_mb(8000, per_image_kb=16),
        runtime=runtime_minutes(20, per_image_s=2),
        **slurm_partition(gpu=extraction_gpus),
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/faithfulness.py"


rule faithfulness_statistics:
    input:
        unpack(faithfulness_stats_inputs),
    output:
        summary="results/stats/{dataset}/faithfulness_summary.parquet",
        comparisons="results/stats/{dataset}/faithfulness_comparisons.parquet",
        plausibility="results/stats/{dataset}/plausibility_faithfulness.parquet",
    params:
        stats=faithfulness_stats_params,
    log:
        "logs/stats/{dataset}/faithfulness.log",
    wildcard_constraints:
        dataset=_alternatives(FAITHFULNESS_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.05),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/stats_faithfulness.py"
