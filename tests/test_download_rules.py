"""The download rules inside a real snakemake run, against local stand-ins for the real sources."""

import json

import pandas as pd
import yaml

from conftest import snakemake
from httpserver import serve
from test_download import N_ANNOTATED, _record, zenodo_files  # noqa: F401 (fixture)
from test_hub import osv5m_repo  # noqa: F401 (fixture)

TINY_CLIP = {"family": "clip", "source": "tiny", "device": "cpu", "threads": 1}


def test_the_wikichurches_rule_fetches_verifies_and_reads(workflow_copy, zenodo_files):  # noqa: F811
    files, checksums = _record(zenodo_files)
    files["api/records/5166987"] = json.dumps({"files": [
        {"key": name, "size": len(data), "checksum": checksums[name]}
        for name, data in zenodo_files.items()]}).encode()
    with serve(files) as server:
        config = {"datasets": {"churches": {
            "format": "wikichurches", "source": "download", "models": ["tiny_clip"],
            "download": {"base_url": server.url("records/5166987/files"),
                         "api_url": server.url("api/records/5166987"), "images": "annotated"}}},
            "models": {"tiny_clip": TINY_CLIP}}
        (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config))
        result = snakemake(workflow_copy, "--cores", "2", "results/churches/manifest.parquet",
                           timeout=300)
        requested = [request.path for request in server.requests]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert requested.count("records/5166987/files/images.zip") == 1
    assert requested[0] == "api/records/5166987"  # sizes and md5 sums first
    manifest = pd.read_parquet(workflow_copy / "results/churches/manifest.parquet")
    annotations = pd.read_parquet(workflow_copy / "results/churches/annotations.parquet")
    assert len(manifest) == N_ANNOTATED and set(manifest["split"]) == {"annotated"}
    assert set(annotations["image_id"]) == set(manifest["image_id"])
    assert (workflow_copy / "resources/datasets/churches.download/images.zip").exists()


def test_hub_snapshot_and_osv5m_rules_run_against_a_local_hub(workflow_copy, tmp_path, monkeypatch,
                                                               osv5m_repo):  # noqa: F811
    import h5py

    from fakehub import FakeHub
    from test_hub import tiny_repo

    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        commit = hub.add_repo("someorg/tiny-clip", tiny_repo("clip", tmp_path / "clip"))
        hub.add_repo("osv5m/osv5m", osv5m_repo["repo"], repo_type="dataset")
        config = {"datasets": {"streets": {
            "format": "osv5m", "source": "download", "models": ["hub_clip"],
            "download": {"revision": "main", "shards": [0, 1], "sample_count": 20}}},
            "models": {"hub_clip": {"family": "clip", "source": "hub", "hub_id": "someorg/tiny-clip",
                                    "revision": "main", "device": "cpu", "threads": 1}}}
        (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config))
        result = snakemake(workflow_copy, "--cores", "2",
                           "results/streets/hub_clip/frozen/embeddings.h5", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = pd.read_parquet(workflow_copy / "results/streets/manifest.parquet")
    skipped = pd.read_csv(workflow_copy / "results/streets/skipped.csv")
    assert len(manifest) == 20 and len(skipped) == 0
    with h5py.File(workflow_copy / "results/streets/hub_clip/frozen/embeddings.h5") as handle:
        assert handle.attrs["model_id"] == "someorg/tiny-clip"
        assert handle.attrs["revision"] == commit  # "main" as resolved when the snapshot was taken
        assert handle.attrs["revision_requested"] == "main"
        assert handle["cls"].shape[0] == 20
