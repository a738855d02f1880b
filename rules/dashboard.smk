rule dashboard:
    input:
        dashboard_inputs,
    output:
        directory("results/dashboard"),
    params:
        layout=dashboard_layout,
        settings=dashboard_settings,
    log:
        "logs/dashboard.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=4),
        runtime=runtime_minutes(20, per_image_s=0.01),
    # the report: it runs where Snakemake runs (a few seconds of tables and figures read into one
    # HTML folder), as Snakemake's own --report does; no partition, no queue wait at the very end
    localrule: True
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/dashboard.py"
