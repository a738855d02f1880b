rule synthetic_dataset:
    output:
        directory("resources/datasets/{dataset}"),
    params:
        synthetic=synthetic_params,
    log:
        "logs/datasets/{dataset}.synthetic.log",
    resources:
        mem_mb=memory_mb(1000, per_image_kb=1),
        runtime=runtime_minutes(5, per_image_s=0.01),
    wildcard_constraints:
        dataset=_alternatives(SYNTHETIC_DATASETS),
    localrule: True
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/synthetic_dataset.py"


rule manifest:
    input:
        dataset_inputs,
        admin=dataset_admin_table,
    output:
        manifest="results/{dataset}/manifest.parquet",
        annotations="results/{dataset}/annotations.parquet",
        skipped="results/{dataset}/skipped.csv",
    params:
        folder=dataset_folder,
        format=dataset_format,
        options=dataset_options,
        listing=dataset_listing,
    log:
        "logs/datasets/{dataset}.manifest.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=2),
        runtime=runtime_minutes(5, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/manifest.py"


rule download_osv5m:
    output:
        directory("resources/datasets/{dataset}"),
    params:
        download=osv5m_download_params,
    log:
        "logs/datasets/{dataset}.download.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=2),
        runtime=runtime_minutes(30, per_image_s=0.05),
    wildcard_constraints:
        dataset=_alternatives(OSV5M_DOWNLOADS),
    localrule: True
    retries: 0  # network failures are retried inside; a bad checksum or a refused archive stays bad
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/download_osv5m.py"


rule download_wikichurches:
    output:
        directory("resources/datasets/{dataset}"),
    params:
        download=wikichurches_download_params,
    log:
        "logs/datasets/{dataset}.download.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=2),
        runtime=runtime_minutes(30, per_image_s=0.1),
    wildcard_constraints:
        dataset=_alternatives(WIKICHURCHES_DOWNLOADS),
    localrule: True
    retries: 0  # network failures are retried inside; a bad checksum or a refused archive stays bad
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/download_wikichurches.py"


rule geonames_places:
    output:
        places=GEONAMES_PLACES,
        admin=GEONAMES_ADMIN,
    params:
        geonames=geonames_params,
    log:
        "logs/datasets/geonames.log",
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(15),
    localrule: True
    retries: 2
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/geonames_places.py"
