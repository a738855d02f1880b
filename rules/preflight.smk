# Before a long run: disk, tokens for gated models, a GPU where the CPU would take days. It has the
# highest priority and holds every core for its few seconds, so it is the first job and runs alone
# (no download starts beside it); `snakemake --until preflight` runs nothing else. It fails only on
# what would certainly fail later; the rest are warnings in its table. No job depends on its output,
# so rerunning it (a new config) makes nothing stale.
rule preflight:
    output:
        PREFLIGHT,
    params:
        plan=preflight_plan,
    log:
        "logs/preflight.log",
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(5),
    # every core of this run (--cores); with a cluster executor and no --cores, one
    threads: lambda wildcards: workflow.resource_settings.cores or 1
    priority: 1000
    localrule: True
    conda:
        "../envs/torch.yaml"  # asks torch, as device: auto does, whether it sees a GPU
    script:
        "../workflow_scripts/preflight.py"
