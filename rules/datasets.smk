rule synthetic_dataset:
    output:
        directory("resources/datasets/{dataset}"),
    params:
        synthetic=synthetic_params,
    log:
        "logs/datasets/{dataset}.synthetic.log",
    wildcard_constraints:
        dataset=_alternatives(SYNTHETIC_DATASETS),
    localrule: True
    script:
        "../workflow_scripts/synthetic_dataset.py"


rule manifest:
    input:
        dataset_folder,
    output:
        manifest="results/{dataset}/manifest.parquet",
        annotations="results/{dataset}/annotations.parquet",
        skipped="results/{dataset}/skipped.csv",
    params:
        format=dataset_format,
    log:
        "logs/datasets/{dataset}.manifest.log",
    script:
        "../workflow_scripts/manifest.py"
