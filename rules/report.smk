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
        predictions="results/{dataset}/captions/predictions.parquet",
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


# ---- headline tables of every study and the run's summary ------------------------------------------
# Each study's headline tables, read from its outputs (rows selected, columns renamed, numbers never
# recomputed): a tidy CSV copy and an HTML page per table, both in the report next to the figures,
# and an index the summary reads. One job per study and dataset; one summary job for the run.


rule alignment_tables:
    input:
        summary="results/stats/{dataset}/alignment_summary.parquet",
        models="results/stats/{dataset}/model_comparisons.parquet",
        variants="results/stats/{dataset}/variant_comparisons.parquet",
        specialisation="results/stats/{dataset}/head_specialisation.parquet",
    output:
        **table_outputs("alignment"),
    params:
        study="alignment",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/alignment.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule finetune_tables:
    input:
        unpack(finetune_table_inputs),
    output:
        **table_outputs("finetune"),
    params:
        study="finetune",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/finetune.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule style_probe_tables:
    input:
        unpack(style_probe_table_inputs),
    output:
        **table_outputs("style_probe"),
    params:
        study="style_probe",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/style_probe.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule geo_tables:
    input:
        unpack(geo_table_inputs),
    output:
        **table_outputs("geo"),
    params:
        study="geo",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/geo.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule geo_depth_tables:
    input:
        unpack(geo_depth_table_inputs),
    output:
        **table_outputs("geo_depth"),
    params:
        study="geo_depth",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/geo_depth.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule planted_tables:
    input:
        unpack(planted_table_inputs),
    output:
        **table_outputs("planted"),
    params:
        study="planted",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/planted.log",
    wildcard_constraints:
        dataset=_alternatives(PLANTED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(5, per_image_s=0.001),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule calibration_tables:
    input:
        unpack(calibration_table_inputs),
    output:
        **table_outputs("calibration"),
    params:
        study="calibration",
        settings=calibration_table_params,
    log:
        "logs/tables/{dataset}/calibration.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule caption_tables:
    input:
        evaluation="results/{dataset}/captions/evaluation.parquet",
        distributions="results/{dataset}/captions/distributions.parquet",
        diversity="results/{dataset}/captions/diversity.parquet",
    output:
        **table_outputs("captions"),
    params:
        study="captions",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/captions.log",
    wildcard_constraints:
        dataset=_alternatives(CAPTION_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"


rule summary:
    input:
        summary_inputs,
    output:
        markdown="results/summary.md",
        html=report("results/summary.html", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/summary.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=0),
        runtime=runtime_minutes(10),
    # seconds of reading small CSV files at the very end: no queue wait for it, as for the dashboard
    localrule: True
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary.py"


rule geo_depth_figures:
    input:
        unpack(geo_depth_figure_inputs),
    output:
        **figure_outputs("world", "regional_world", "regional_world"),
        **figure_outputs("continents", "regional_continents", "regional_continents"),
        **figure_outputs("cka", "cka", "cka"),
        **figure_outputs("failures", "failure_gallery", "failure_gallery"),
    params:
        figures=geo_depth_figure_params,
    log:
        "logs/figures/{dataset}/geo_depth.log",
    wildcard_constraints:
        dataset=_alternatives(GEO_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figure_geo_depth.py"


# ---- faithfulness (rules/faithfulness.smk): plausibility against faithfulness, its headline table -----
rule faithfulness_figures:
    input:
        plausibility="results/stats/{dataset}/plausibility_faithfulness.parquet",
    output:
        **figure_outputs("plausibility", "plausibility_faithfulness", "plausibility_faithfulness"),
    params:
        figures=alignment_figure_params,
    log:
        "logs/figures/{dataset}/faithfulness.log",
    wildcard_constraints:
        dataset=_alternatives(FAITHFULNESS_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(10, per_image_s=0.01),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figure_faithfulness.py"


rule faithfulness_tables:
    input:
        unpack(faithfulness_table_inputs),
    output:
        **table_outputs("faithfulness"),
    params:
        study="faithfulness",
        settings=alignment_table_params,
    log:
        "logs/tables/{dataset}/faithfulness.log",
    wildcard_constraints:
        dataset=_alternatives(FAITHFULNESS_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(5, per_image_s=0.001),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/summary_tables.py"
