rule extract:
    input:
        manifest="results/{dataset}/manifest.parquet",
        model=model_folder,
    output:
        embeddings="results/{dataset}/{model}/{variant}/embeddings.h5",
        attention="results/{dataset}/{model}/{variant}/attention.h5",
    params:
        identity=model_identity,
        settings=extraction_params,
    log:
        "logs/extract/{dataset}/{model}/{variant}.log",
    threads: extraction_threads
    resources:
        gpu=extraction_gpus,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/extract.py"
