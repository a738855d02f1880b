# Figures of every study and their entries in `snakemake --report`. One job per study and dataset
# (and per variant for the attention maps) draws several figures that share inputs: a figure job's
# start (Python, pandas, matplotlib) costs more than drawing one small figure.
#
# Each figure is written as results/figures/{dataset}/{name}.png and .svg, with the numbers it draws
# (.csv) and a caption with its settings and sample sizes (.txt). The PNG and CSV are marked for the
# report: category = the study's dataset, subcategory = the kind of figure.


include: "report_common.smk"


rule alignment_summary_figures:
    input:
        summary="results/stats/{dataset}/alignment_summary.parquet",
    output:
        **figure_outputs("leaderboard", "leaderboard", "leaderboard"),
        **figure_outputs("layers", "iou_by_layer", "iou_by_layer"),
        **figure_outputs("thresholds", "threshold_sensitivity", "threshold_sensitivity"),
    params:
        figures=alignment_figure_params,
    log:
        "logs/figures/{dataset}/alignment_summary.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figure_alignment_summary.py"


rule alignment_map_figures:
    input:
        unpack(alignment_map_figure_inputs),
    output:
        **figure_outputs("heads", "head_feature_{variant}", "head_feature"),
        **figure_outputs("overlays", "attention_overlays_{variant}", "attention_overlays"),
    params:
        figures=alignment_map_figure_params,
    log:
        "logs/figures/{dataset}/alignment_maps_{variant}.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figure_alignment_maps.py"


rule finetune_figures:
    input:
        deltas=delta_iou_figure_inputs,
    output:
        **figure_outputs("delta", "delta_iou", "delta_iou"),
    params:
        figures=alignment_figure_params,
    log:
        "logs/figures/{dataset}/finetune.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figure_finetune.py"


rule geo_figures:
    input:
        unpack(geo_figure_inputs),
    output:
        **figure_outputs("probes", "probe_accuracy", "probe_accuracy"),
        **figure_outputs("cosine", "cosine_distance", "cosine_distance"),
        **figure_outputs("geoscore", "geoscore", "geoscore"),
        **figure_outputs("gallery", "gallery", "gallery"),
    params:
        figures=geo_figure_params,
    log:
        "logs/figures/{dataset}/geo.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figure_geo.py"


rule caption_figures:
    input:
        distributions="results/{dataset}/captions/distributions.parquet",
    output:
        **figure_outputs("continents", "caption_continents", "caption_continents"),
    params:
        figures=caption_figure_params,
    log:
        "logs/figures/{dataset}/captions.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figure_captions.py"
