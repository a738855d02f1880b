# Cluster resources: what each job asks a scheduler for. Requests grow with the number of images the
# job sees (from the config, so a dry run needs no data) and with `attempt`, so a job killed for memory
# or time comes back larger on a retry (--retries). They are neither params nor rerun triggers: changing
# them never makes an output stale. SLURM's --cpus-per-task is the rule's threads (the executor
# plugin's default when a rule declares no cpus_per_task; one callable fewer per job keeps planning a
# thousand-job DAG fast).
#
#   resources:
#       mem_mb=memory_mb(2000, per_image_kb=20),         # fixed + per image, in MB
#       runtime=runtime_minutes(10, per_image_s=0.05),   # fixed + per image, in minutes
#       **slurm_partition(),                             # only when the config names one

import math
import os

CLUSTER = config["cluster"]

# HDF5 locks every file it opens with flock(), which the network file systems of clusters (NFS,
# Lustre) often refuse ("unable to lock file"), and several jobs read one attention.h5 at a time.
# Outputs are written to a temporary path and renamed, so no reader ever needs the lock. Every job,
# local or submitted with sbatch --export=ALL, inherits this process's environment.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

# Sizes of the real datasets, for the downloads whose config does not say how many images they keep:
# OSV-5M's test split (210,122 images in 5 shards) and WikiChurches. WikiChurches, annotated only: 139
# images carrying 631 boxes (building_parts.json; the ssl_wikichurches data notebook, run on the real
# files, prints "Bounding boxes loaded: 631 rows", "Annotated images: 139"). With the pool: the images
# of churches in the four studied styles, the annotated among them, about 4,790 (ssl_wikichurches
# docs/core/project_proposal.md: "4,790 of 9,346 style-labeled images", counted on the real files;
# churches.json holds 9,346 churches, image_meta.json lists their images).
# The train split: 4,894,685 images (the dataset's datasheet) in 98 shards images/train/00..97.zip.
OSV5M_IMAGES_PER_SHARD = {"test": 42_100, "train": 49_950}
WIKICHURCHES_IMAGES = {"annotated": 139, "annotated+pool": 4_790}


def dataset_images(dataset):
    """The sample size a dataset's jobs are sized for."""
    if dataset in CLUSTER["dataset_images"]:
        return CLUSTER["dataset_images"][dataset]
    entry = DATASETS[dataset]
    if entry["source"] == "synthetic":
        return entry["synthetic"]["n_images"]
    if entry["source"] == "download" and entry["format"] == "osv5m":
        download = entry["download"]
        per_shard = OSV5M_IMAGES_PER_SHARD[download["split"]]
        return download["sample_count"] or per_shard * len(download["shards"])
    if entry["source"] == "download" and entry["format"] == "wikichurches":
        return WIKICHURCHES_IMAGES[entry["download"]["images"]]
    return CLUSTER["default_images"]


def job_images(wildcards):
    """A job with a {dataset} wildcard sees that dataset (with a {chunk} wildcard, that chunk's rows);
    any other job (models, study-wide statistics, figures) is sized for every dataset together."""
    if "chunk" in wildcards.keys():
        start, stop = chunk_rows(wildcards)
        if stop is not None:
            return stop - start
        # the last chunk takes what is left, at least a chunk's worth (a manifest larger than declared)
        size = DATASETS[wildcards.dataset]["extraction"]["chunk_images"]
        return max(size, dataset_images(wildcards.dataset) - start)
    if "dataset" in wildcards.keys():
        return dataset_images(wildcards.dataset)
    return sum(dataset_images(dataset) for dataset in DATASETS)


def memory_mb(fixed_mb, per_image_kb=0.0):
    def mem_mb(wildcards, attempt):
        return math.ceil((fixed_mb + per_image_kb * job_images(wildcards) / 1024) * attempt)

    return mem_mb


def runtime_minutes(fixed_min, per_image_s=0.0):
    def runtime(wildcards, attempt):
        return math.ceil((fixed_min + per_image_s * job_images(wildcards) / 60) * attempt)

    return runtime


# A job that loads a tiny built model (the demo, the tests) needs little more than torch itself.
TINY_MODEL_MB = 1500


def model_memory_mb(fixed_mb, per_image_kb=0.0):
    """memory_mb for a job that loads the {model}'s weights: fixed_mb for a real checkpoint."""
    def mem_mb(wildcards, attempt):
        fixed = TINY_MODEL_MB if MODELS[wildcards.model]["source"] == "tiny" else fixed_mb
        return math.ceil((fixed + per_image_kb * job_images(wildcards) / 1024) * attempt)

    return mem_mb


# Seconds per image of one extraction job, decoding and the HDF5 writes included: a ViT-L/14 at
# 336 px in bf16 on one data-centre GPU, and a ViT-B/16 in fp32 on a few CPU cores (4 images/s on 2).
EXTRACTION_SECONDS_PER_IMAGE = {"gpu": 0.05, "cpu": 0.5}


# Seconds per image of gathering a chunked extraction (compressed HDF5 chunks copied as they are):
# benchmarks/cost_model.py, RESULTS.md.
GATHER_SECONDS_PER_IMAGE = 0.001


def extraction_runtime(wildcards, attempt):
    device = "gpu" if extraction_gpus(wildcards) else "cpu"
    seconds = EXTRACTION_SECONDS_PER_IMAGE[device] * job_images(wildcards)
    return math.ceil((10 + seconds / 60) * attempt)


def slurm_partition(gpu=False):
    """`**slurm_partition()` in a rule's resources: the partition the config names for CPU jobs, or
    for GPU jobs (gpu: True, or a function of the wildcards returning the number of GPUs held).
    Nothing when the config names none, so a profile's default-resources decide."""
    if not (CLUSTER["partition"] or CLUSTER["gpu_partition"]):
        return {}

    def partition(wildcards):
        holds_gpu = gpu(wildcards) if callable(gpu) else gpu
        if holds_gpu:
            return CLUSTER["gpu_partition"] or CLUSTER["partition"]
        return CLUSTER["partition"]

    return {"slurm_partition": partition}


def device_gpus(device):
    """The `gpu` resource of a job running on a configured device: CUDA holds one card."""
    return 1 if str(device).startswith("cuda") else 0


def caption_translation_gpus(wildcards):
    return device_gpus(config["captions"]["translation"]["device"])


def caption_index_gpus(wildcards):
    """The place-name index, retrieval and caption embeddings run the index's text encoder."""
    return device_gpus(config["captions"]["index"]["device"])
