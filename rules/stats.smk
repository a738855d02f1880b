# Statistics of the alignment study, one job each per annotated dataset: bootstrap CIs and paired
# tests over every model, variant and baseline table; the per-head analysis over the per-feature
# tables. CPU only; no torch.


rule alignment_statistics:
    input:
        tables=stats_alignment_tables,
    output:
        summary="results/stats/{dataset}/alignment_summary.parquet",
        models="results/stats/{dataset}/model_comparisons.parquet",
        variants="results/stats/{dataset}/variant_comparisons.parquet",
    params:
        stats=alignment_stats_params,
    log:
        "logs/stats/{dataset}/alignment.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(4000, per_image_kb=16),
        runtime=runtime_minutes(15, per_image_s=0.2),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/stats_alignment.py"


rule head_statistics:
    input:
        tables=stats_feature_tables,
    output:
        heads="results/stats/{dataset}/head_analysis.parquet",
        specialisation="results/stats/{dataset}/head_specialisation.parquet",
        correlation="results/stats/{dataset}/head_rank_correlation.parquet",
        top="results/stats/{dataset}/top_heads.parquet",
    params:
        heads=head_stats_params,
    log:
        "logs/stats/{dataset}/heads.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(4000, per_image_kb=16),
        runtime=runtime_minutes(15, per_image_s=0.2),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/stats_heads.py"
