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
    wildcard_constraints:
        dataset=_alternatives(UNCHUNKED_DATASETS),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/extract.py"


# A dataset with extraction.chunk_images: one job per chunk of manifest rows (each its own GPU on a
# cluster, sized for its rows), then a gather job that writes the same two files as `extract`. The
# chunk files are temporary; the gather carries the settings too, so a changed setting is seen even
# after the chunks are gone (and reruns them).
rule extract_chunk:
    input:
        manifest="results/{dataset}/manifest.parquet",
        model=model_folder,
        tuned=tuned_weights,
    output:
        embeddings=temp("results/{dataset}/{model}/{variant}/chunks/{chunk}/embeddings.h5"),
        attention=temp("results/{dataset}/{model}/{variant}/chunks/{chunk}/attention.h5"),
    params:
        identity=model_identity,
        settings=extraction_params,
        tuned_folder=tuned_folder,
        splits=extraction_splits,
        rows=chunk_rows,
    log:
        "logs/extract/{dataset}/{model}/{variant}/chunk_{chunk}.log",
    threads: extraction_threads
    resources:
        gpu=extraction_gpus,
        mem_mb=model_memory_mb(8000, per_image_kb=16),
        runtime=extraction_runtime,
        **slurm_partition(gpu=extraction_gpus),
    wildcard_constraints:
        dataset=_alternatives(CHUNKED_DATASETS),
        chunk=r"\d+",
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/extract.py"


rule gather_extraction:
    input:
        unpack(extraction_chunks),
        manifest="results/{dataset}/manifest.parquet",
    output:
        embeddings="results/{dataset}/{model}/{variant}/embeddings.h5",
        attention="results/{dataset}/{model}/{variant}/attention.h5",
    params:
        identity=model_identity,
        settings=extraction_params,
        splits=extraction_splits,
    log:
        "logs/extract/{dataset}/{model}/{variant}.log",
    resources:
        mem_mb=memory_mb(2000, per_image_kb=0.5),  # the manifest's ids and paths, held to check the chunks
        runtime=runtime_minutes(10, per_image_s=GATHER_SECONDS_PER_IMAGE),
        **slurm_partition(),
    wildcard_constraints:
        dataset=_alternatives(CHUNKED_DATASETS),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/gather_extraction.py"
