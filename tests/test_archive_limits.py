"""Zip bombs (issue #21 item 8): members whose declared uncompressed sizes exceed the limits derived
from the archive's size are refused before anything is written, no temporary folder is left, and a
refusal is not attempted again. Before the fix safe_extract had no size limit, a refused WikiChurches
archive left `<dest>.tmp` behind, and Snakemake retried the refused download twice."""

import json
import zipfile

import pytest
import yaml
from conftest import snakemake
from httpserver import serve
from test_download import FAST, _record, zenodo_files  # noqa: F401 (fixture)

from encoderlens.data.archive import ArchiveTooLargeError, safe_extract
from encoderlens.data.zenodo import fetch_wikichurches

MB = 10**6


def zip_of(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = zip_of(tmp_path / "bomb.zip", {"a.txt": b"small", "zeros.bin": b"\0" * (20 * MB)})
    size = bomb.stat().st_size
    assert 20 * MB / size > 100  # deflated zeros: a ratio in the hundreds
    with pytest.raises(ArchiveTooLargeError) as refused:
        safe_extract(bomb, tmp_path / "out")
    message = str(refused.value)
    assert str(bomb) in message and "'zeros.bin'" in message and f"{20 * MB + 5:,} bytes" in message
    assert f"{100 * size:,}" in message  # the limit: 100 x the archive's size
    assert not (tmp_path / "out").exists()
    # only selected members count: the small one alone is fine
    assert [p.name for p in safe_extract(bomb, tmp_path / "out", members=["a.txt"])] == ["a.txt"]


def test_the_absolute_cap_and_the_ratio_bound_exactly(tmp_path):
    stored = zip_of(tmp_path / "stored.zip", {"x.bin": b"x" * 1000, "y.bin": b"y" * 500},
                    compression=zipfile.ZIP_STORED)  # ratio below 1: only the cap can refuse
    safe_extract(stored, tmp_path / "at_cap", max_bytes=1500)  # exactly the limit passes
    assert (tmp_path / "at_cap" / "x.bin").stat().st_size == 1000
    with pytest.raises(ArchiveTooLargeError, match="1,500 bytes uncompressed, more than the limit of 1,499"):
        safe_extract(stored, tmp_path / "over_cap", max_bytes=1499)
    assert not (tmp_path / "over_cap").exists()
    ratio = 1500 / stored.stat().st_size  # about 0.9
    safe_extract(stored, tmp_path / "at_ratio", max_ratio=ratio + 1e-9)
    with pytest.raises(ArchiveTooLargeError):
        safe_extract(tmp_path / "stored.zip", tmp_path / "over_ratio", max_ratio=ratio * 0.99)


def test_a_refused_wikichurches_archive_leaves_no_temporary_folder(zenodo_files, tmp_path):  # noqa: F811
    files, checksums = _record(zenodo_files)
    names = json.loads(zenodo_files["building_parts.json"])["annotations"]
    bomb = tmp_path / "images.zip"
    zip_of(bomb, {f"wikichurches/images/{name}": b"\0" * (5 * MB) for name in list(names)[:3]})
    files["records/5166987/files/images.zip"] = bomb.read_bytes()
    with serve(files) as server:
        with pytest.raises(ArchiveTooLargeError, match="images.zip"):
            fetch_wikichurches(tmp_path / "wc", server.url("records/5166987/files"), **FAST)
    assert not (tmp_path / "wc").exists() and not (tmp_path / "wc.tmp").exists()
    # the limits come from the workflow's config: raised there, the same archive is extracted
    with serve(files) as server:
        fetch_wikichurches(tmp_path / "wc", server.url("records/5166987/files"),
                           archive_limits={"max_ratio": 10**5}, **FAST)
    assert len(list((tmp_path / "wc" / "images").iterdir())) == 3


def test_the_download_rule_refuses_once_and_leaves_no_temporary_folder(workflow_copy, zenodo_files):  # noqa: F811
    files, checksums = _record(zenodo_files)
    names = list(json.loads(zenodo_files["building_parts.json"])["annotations"])[:3]
    bomb = workflow_copy / "bomb.zip"
    zip_of(bomb, {f"wikichurches/images/{name}": b"\0" * (5 * MB) for name in names})
    files["records/5166987/files/images.zip"] = bomb.read_bytes()
    with serve(files) as server:
        config = {"datasets": {"churches": {
            "format": "wikichurches", "source": "download", "models": ["tiny_clip"],
            "download": {"base_url": server.url("records/5166987/files"), "api_url": None,
                         "images": "annotated"}}},
            "models": {"tiny_clip": {"family": "clip", "source": "tiny", "device": "cpu"}}}
        (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config))
        result = snakemake(workflow_copy, "--cores", "1", "resources/datasets/churches", timeout=300)
    assert result.returncode != 0
    log = (workflow_copy / "logs/datasets/churches.download.log").read_text()
    assert "ArchiveTooLargeError" in log and "images.zip: refusing to extract 3 member(s)" in log
    assert "Trying to restart job" not in result.stdout + result.stderr  # a refusal is not retried
    datasets = workflow_copy / "resources/datasets"
    assert sorted(path.name for path in datasets.iterdir()) == ["churches.download"]  # no churches.tmp
