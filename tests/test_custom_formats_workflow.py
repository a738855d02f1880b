"""presets/custom_boxes.yaml on a small boxes folder written here: a real Snakemake run from the
manifest to the alignment scores and the style probe, the preset's model replaced by a tiny one."""

import pandas as pd
import pytest

from conftest import snakemake
from encoderlens.data.formats import read_dataset, write_synthetic_dataset

TINY = """
models:
  dinov2: {source: tiny, image_size: null, device: cpu, threads: 1, attention_layers: [-1]}
alignment: {analysis_size: 32, thresholds: [20]}
"""


@pytest.mark.e2e
def test_the_custom_boxes_preset_runs_on_a_boxes_folder(workflow_copy):
    folder = workflow_copy / "data" / "custom_boxes"
    write_synthetic_dataset("boxes", folder, n_images=6, seed=2, n_annotated=3, box_units="pixels")
    with open(folder / "boxes.csv", "a") as handle:  # a box of an image the folder lacks: a skip record
        handle.write("missing.jpg,1,1,5,5,Window\n")
    (workflow_copy / "tiny.yaml").write_text(TINY)
    targets = ["results/custom_boxes/dinov2/frozen/alignment.parquet",
               "results/custom_boxes/dinov2/style_probe.parquet"]
    result = snakemake(workflow_copy, "--configfile", "presets/custom_boxes.yaml", "tiny.yaml", "--cores", "2",
                       *targets, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = workflow_copy / "results" / "custom_boxes"
    expected = read_dataset("boxes", folder, box_units="pixels")
    annotations = pd.read_parquet(results / "annotations.parquet")
    pd.testing.assert_frame_equal(annotations, expected.annotations)
    skipped = pd.read_csv(results / "skipped.csv")
    assert skipped["reason"].str.startswith("no image 'missing.jpg'").tolist() == [True]
    scores = pd.read_parquet(results / "dinov2" / "frozen" / "alignment.parquet")
    assert set(scores["image_id"]) == set(annotations["image_id"]) and len(set(scores["image_id"])) == 3
    assert scores["iou"].between(0, 1).all() and scores["scorable"].all()
    probe = pd.read_parquet(results / "dinov2" / "style_probe.parquet")
    # labels.csv's labels reach the probe through finetune.classes: all 6 images carry a mapped style
    assert (probe["n_images"] == 6).all()


ROUTING = """
datasets:
  parts: {format: coco, source: synthetic, synthetic: {n_images: 4}, models: [tiny]}
  mine: {format: boxes, source: synthetic, box_units: fraction, synthetic: {n_images: 4}, models: [tiny]}
  photos: {format: images, source: synthetic, synthetic: {n_images: 4}, models: [tiny]}
  noplace: {format: images, source: synthetic, coordinates: false, synthetic: {n_images: 4}, models: [tiny]}
models:
  tiny: {family: clip, source: tiny, device: cpu}
"""


def planned_jobs(output: str) -> set[tuple[str, str]]:
    """(rule, dataset) of every job a dry run plans."""
    jobs, rule = set(), None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.startswith("wildcards:") and rule:
            values = dict(part.split("=", 1) for part in line[len("wildcards:"):].strip().split(", "))
            if "dataset" in values:
                jobs.add((rule, values["dataset"]))
    return jobs


def test_each_format_plans_the_studies_it_feeds(workflow_copy):
    """coco and boxes: alignment and the style probe; images with coordinates: the street-view studies
    (its manifest job reads the admin table); images without: extraction only."""
    (workflow_copy / "routing.yaml").write_text(ROUTING)
    result = snakemake(workflow_copy, "--configfile", "routing.yaml", "--dry-run", "--cores", "2", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    for dataset in ("parts", "mine"):
        assert {("alignment", dataset), ("style_probe", dataset), ("baselines", dataset)} <= jobs
        assert ("probes", dataset) not in jobs
    assert {("probes", "photos"), ("retrieval", "photos"), ("attention_stats", "photos")} <= jobs
    assert ("alignment", "photos") not in jobs and ("planted_answers", "photos") not in jobs
    noplace = {rule for rule, dataset in jobs if dataset == "noplace"}
    assert noplace == {"synthetic_dataset", "manifest", "extract"}
