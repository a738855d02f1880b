rule tiny_model:
    output:
        directory("resources/models/{model}"),
    params:
        tiny=tiny_params,
    log:
        "logs/models/{model}.tiny.log",
    wildcard_constraints:
        model=_alternatives(TINY_MODELS),
    script:
        "../workflow_scripts/tiny_model.py"
