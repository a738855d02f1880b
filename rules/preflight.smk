# Before a long run: disk, tokens for gated models, a GPU where the CPU would take days. It has the
# highest priority, so it is the first job scheduled; `snakemake --until preflight` runs it alone.
# It fails only on what would certainly fail later; the rest are warnings in its table.
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
    priority: 1000
    localrule: True
    conda:
        "../envs/torch.yaml"  # asks torch, as device: auto does, whether it sees a GPU
    script:
        "../workflow_scripts/preflight.py"
