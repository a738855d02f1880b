# Style fine-tuning on the annotated datasets: one training rule per strategy (their weights differ),
# then extraction and alignment of the tuned variant through the generic rules, and the comparison.


rule finetune_linear:
    input:
        manifest="results/{dataset}/manifest.parquet",
        model=model_folder,
    output:
        head="results/{dataset}/{model}/finetune/linear/head.safetensors",
        history="results/{dataset}/{model}/finetune/linear/history.csv",
        metrics="results/{dataset}/{model}/finetune/linear/metrics.json",
        split="results/{dataset}/{model}/finetune/linear/split.csv",
    params:
        settings=finetune_params,
        strategy="linear",
    log:
        "logs/finetune/{dataset}/{model}/linear.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    threads: extraction_threads
    resources:
        gpu=extraction_gpus,
        mem_mb=model_memory_mb(8000, per_image_kb=16),
        runtime=runtime_minutes(30, per_image_s=0.5),
        **slurm_partition(gpu=extraction_gpus),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/finetune.py"


use rule finetune_linear as finetune_lora with:
    output:
        head="results/{dataset}/{model}/finetune/lora/head.safetensors",
        adapter="results/{dataset}/{model}/finetune/lora/adapter/adapter_model.safetensors",
        history="results/{dataset}/{model}/finetune/lora/history.csv",
        metrics="results/{dataset}/{model}/finetune/lora/metrics.json",
        split="results/{dataset}/{model}/finetune/lora/split.csv",
    params:
        settings=finetune_params,
        strategy="lora",
    log:
        "logs/finetune/{dataset}/{model}/lora.log",


use rule finetune_linear as finetune_full with:
    output:
        head="results/{dataset}/{model}/finetune/full/head.safetensors",
        backbone="results/{dataset}/{model}/finetune/full/backbone.safetensors",
        history="results/{dataset}/{model}/finetune/full/history.csv",
        metrics="results/{dataset}/{model}/finetune/full/metrics.json",
        split="results/{dataset}/{model}/finetune/full/split.csv",
    params:
        settings=finetune_params,
        strategy="full",
    log:
        "logs/finetune/{dataset}/{model}/full.log",


rule delta_iou:
    input:
        frozen="results/{dataset}/{model}/frozen/alignment.parquet",
        tuned=tuned_alignment,
    output:
        delta="results/{dataset}/{model}/finetune/delta_iou.parquet",
        retention="results/{dataset}/{model}/finetune/retention.parquet",
        skipped="results/{dataset}/{model}/finetune/skipped.csv",
    params:
        skipped=finetune_skip_records,
    log:
        "logs/finetune/{dataset}/{model}/delta_iou.log",
    resources:
        mem_mb=memory_mb(3000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.05),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/delta_iou.py"


rule style_probe:
    input:
        manifest="results/{dataset}/manifest.parquet",
        embeddings="results/{dataset}/{model}/frozen/embeddings.h5",
    output:
        "results/{dataset}/{model}/style_probe.parquet",
    params:
        probe=style_probe_params,
    log:
        "logs/finetune/{dataset}/{model}/style_probe.log",
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    resources:
        mem_mb=memory_mb(2000, per_image_kb=8),
        runtime=runtime_minutes(10, per_image_s=0.02),
        **slurm_partition(),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/style_probe.py"
