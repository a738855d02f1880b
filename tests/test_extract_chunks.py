"""Chunked extraction (extraction.chunk_images): the chunks gathered equal one unchunked extraction."""

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from encoderlens.extract.gather import gather_extraction
from encoderlens.extract.job import extract_manifest
from encoderlens.models.registry import build_tiny

N_IMAGES = 11
BATCH = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(N_IMAGES):
        path = root / f"img{index}.png"
        Image.fromarray(rng.integers(0, 256, size=(30 + index, 40, 3), dtype=np.uint8)).save(path)
        rows.append({"image_id": f"id{index}", "path": str(path),
                     "split": "annotated" if index % 3 else "pool"})
    manifest = root / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    build_tiny("clip", root / "model", seed=0)
    identity = {"model": "tiny_clip", "family": "clip", "model_id": "", "revision": ""}
    settings = {"batch_size": BATCH, "attention_layers": [0, -1], "embedding_layers": [-1],
                "num_workers": 0, "device": "cpu", "precision": "fp32", "image_size": None,
                "rollout": {}, "gradcam_target_class": None}
    return root, manifest, identity, settings


def extract_to(out, setup, rows=None, splits=None):
    root, manifest, identity, settings = setup
    extract_manifest(manifest, root / "model", identity, settings, out / "embeddings.h5",
                     out / "attention.h5", splits=splits, rows=rows)
    return out


def chunked(tmp_path, setup, size, n_chunks, splits=None):
    """Chunks of `size` rows, the last open-ended, as rules/extract.smk plans them; then gathered."""
    folders = []
    for chunk in range(n_chunks):
        start = chunk * size
        stop = None if chunk == n_chunks - 1 else start + size
        folders.append(extract_to(tmp_path / f"chunk{chunk}", setup, (start, stop), splits))
    out = tmp_path / "gathered"
    gather_extraction([str(f / "embeddings.h5") for f in folders],
                      [str(f / "attention.h5") for f in folders], setup[1],
                      out / "embeddings.h5", out / "attention.h5", splits=splits)
    return out, folders


def contents(path):
    with h5py.File(path, "r") as handle:
        arrays = {}
        handle.visititems(lambda name, obj: arrays.__setitem__(name, (obj[()], obj.chunks, obj.compression))
                          if isinstance(obj, h5py.Dataset) else None)
        return arrays, {key: np.asarray(value) for key, value in handle.attrs.items()}


def assert_equal_files(reference, out):
    for name in ("embeddings.h5", "attention.h5"):
        want, want_attributes = contents(reference / name)
        got, got_attributes = contents(out / name)
        assert sorted(want) == sorted(got), name
        for key, (values, chunks, compression) in want.items():
            np.testing.assert_array_equal(got[key][0], values, err_msg=f"{name}:{key}")
            assert got[key][0].dtype == values.dtype and got[key][1:] == (chunks, compression), key
        assert sorted(want_attributes) == sorted(got_attributes)
        for key, value in want_attributes.items():
            np.testing.assert_array_equal(got_attributes[key], value, err_msg=f"{name} attribute {key}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, setup):
    return extract_to(tmp_path_factory.mktemp("reference"), setup)


@pytest.mark.parametrize("size, n_chunks", [
    (4, 3),   # 4 + 4 + 3: a multiple of the batch that does not divide 11
    (3, 4),   # batches of 2 split differently inside each chunk (2+1) than in one run (2+2)
    (4, 4),   # the declared size overstated the manifest: the 4th chunk starts past the end, empty
])
def test_chunks_gathered_equal_one_extraction(tmp_path, setup, reference, size, n_chunks):
    out, folders = chunked(tmp_path, setup, size, n_chunks)
    assert_equal_files(reference, out)
    with h5py.File(folders[0] / "attention.h5") as handle:
        assert len(handle["ids"]) == min(size, N_IMAGES)
    if size * (n_chunks - 1) >= N_IMAGES:
        with h5py.File(folders[-1] / "embeddings.h5") as handle:
            assert len(handle["ids"]) == 0 and "cls" not in handle


def test_chunks_of_a_split_filtered_extraction(tmp_path, setup):
    """rows index the images the extraction covers (here the `annotated` split), as unchunked."""
    reference = extract_to(tmp_path / "reference", setup, splits=["annotated"])
    out, _ = chunked(tmp_path, setup, 3, 3, splits=["annotated"])
    assert_equal_files(reference, out)
    with h5py.File(out / "embeddings.h5") as handle:
        assert handle.attrs["images"] == "annotated" and len(handle["ids"]) == 7


def test_gather_refuses_chunks_that_do_not_cover_the_manifest(tmp_path, setup):
    first = extract_to(tmp_path / "a", setup, (0, 4))
    rest = extract_to(tmp_path / "b", setup, (5, None))  # row 4 missing
    with pytest.raises(ValueError, match=r"b/embeddings.h5: its 6 ids are not rows 4 to 10"):
        gather_extraction([str(first / "embeddings.h5"), str(rest / "embeddings.h5")],
                          [str(first / "attention.h5"), str(rest / "attention.h5")], setup[1],
                          tmp_path / "out/embeddings.h5", tmp_path / "out/attention.h5")
    assert not (tmp_path / "out/embeddings.h5").exists()


def test_gather_refuses_chunks_of_other_settings(tmp_path, setup):
    root, manifest, identity, settings = setup
    first = extract_to(tmp_path / "a", setup, (0, 4))
    other = dict(settings, embedding_layers=[0])
    extract_manifest(manifest, root / "model", identity, other, tmp_path / "b/embeddings.h5",
                     tmp_path / "b/attention.h5", rows=(4, None))
    with pytest.raises(ValueError, match="attribute 'config_sha256'.*differs"):
        gather_extraction([str(first / "embeddings.h5"), str(tmp_path / "b/embeddings.h5")],
                          [str(first / "attention.h5"), str(tmp_path / "b/attention.h5")], manifest,
                          tmp_path / "out/embeddings.h5", tmp_path / "out/attention.h5")
    assert not list((tmp_path / "out").glob("*"))


# ---- the rules: extract_chunk jobs and their gather, in a real Snakemake run ---------------------
CHUNKED_CONFIG = """
datasets:
  streets:
    format: osv5m
    source: synthetic
    synthetic: {{n_images: 9, seed: 0}}
    models: [tiny_clip]
    {extraction}
models:
  tiny_clip: {{family: clip, source: tiny, device: cpu, threads: 1, batch_size: {batch}}}
geo: {{calibration: {{models: []}}}}
"""
FINAL = "results/streets/tiny_clip/frozen"


def jobs_run(result) -> dict[str, int]:
    """rule -> jobs, from the job stats table Snakemake prints."""
    counts, table = {}, False
    for line in result.stderr.splitlines() + result.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        parts = line.split()
        if table and len(parts) == 2 and parts[1].isdigit() and not set(parts[0]) <= {"-"}:
            counts[parts[0]] = int(parts[1])
        elif table and not parts:
            table = False
    counts.pop("total", None)
    return counts


def test_workflow_chunks_rerun_alone_and_gather_to_the_unchunked_files(tmp_path, monkeypatch):
    from conftest import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path / "workflow")
    (workdir / "chunked.yaml").write_text(CHUNKED_CONFIG.format(
        extraction="extraction: {chunk_images: 5}", batch=2))
    chunks = [f"{FINAL}/chunks/{chunk}/{name}.h5" for chunk in ("00000", "00001")
              for name in ("embeddings", "attention")]

    def run(config, *args):
        result = snakemake(workdir, "--configfile", config, "--cores", "2", *args)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    # 9 images declared, chunks of 5 (not a multiple of the batch of 2): rows 0-4 and 5 to the end
    first = run("chunked.yaml", *chunks)
    assert jobs_run(first)["extract_chunk"] == 2
    logs = {chunk: workdir / f"logs/extract/streets/tiny_clip/frozen/chunk_{chunk}.log"
            for chunk in ("00000", "00001")}
    written = {chunk: path.stat().st_mtime_ns for chunk, path in logs.items()}
    (workdir / chunks[0]).unlink()  # chunk 00000 lost (killed, deleted): it alone reruns
    second = run("chunked.yaml", f"{FINAL}/embeddings.h5", f"{FINAL}/attention.h5")
    assert jobs_run(second) == {"extract_chunk": 1, "gather_extraction": 1}
    assert {chunk for chunk, path in logs.items() if path.stat().st_mtime_ns != written[chunk]} == {"00000"}
    assert not (workdir / FINAL / "chunks" / "00001" / "embeddings.h5").exists()  # temporary

    # a setting changed after the chunks are gone is still seen (the gather carries the settings)
    (workdir / "changed.yaml").write_text(CHUNKED_CONFIG.format(
        extraction="extraction: {chunk_images: 5}", batch=3))
    planned = snakemake(workdir, "--configfile", "changed.yaml", "-n", f"{FINAL}/embeddings.h5")
    assert jobs_run(planned) == {"extract_chunk": 2, "gather_extraction": 1}, planned.stdout[-2000:]

    # the gathered files hold what one extraction of the manifest writes (stamps: the library tests)
    monkeypatch.chdir(workdir)  # the manifest's paths are relative to the workflow's folder
    extract_manifest(
        workdir / "results/streets/manifest.parquet", workdir / "resources/models/tiny_clip",
        {"model": "tiny_clip", "family": "clip", "model_id": "", "revision": ""},
        {"batch_size": 2, "attention_layers": "all", "embedding_layers": [], "num_workers": 0,
         "device": "cpu", "precision": "fp32", "image_size": None, "rollout": {},
         "gradcam_target_class": None},
        tmp_path / "reference/embeddings.h5", tmp_path / "reference/attention.h5")
    for name in ("embeddings.h5", "attention.h5"):
        want, got = contents(tmp_path / "reference" / name)[0], contents(workdir / FINAL / name)[0]
        assert sorted(want) == sorted(got) and len(want["ids"][0]) == 9
        for key, (values, chunking, compression) in want.items():
            np.testing.assert_array_equal(got[key][0], values, err_msg=f"{name}:{key}")


def test_gather_decodes_chunks_laid_out_otherwise(tmp_path):
    """Chunk files whose HDF5 layout differs from the final one (here contiguous, uncompressed) are
    copied through their values, in blocks; the result has the final layout."""
    from encoderlens.extract.gather import gather_chunks
    from encoderlens.extract.h5 import write_ids

    rng = np.random.default_rng(1)
    values = rng.random((5, 2, 3)).astype(np.float16)
    paths = []
    for index, rows in enumerate((slice(0, 3), slice(3, 5))):
        path = tmp_path / f"chunk{index}.h5"
        with h5py.File(path, "w") as handle:
            write_ids(handle, [f"i{row}" for row in range(5)][rows])
            handle.create_dataset("cls", data=values[rows])
            handle.attrs["model"] = "m"
            handle.attrs["batch_size"] = (32, 16)[index]  # batch_size auto chose per chunk job
        paths.append(path)
    gather_chunks(paths, tmp_path / "out.h5", [f"i{row}" for row in range(5)])
    with h5py.File(tmp_path / "out.h5") as handle:
        np.testing.assert_array_equal(handle["cls"][()], values)
        assert handle["cls"].chunks == (1, 2, 3) and handle["cls"].compression == "gzip"
        assert handle.attrs["model"] == "m"
        assert handle.attrs["batch_size"].tolist() == [32, 16]
