"""A local dataset edited in place makes its manifest and everything computed from it stale (issue #21
item 1): a real snakemake run on a local WikiChurches folder, then dry runs after each kind of edit.

Before the fix the manifest's only input was the folder, whose modification time does not change when a
file inside it is rewritten, so every dry run below said "Nothing to be done".
"""

import json
import os

import pytest
import yaml

from conftest import clone_run, copy_workflow, snakemake
from encoderlens.data.listing import listing_fingerprint, metadata_files
from encoderlens.data.synthetic_churches import write_synthetic_churches

pytestmark = pytest.mark.e2e

DATASET = "local_churches"
TARGET = f"results/stats/{DATASET}/alignment_summary.parquet"
STALE = {"manifest", "baselines", "extract", "alignment", "alignment_statistics"}


def planned(workdir):
    """rule -> reason of every job a dry run of TARGET plans."""
    result = snakemake(workdir, "--dry-run", "--cores", "1", TARGET, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs, rule = {}, None
    for line in result.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            jobs[rule] = ""
        elif rule and line.strip().startswith("reason:"):
            jobs[rule] = line.strip()
    if not jobs:
        assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
    return jobs


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("local_dataset")
    workdir = copy_workflow(base / "workflow")
    write_synthetic_churches(workdir / "data" / "churches", n_images=8, seed=0, n_annotated=4)
    config = {
        "datasets": {DATASET: {"format": "wikichurches", "source": "local", "path": "data/churches",
                               "models": ["tiny_mae"]}},
        "models": {"tiny_mae": {"family": "mae", "source": "tiny", "device": "cpu", "threads": 1}},
        "alignment": {"analysis_size": 32, "random_draws": 2},
        "stats": {"n_resamples": 200},
        "dashboard": {"enabled": False},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "2", TARGET)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir


def test_an_untouched_local_dataset_plans_nothing(local_run):
    assert planned(local_run) == {}


def test_rewriting_building_parts_json_reruns_the_manifest_and_what_follows(local_run, tmp_path):
    run = clone_run(local_run, tmp_path / "run")
    parts_path = run / "data/churches/building_parts.json"
    parts = json.loads(parts_path.read_text())
    first = next(iter(parts["annotations"].values()))
    first["bbox_groups"][0]["elements"][0]["width"] *= 0.5  # an expert corrects one box
    parts_path.write_text(json.dumps(parts))  # in place: the folder's own mtime does not move
    jobs = planned(run)
    assert STALE <= set(jobs), jobs
    assert "building_parts.json" in jobs["manifest"], jobs["manifest"]


def test_replacing_an_image_in_place_reruns_the_manifest_and_what_follows(local_run, tmp_path):
    run = clone_run(local_run, tmp_path / "run")
    folder = run / "data/churches"
    image = sorted((folder / "images").iterdir())[0]
    before = listing_fingerprint(folder)
    image.write_bytes(image.read_bytes()[:-1] + b"\0")  # same name, same size, new content
    assert listing_fingerprint(folder) != before
    jobs = planned(run)
    assert STALE <= set(jobs), jobs
    assert "Params have changed" in jobs["manifest"], jobs["manifest"]


def test_reading_the_dataset_changes_nothing(local_run, tmp_path):
    # the fingerprint reads no file and the manifest job reads images without touching them
    folder = local_run / "data/churches"
    assert listing_fingerprint(folder) == listing_fingerprint(folder)
    names = {os.path.basename(path) for path in metadata_files("wikichurches", folder)}
    assert {"building_parts.json", "churches.json"} <= names <= {"building_parts.json", "churches.json",
                                                                  "image_meta.json"}
    assert all((folder / name).is_file() for name in names)  # only those present
    assert metadata_files("captions", folder) == [str(folder / "captions.csv")]  # none: named missing
