"""Downloads, safe extraction and the WikiChurches fetch, against a local server on 127.0.0.1 only."""

import hashlib
import io
import json
import logging
import random
import stat
import zipfile

import pytest
from httpserver import http_server, serve  # noqa: F401  (http_server is a fixture)

from encoderlens.data.archive import UnsafeArchiveError, safe_extract
from encoderlens.data.download import ChecksumError, DownloadError, download_file
from encoderlens.data.synthetic_churches import write_synthetic_churches
from encoderlens.data.wikichurches import read_wikichurches
from encoderlens.data.zenodo import (MARKER, WIKICHURCHES_FILES, fetch_wikichurches,
                                     zenodo_file_info)

DATA = random.Random(0).randbytes(300_000)
MD5 = "md5:" + hashlib.md5(DATA).hexdigest()
CHUNK = 4096
# Tests wait milliseconds, not seconds, between retries. A drop loses the chunk being read, so the
# tests drop connections at whole chunks to know exactly which bytes the part keeps.
FAST = {"backoff": 0.01, "timeout": 5, "chunk_size": CHUNK}


@pytest.fixture
def server(http_server):  # noqa: F811
    http_server.files["data.bin"] = DATA
    return http_server


# ---- download_file -----------------------------------------------------------------------------
def test_full_download_verifies_and_then_skips(server, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    sha = "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert download_file(server.url("data.bin"), dest, checksum=sha, expected_size=len(DATA),
                         **FAST) == dest
    assert dest.read_bytes() == DATA and not dest.with_name("data.bin.part").exists()
    assert [(r.range, r.status, r.bytes_sent) for r in server.requests] == [(None, 200, len(DATA))]
    download_file(server.url("data.bin"), dest, checksum=MD5, **FAST)  # present and verified
    assert len(server.requests) == 1


def test_dropped_connection_keeps_part_and_next_call_resumes(server, tmp_path):
    dest, half = tmp_path / "data.bin", 36 * CHUNK
    server.drop_next(after_bytes=half)
    with pytest.raises(DownloadError, match="data.bin"):
        download_file(server.url("data.bin"), dest, checksum=MD5, retries=0, **FAST)
    assert not dest.exists() and dest.with_name("data.bin.part").stat().st_size == half
    download_file(server.url("data.bin"), dest, checksum=MD5, retries=0, **FAST)
    first, second = server.requests
    assert first.range is None and first.bytes_sent == half
    assert second.range == f"bytes={half}-" and second.status == 206
    assert second.bytes_sent == len(DATA) - half
    assert dest.read_bytes() == DATA


def test_drop_is_retried_within_one_call(server, tmp_path):
    server.drop_next(after_bytes=2 * CHUNK, n=3)  # three drops in a row, each making progress
    download_file(server.url("data.bin"), tmp_path / "data.bin", checksum=MD5, retries=1, **FAST)
    assert [r.range for r in server.requests] == [None] + [f"bytes={k * 2 * CHUNK}-" for k in (1, 2, 3)]
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    dest = tmp_path / "data.bin"
    with serve({"data.bin": DATA}, honor_range=False) as server:
        server.drop_next(after_bytes=2 * CHUNK)
        with pytest.raises(DownloadError):
            download_file(server.url("data.bin"), dest, retries=0, **FAST)
        download_file(server.url("data.bin"), dest, checksum=MD5, **FAST)
        second = server.requests[1]
    assert second.range == f"bytes={2 * CHUNK}-" and second.status == 200
    assert second.bytes_sent == len(DATA) and dest.read_bytes() == DATA


def test_inconsistent_content_range_discards_the_part(server, tmp_path):
    dest = tmp_path / "data.bin"
    server.drop_next(after_bytes=2 * CHUNK)
    with pytest.raises(DownloadError):
        download_file(server.url("data.bin"), dest, retries=0, **FAST)
    server.misrange_next(100)
    download_file(server.url("data.bin"), dest, checksum=MD5, retries=2, **FAST)
    assert [(r.range, r.status) for r in server.requests] == [
        (None, 200), (f"bytes={2 * CHUNK}-", 206), (None, 200)]  # wrong start: restart from zero
    assert dest.read_bytes() == DATA


def test_complete_part_is_verified_not_fetched_again(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(DATA)  # killed after the last byte, before rename
    download_file(server.url("data.bin"), dest, checksum=MD5, **FAST)
    assert [(r.range, r.status) for r in server.requests] == [(f"bytes={len(DATA)}-", 416)]
    dest.unlink()
    dest.with_name("data.bin.part").write_bytes(DATA)
    download_file(server.url("data.bin"), dest, expected_size=len(DATA), checksum=MD5, **FAST)
    assert len(server.requests) == 1 and dest.read_bytes() == DATA  # the size said it all


def test_checksum_mismatch_deletes_partial_and_names_file(server, tmp_path):
    dest, wrong = tmp_path / "data.bin", "0" * 32
    with pytest.raises(ChecksumError) as caught:
        download_file(server.url("data.bin"), dest, checksum=f"md5:{wrong}", **FAST)
    message = str(caught.value)
    assert str(dest) in message and server.url("data.bin") in message
    assert wrong in message and hashlib.md5(DATA).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_size_announced_by_server_must_match(server, tmp_path):
    with pytest.raises(DownloadError, match=f"server reports {len(DATA)} bytes, expected 10"):
        download_file(server.url("data.bin"), tmp_path / "data.bin", expected_size=10, **FAST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried(server, tmp_path, status):
    server.fail_next(2, status=status)
    download_file(server.url("data.bin"), tmp_path / "data.bin", checksum=MD5, **FAST)
    assert [r.status for r in server.requests] == [status, status, 200]


def test_persistent_500_fails_after_retries_naming_url_and_status(server, tmp_path):
    server.fail_next(100, status=500)
    with pytest.raises(DownloadError) as caught:
        download_file(server.url("data.bin"), tmp_path / "data.bin", retries=3, **FAST)
    assert server.url("data.bin") in str(caught.value) and "HTTP 500" in str(caught.value)
    assert len(server.requests) == 4  # the first attempt and three retries


@pytest.mark.parametrize("status", [404, 403])
def test_client_errors_fail_at_once(server, tmp_path, status):
    server.fail_next(1, status=status)
    with pytest.raises(DownloadError) as caught:
        download_file(server.url("data.bin"), tmp_path / "data.bin", **FAST)
    assert server.url("data.bin") in str(caught.value) and f"HTTP {status}" in str(caught.value)
    assert len(server.requests) == 1 and list(tmp_path.iterdir()) == []


def test_timeout_is_retried(server, tmp_path):
    server.delay_next(2.0)
    download_file(server.url("data.bin"), tmp_path / "data.bin", checksum=MD5, backoff=0.01,
                  timeout=0.3)
    assert len(server.requests) == 2 and (tmp_path / "data.bin").read_bytes() == DATA


def test_token_never_appears_in_errors_or_logs(server, tmp_path, caplog):
    token = "sekrit-TOKEN-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    caplog.set_level(logging.DEBUG)  # urllib3's and requests' own debug lines included
    errors = []

    def attempt(url, headers=auth, **kw):
        with pytest.raises(DownloadError) as caught:
            download_file(url, tmp_path / "out.bin", headers=headers, retries=1,
                          **{**FAST, **kw})
        errors.append(caught.value)

    server.fail_next(10, status=500)
    attempt(server.url("data.bin"))
    attempt(server.url("missing.bin"))                          # 404
    server.delay_next(2.0, n=2)
    attempt(server.url("data.bin"), timeout=0.2)                # read timeouts
    with serve() as closed:
        refused = closed.url("data.bin")
    attempt(refused)                                            # connection refused
    attempt(server.url("data.bin"), headers={"Authorization": f"Bearer {token}\n"})  # invalid header
    attempt(f"{refused}?download=1&token={token}", headers={})  # a token in the query string
    assert server.requests[0].headers.get("Authorization") == f"Bearer {token}"  # it was sent
    for error in errors:
        assert token not in str(error) and token not in repr(error.__cause__)
    assert token not in caplog.text


# ---- safe_extract ------------------------------------------------------------------------------
def _zip(path, members):
    """members: (name, bytes) or a ZipInfo with bytes, for names zipfile would refuse to make."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _symlink_info(name):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("evil", ["../evil.txt", "a/../../evil.txt", "/abs.txt", "C:/win.txt",
                                  "..\\evil.txt", "link"])
def test_unsafe_members_are_refused_before_writing(tmp_path, evil):
    member = _symlink_info(evil) if evil == "link" else evil
    archive = _zip(tmp_path / "bad.zip", [("good.txt", b"fine"), (member, b"/etc/passwd")])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, dest)
    assert repr(evil) in str(caught.value) and str(archive) in str(caught.value)
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_safe_extract_selects_and_flattens(tmp_path):
    archive = _zip(tmp_path / "a.zip", [("top/a.txt", b"a"), ("top/sub/b.txt", b"b"),
                                         ("top/c.txt", b"c")])
    assert safe_extract(archive, tmp_path / "all") == [tmp_path / "all/top/a.txt",
                                                       tmp_path / "all/top/sub/b.txt",
                                                       tmp_path / "all/top/c.txt"]
    assert safe_extract(archive, tmp_path / "some", members=["top/sub/b.txt"]) == \
        [tmp_path / "some/top/sub/b.txt"]
    flat = safe_extract(archive, tmp_path / "flat", flatten=True,
                        select=lambda name: name.endswith(("a.txt", "b.txt")))
    assert flat == [tmp_path / "flat/a.txt", tmp_path / "flat/b.txt"]
    assert (tmp_path / "flat/b.txt").read_bytes() == b"b"
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["a.txt", "b.txt"]  # no temps
    with pytest.raises(KeyError, match="nope"):
        safe_extract(archive, tmp_path / "x", members=["nope"])


# ---- fetch_wikichurches ------------------------------------------------------------------------
N_IMAGES, N_ANNOTATED = 12, 6
OTHER_STYLE_IMAGE = "Q1_wd0.jpg"  # in image_meta.json, of a church of a style the study does not use


@pytest.fixture(scope="module")
def zenodo_files(tmp_path_factory):
    """The six files of a synthetic WikiChurches record, as Zenodo would serve them."""
    root = tmp_path_factory.mktemp("wikichurches_source")
    write_synthetic_churches(root, n_images=N_IMAGES, seed=3, n_annotated=N_ANNOTATED)
    churches = json.loads((root / "churches.json").read_text())
    image_meta = json.loads((root / "image_meta.json").read_text())
    assert all("images" not in info for info in churches.values())  # the real schema: no image list
    image_bytes = (root / "images" / next(iter(image_meta))).read_bytes()
    churches["Q1"] = {"id": "Q1", "name": "Neo-Byzantine church", "built_year": None,
                      "styles": ["Q1056456"], "country": {"id": "Q183", "name": "Germany"},
                      "location": {"lat": 50.0, "lon": 8.0}}
    image_meta[OTHER_STYLE_IMAGE] = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("wikichurches/images/", b"")  # a folder entry, as zip tools write them
        for image in sorted((root / "images").iterdir()):
            archive.write(image, f"wikichurches/images/{image.name}")
        archive.writestr(f"wikichurches/images/{OTHER_STYLE_IMAGE}", image_bytes)
        archive.writestr("wikichurches/images/Q777_wd3.jpg", image_bytes)  # in no JSON file
        archive.writestr("notes/readme.txt", b"unrelated")
    files = {"building_parts.json": (root / "building_parts.json").read_bytes(),
             "churches.json": json.dumps(churches).encode(),
             "image_meta.json": json.dumps(image_meta).encode(),
             "style_names.txt": (root / "style_names.txt").read_bytes(),
             "parent_child_rel.txt": b"", "images.zip": buffer.getvalue()}
    assert set(files) == set(WIKICHURCHES_FILES)
    return files


def _record(zenodo_files):
    """A server laid out like Zenodo's /records/<id>/files/<name>, and the files' md5 sums."""
    files = {f"records/5166987/files/{name}": data for name, data in zenodo_files.items()}
    checksums = {name: "md5:" + hashlib.md5(data).hexdigest() for name, data in zenodo_files.items()}
    return files, checksums


@pytest.mark.parametrize("images", ["annotated", "annotated+pool"])
def test_fetch_wikichurches_end_to_end(zenodo_files, tmp_path, images):
    files, checksums = _record(zenodo_files)
    dest = tmp_path / "wikichurches"
    with serve(files) as server:
        base = server.url("records/5166987/files")
        assert fetch_wikichurches(dest, base, checksums=checksums, images=images, **FAST) == dest
        assert all(r.query == "download=1" for r in server.requests)
        n_requests = len(server.requests)
        fetch_wikichurches(dest, base, checksums=checksums, images=images, **FAST)  # already there
        assert len(server.requests) == n_requests

    annotated = set(json.loads(zenodo_files["building_parts.json"])["annotations"])
    extracted = {p.name for p in (dest / "images").iterdir()}
    every = set(json.loads(zenodo_files["image_meta.json"]))
    assert len(every) == N_IMAGES + 1
    assert extracted == (annotated if images == "annotated" else every - {OTHER_STYLE_IMAGE})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wikichurches", "wikichurches.download"]
    assert (dest / "churches.json").read_bytes() == zenodo_files["churches.json"]  # as shipped

    result = read_wikichurches(dest)
    expected = N_ANNOTATED if images == "annotated" else N_IMAGES
    assert len(result.manifest) == expected and len(result.annotations) > 0
    assert (result.manifest["split"] == "annotated").sum() == N_ANNOTATED
    # Images listed in image_meta.json but not extracted show up as skip records, nothing else.
    assert set(result.skipped["reason"]) == {"missing image file"}
    assert len(result.skipped) == len(every) - expected


def test_fetch_with_the_other_image_set_rebuilds_from_the_cache(zenodo_files, tmp_path):
    files, checksums = _record(zenodo_files)
    dest = tmp_path / "wc"
    with serve(files) as server:
        base = server.url("records/5166987/files")
        fetch_wikichurches(dest, base, checksums=checksums, images="annotated", **FAST)
        fetch_wikichurches(dest, base, checksums=checksums, images="annotated+pool", **FAST)
        assert len(server.requests) == len(WIKICHURCHES_FILES)  # the second call used the cache
    assert len(read_wikichurches(dest).manifest) == N_IMAGES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wc", "wc.download"]


def test_fetch_resumes_an_interrupted_archive_download(zenodo_files, tmp_path):
    files, checksums = _record(zenodo_files)
    dest, cut = tmp_path / "wc", len(zenodo_files["images.zip"]) // 3 // CHUNK * CHUNK
    with serve(files) as server:
        base = server.url("records/5166987/files")
        server.drop_next(after_bytes=cut, path="records/5166987/files/images.zip")
        with pytest.raises(DownloadError, match="images.zip"):
            fetch_wikichurches(dest, base, checksums=checksums, retries=0, **FAST)
        assert not dest.exists() and not (tmp_path / "wc.tmp").exists()
        assert (tmp_path / "wc.download/images.zip.part").stat().st_size == cut

        fetch_wikichurches(dest, base, checksums=checksums, retries=0, keep_archive=False, **FAST)
        zips = server.requests_for("records/5166987/files/images.zip")
    assert len(server.requests) == len(WIKICHURCHES_FILES) + 1  # the metadata was not fetched twice
    assert zips[1].range == f"bytes={cut}-"
    assert zips[1].bytes_sent == len(zenodo_files["images.zip"]) - cut
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wc"]  # keep_archive=False: cache gone
    assert json.loads((dest / MARKER).read_text())["extracted"] == N_ANNOTATED
    assert len(read_wikichurches(dest).manifest) == N_ANNOTATED


def test_fetch_refuses_unsafe_archive_and_foreign_folder(zenodo_files, tmp_path):
    files, checksums = _record(zenodo_files)
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as archive:
        name = next(iter(json.loads(zenodo_files["building_parts.json"])["annotations"]))
        archive.writestr(f"../{name}", b"x")
    files["records/5166987/files/images.zip"] = bad.getvalue()
    with serve(files) as server:
        with pytest.raises(UnsafeArchiveError, match=r"\.\./"):
            fetch_wikichurches(tmp_path / "wc", server.url("records/5166987/files"), **FAST)
        assert not (tmp_path / "wc").exists()
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "notes.txt").write_text("someone else's")
        with pytest.raises(FileExistsError, match="mine"):
            fetch_wikichurches(tmp_path / "mine", server.url("records/5166987/files"), **FAST)


def test_zenodo_file_info_reads_the_records_api(http_server, tmp_path):  # noqa: F811
    http_server.files["api/records/5166987"] = json.dumps({"files": [
        {"key": "images.zip", "size": 123, "checksum": "md5:abc"},
        {"key": "churches.json", "size": 4, "checksum": "md5:def"}]}).encode()
    sizes, checksums = zenodo_file_info(http_server.url("api/records/5166987"))
    assert sizes == {"images.zip": 123, "churches.json": 4}
    assert checksums == {"images.zip": "md5:abc", "churches.json": "md5:def"}


def test_an_empty_file_of_known_size_is_downloaded(server, tmp_path):
    server.files["empty.txt"] = b""
    dest = download_file(server.url("empty.txt"), tmp_path / "empty.txt", expected_size=0,
                         checksum="md5:d41d8cd98f00b204e9800998ecf8427e", **FAST)
    assert dest.read_bytes() == b"" and len(server.requests_for("/empty.txt")) == 1
