rule tiny_model:
    output:
        directory("resources/models/{model}"),
    params:
        tiny=tiny_params,
    log:
        "logs/models/{model}.tiny.log",
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(10),
        **slurm_partition(),
    wildcard_constraints:
        model=_alternatives(TINY_MODELS),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/tiny_model.py"


rule hub_snapshot:
    output:
        directory("resources/models/{model}"),
    params:
        hub=hub_params,
    log:
        "logs/models/{model}.hub.log",
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(60),
    wildcard_constraints:
        model=_alternatives(SNAPSHOT_MODELS),
    localrule: True
    retries: 2
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/hub_snapshot.py"
