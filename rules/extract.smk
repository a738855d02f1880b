rule extract:
    input:
        manifest="results/{dataset}/manifest.parquet",
        model=model_folder,
        tuned=tuned_weights,
    output:
        embeddings="results/{dataset}/{model}/{variant}/embeddings.h5",
        attention="results/{dataset}/{model}/{variant}/attention.h5",
    params:
        identity=model_identity,
        settings=extraction_params,
        tuned_folder=tuned_folder,
        splits=extraction_splits,
    log:
        "logs/extract/{dataset}/{model}/{variant}.log",
    threads: extraction_threads
    resources:
        gpu=extraction_gpus,
        mem_mb=model_memory_mb(8000, per_image_kb=16),
        runtime=extraction_runtime,
        **slurm_partition(gpu=extraction_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/extract.py"
