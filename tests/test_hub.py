"""Hub snapshots and the OSV-5M fetch, against a fake Hugging Face Hub on 127.0.0.1 (tests/fakehub.py).

How the endpoint is applied: encoderlens reads `HF_ENDPOINT` (and `HF_TOKEN`) when a function is called
and passes `endpoint=`/`token=` to every huggingface_hub call, so the tests set the variables with
monkeypatch and go through exactly the code path a user's environment takes; huggingface_hub's own
import-time copy (`constants.ENDPOINT`) is left alone. `test_fresh_process_with_plain_environment` runs
a snapshot in a child process configured by environment variables only, as in real use. A socket
guard refuses every connection and name lookup other than 127.0.0.1, so a call that ignored the
endpoint would fail rather than reach huggingface.co.
"""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from encoderlens.data.archive import UnsafeArchiveError
from encoderlens.data.osv5m import read_osv5m
from encoderlens.data.osv5m_fetch import allocate, fetch_osv5m
from encoderlens.data.synthetic_streets import OSV5M_COLUMNS, write_synthetic_streets
from encoderlens.models import hub as hub_module
from encoderlens.models.hub import CustomCodeError, HubError, snapshot_model
from encoderlens.models.registry import FAMILIES, build_tiny, load_adapter
from encoderlens.secrets import redact
from fakehub import FakeHub, allow_only_loopback

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent
TOKEN = "hf_FAKEtokenForTests0123456789abcdef"
NEEDED = {"clip": {"config.json", "preprocessor_config.json", "model.safetensors"},
          "resnet": {"config.json", "model.safetensors"}, "timm": {"config.json", "model.safetensors"}}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    allow_only_loopback(monkeypatch.setattr)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # isolation from this machine: a token stored by `hf auth login` must not be picked up
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


def tiny_repo(family: str, folder: Path, seed: int = 0, extras: bool = True,
              pickle_only: bool = False) -> Path:
    """A tiny checkpoint as a hub repo, with the extras real repos carry beside the weights."""
    build_tiny(family, folder, seed=seed)
    state = load_file(folder / "model.safetensors")
    if pickle_only:
        # transformers 5 has no save_pretrained(safe_serialization=False); this is what it wrote
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
    elif extras:
        torch.save(state, folder / "pytorch_model.bin")
        shutil.copy(folder / "model.safetensors", folder / "open_clip_model.safetensors")
        (folder / "README.md").write_text("# tiny\n")
        (folder / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
        (folder / "tf_model.h5").write_bytes(b"junk" * 100)
        (folder / "onnx").mkdir()
        (folder / "onnx" / "model.onnx").write_bytes(b"junk" * 100)
    return folder


def weights(folder, family):
    return load_adapter(family, folder).model.state_dict()


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def snapshot_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ---- model snapshots ----------------------------------------------------------------------------
def test_family_table_matches_registry():
    assert set(hub_module.FAMILY_CONFIG_FILES) == set(FAMILIES)


def test_weight_files_prefers_transformers_safetensors():
    sharded = ["model.safetensors.index.json", "model-00001-of-00002.safetensors",
               "model-00002-of-00002.safetensors", "pytorch_model.bin", "open_clip_model.safetensors",
               "model.fp16.safetensors", "config.json"]
    assert hub_module.weight_files(sharded) == sorted(sharded[:3])
    assert hub_module.weight_files(["pytorch_model.bin", "tf_model.h5", "sub/model.safetensors"]) == [
        "pytorch_model.bin"]


@pytest.mark.parametrize("family", ["clip", "resnet", "timm"])
def test_snapshot_fetches_only_what_the_family_loads(hub, tmp_path, family):
    source = tiny_repo(family, tmp_path / "repo")
    sha = hub.add_repo(f"org/tiny-{family}", source)
    dest = snapshot_model(family, f"org/tiny-{family}", sha, tmp_path / "models" / family)

    assert snapshot_files(dest) == NEEDED[family] | {"hub_snapshot.json"}
    assert sorted(hub.downloads()) == sorted(NEEDED[family])  # each once; no .bin, no junk
    assert not (tmp_path / "models" / f"{family}.tmp").exists()
    assert {r.route for r in hub.requests} <= {"info", "tree", "resolve", "lfs"}
    assert all("authorization" not in r.headers for r in hub.requests)
    assert json.loads((dest / "hub_snapshot.json").read_text())["commit"] == sha
    assert_same_weights(weights(dest, family), weights(source, family))


def test_revision_is_pinned(hub, tmp_path):
    old = hub.add_repo("org/tiny-clip", tiny_repo("clip", tmp_path / "v1", seed=0, extras=False))
    new = hub.add_repo("org/tiny-clip", tiny_repo("clip", tmp_path / "v2", seed=1, extras=False))

    dest = snapshot_model("clip", "org/tiny-clip", old, tmp_path / "pinned")
    assert {r.revision for r in hub.requests if r.server == "hub"} == {old}
    assert_same_weights(weights(dest, "clip"), weights(tmp_path / "v1", "clip"))

    # a branch is resolved once; every file request then names the commit it resolved to
    hub.requests.clear()
    dest = snapshot_model("clip", "org/tiny-clip", "main", tmp_path / "branch")
    info, *rest = [r for r in hub.requests if r.server == "hub"]
    assert info.route == "info" and info.revision == "main"
    assert {r.revision for r in rest} == {new}
    assert json.loads((dest / "hub_snapshot.json").read_text())["commit"] == new
    assert_same_weights(weights(dest, "clip"), weights(tmp_path / "v2", "clip"))


def test_pickle_only_repo_gets_the_bin_loaded_weights_only(hub, tmp_path, monkeypatch):
    source = tiny_repo("clip", tmp_path / "repo", pickle_only=True)  # StreetCLIP ships only this
    sha = hub.add_repo("geo/streetclip-tiny", source)
    dest = snapshot_model("clip", "geo/streetclip-tiny", sha, tmp_path / "streetclip")
    assert snapshot_files(dest) == {"config.json", "preprocessor_config.json", "pytorch_model.bin",
                                    "hub_snapshot.json"}

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = weights(dest, "clip")
    assert calls and all(flag is True for flag in calls)  # transformers' from_pretrained path
    monkeypatch.undo()
    reference = tiny_repo("clip", tmp_path / "reference", extras=False)  # same seed, safetensors
    assert_same_weights(loaded, weights(reference, "clip"))


def write_malicious_bin(path: Path, marker: Path) -> None:
    """A pytorch_model.bin whose unpickling writes `marker`: what a hostile repo could ship."""

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('pwned')",)

    torch.save({"vision_model.post_layernorm.weight": Payload()}, path)


def test_malicious_pickle_is_refused(hub, tmp_path):
    source = tiny_repo("clip", tmp_path / "repo", pickle_only=True)
    marker = tmp_path / "pwned.txt"
    write_malicious_bin(source / "pytorch_model.bin", marker)
    sha = hub.add_repo("evil/clip", source)
    dest = snapshot_model("clip", "evil/clip", sha, tmp_path / "evil")  # fetching never unpickles

    with pytest.raises(Exception, match="(?i)weights.only"):
        load_adapter("clip", dest)
    assert not marker.exists()

    # control: the payload is live, an unrestricted torch.load would have run it
    control = tmp_path / "control.txt"
    write_malicious_bin(tmp_path / "control.bin", control)
    torch.load(tmp_path / "control.bin", weights_only=False)
    assert control.read_text() == "pwned"


def test_custom_code_repo_is_refused_before_weights(hub, tmp_path):
    source = tiny_repo("clip", tmp_path / "repo", extras=False)
    config = json.loads((source / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (source / "config.json").write_text(json.dumps(config))
    (source / "modeling_custom.py").write_text("raise SystemExit('never imported')\n")
    sha = hub.add_repo("org/custom", source)

    with pytest.raises(CustomCodeError, match="auto_map"):
        snapshot_model("clip", "org/custom", sha, tmp_path / "custom")
    assert sorted(hub.downloads()) == ["config.json", "preprocessor_config.json"]
    assert not (tmp_path / "custom").exists() and not (tmp_path / "custom.tmp").exists()


def test_repo_without_transformers_weights_is_refused(hub, tmp_path):
    source = tiny_repo("clip", tmp_path / "repo", extras=False)
    (source / "model.safetensors").rename(source / "open_clip_model.safetensors")
    sha = hub.add_repo("org/openclip-only", source)
    with pytest.raises(FileNotFoundError, match="open_clip_model.safetensors"):
        snapshot_model("clip", "org/openclip-only", sha, tmp_path / "m")
    assert hub.downloads() == []


# ---- tokens -----------------------------------------------------------------------------------
def test_gated_repo_with_token(hub, tmp_path, monkeypatch, caplog, capfd):
    caplog.set_level("DEBUG")
    sha = hub.add_repo("meta/gated", tiny_repo("clip", tmp_path / "repo", extras=False), token=TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    dest = snapshot_model("clip", "meta/gated", sha, tmp_path / "gated")

    assert snapshot_files(dest) == NEEDED["clip"] | {"hub_snapshot.json"}
    on_hub = [r for r in hub.requests if r.server == "hub"]
    assert on_hub and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in on_hub)
    # huggingface_hub drops the token when it follows an LFS redirect to another host
    assert all("authorization" not in r.headers for r in hub.requests if r.server == "cdn")
    out, err = capfd.readouterr()
    assert TOKEN not in caplog.text + out + err


def test_gated_repo_without_token_fails_clearly(hub, tmp_path):
    sha = hub.add_repo("meta/gated", tiny_repo("clip", tmp_path / "repo", extras=False), token=TOKEN)
    with pytest.raises(HubError, match="401"):
        snapshot_model("clip", "meta/gated", sha, tmp_path / "gated")
    assert hub.downloads() == [] and not (tmp_path / "gated").exists()


@pytest.mark.parametrize("failure, status", [("wrong token", "401"), ("server error", "500")])
def test_errors_and_logs_never_show_the_token(hub, tmp_path, monkeypatch, caplog, capfd, failure, status):
    """The fake hub echoes the Authorization header in its error bodies, which huggingface_hub
    quotes in its exception: the token must still appear nowhere."""
    caplog.set_level("DEBUG")
    sha = hub.add_repo("meta/gated", tiny_repo("clip", tmp_path / "repo", extras=False), token=TOKEN)
    token = TOKEN[::-1] if failure == "wrong token" else TOKEN
    monkeypatch.setenv("HF_TOKEN", token)
    if failure == "server error":
        hub.fail("info", 500)

    with pytest.raises(HubError) as raised:
        snapshot_model("clip", "meta/gated", sha, tmp_path / "gated")
    error = raised.value
    shown = "".join(traceback.format_exception(error)) + repr(error)
    assert status in str(error) and "***" in str(error)  # the echo was there, and redacted
    assert token not in shown
    assert error.__context__ is None and error.__cause__ is None  # no unredacted original attached
    out, err = capfd.readouterr()
    assert token not in caplog.text + out + err


def test_logged_hub_warnings_are_redacted(hub, osv5m_repo, tmp_path, monkeypatch, caplog, capfd):
    """huggingface_hub logs the error text when it falls back to a file it already has; with an
    error body that echoes the token, only the log filter stands between the token and the log."""
    caplog.set_level("DEBUG")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    first = hub.add_repo("osv5m/osv5m", osv5m_repo["repo"], repo_type="dataset", token=TOKEN)
    fetch_osv5m(tmp_path / "osv5m", revision=first, shards=(0,), sample_count=5)
    second = hub.add_repo("osv5m/osv5m", osv5m_repo["repo"], repo_type="dataset", token=TOKEN)
    hub.fail("resolve", 403)

    fetch_osv5m(tmp_path / "osv5m", revision=second, shards=(0,), sample_count=5)  # from the cache
    out, err = capfd.readouterr()
    assert "Defaulting to existing file" in caplog.text and "Bearer ***" in caplog.text
    assert TOKEN not in caplog.text + out + err

    # control: without the filter the same run logs the token
    caplog.clear()
    monkeypatch.setattr(hub_module, "redacted_logs", lambda secrets: contextlib.nullcontext())
    fetch_osv5m(tmp_path / "osv5m", revision=second, shards=(0,), sample_count=5)
    assert TOKEN in caplog.text


def test_redact():
    assert redact("Bearer hf_abc and hf_abc", ["hf_abc", None, ""]) == "Bearer *** and ***"
    assert redact("url?token=a%2Fb", ["a/b"]) == "url?token=***"
    assert redact("nothing here", [None]) == "nothing here"


def test_fresh_process_with_plain_environment(hub, tmp_path):
    """HF_ENDPOINT and HF_TOKEN as plain environment variables of a new process (read by
    huggingface_hub at import too), at debug verbosity: it works and prints no token."""
    sha = hub.add_repo("meta/gated", tiny_repo("resnet", tmp_path / "repo", extras=False), token=TOKEN)
    script = (
        "import sys; from fakehub import allow_only_loopback; allow_only_loopback(setattr)\n"
        "from encoderlens.models.hub import snapshot_model\n"
        f"snapshot_model('resnet', 'meta/gated', {sha!r}, sys.argv[1])\n"
        "assert 'torch' not in sys.modules  # a snapshot job does not pay for importing torch\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf_home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_VERBOSITY="debug",
               PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO_ROOT / "src")]))
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "snap")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert TOKEN not in run.stdout + run.stderr
    assert snapshot_files(tmp_path / "snap") == NEEDED["resnet"] | {"hub_snapshot.json"}
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests if r.server == "hub")


# ---- OSV-5M -----------------------------------------------------------------------------------
HELD_BACK = {0: 7, 1: 4}  # of the 1st and 2nd non-Namibian country, this many rows have no image


@pytest.fixture(scope="module")
def osv5m_repo(tmp_path_factory):
    """A synthetic OSV-5M test split in the hub layout: test.csv and images/test/NN.zip shards.

    Shard 00 nests its images in a folder, shard 01 does not; a few rows have their image only in
    shard 02 (not fetched), so availability differs between countries.
    """
    root = tmp_path_factory.mktemp("osv5m")
    source, repo = root / "synthetic", root / "repo"
    write_synthetic_streets(source, n_images=90, seed=3, n_countries=9)
    table = pd.read_csv(source / "test.csv", dtype=str, keep_default_na=False)
    others = [c for c in sorted(set(table["country"])) if c != "NA"]
    held = set()
    for rank, count in HELD_BACK.items():
        held |= set(table.loc[table["country"] == others[rank], "id"][:count])
    kept = [i for i in table["id"] if i not in held]
    (repo / "images" / "test").mkdir(parents=True)
    shard_of = {}
    layout = {0: ("00/{}.jpg", kept[0::2]), 1: ("{}.jpg", kept[1::2]), 2: ("{}.jpg", sorted(held))}
    for shard, (pattern, ids) in layout.items():
        with zipfile.ZipFile(repo / "images" / "test" / f"{shard:02d}.zip", "w") as archive:
            for image_id in ids:
                archive.write(source / "images" / "test" / "00" / f"{image_id}.jpg", pattern.format(image_id))
                shard_of.setdefault(image_id, shard)
            if shard == 0:
                archive.writestr("00/README.txt", "not an image")
    shutil.copy(source / "test.csv", repo / "test.csv")
    (repo / "README.md").write_text("# OSV-5M (synthetic)\n")
    return {"repo": repo, "table": table, "shard_of": shard_of, "held": held}


@pytest.fixture
def fetch(hub, osv5m_repo):
    """fetch_osv5m of shards 00 and 01 at the commit the synthetic dataset was served as."""
    sha = hub.add_repo("osv5m/osv5m", osv5m_repo["repo"], repo_type="dataset")
    return lambda dest, **kwargs: fetch_osv5m(dest, revision=sha, shards=(0, 1), **kwargs)


def test_fetch_osv5m_stratified_sample(hub, fetch, osv5m_repo, tmp_path):
    dest = fetch(tmp_path / "osv5m", sample_count=30, seed=7)
    table, shard_of, held = osv5m_repo["table"], osv5m_repo["shard_of"], osv5m_repo["held"]

    sample = pd.read_csv(dest / "test.csv", dtype=str, keep_default_na=False)
    assert list(sample.columns) == OSV5M_COLUMNS and len(sample) == 30 and sample["id"].is_unique
    assert not set(sample["id"]) & held  # only rows whose image is in a fetched shard
    # rows are copied verbatim: same text, line for line ("NA" stays Namibia, "" stays empty)
    source_lines = dict(zip(table["id"], (osv5m_repo["repo"] / "test.csv").read_text().splitlines()[1:]))
    assert (dest / "test.csv").read_text().splitlines()[1:] == [source_lines[i] for i in sample["id"]]
    assert "NA" in set(sample["country"])

    # stratified: every available country, the rest in proportion to what each has beyond one
    # Namibia is one stratum whether a row spells it "NA" or "NMB"
    available = table[~table["id"].isin(held)]["country"].replace("NMB", "NA").value_counts()
    counts = sample["country"].replace("NMB", "NA").value_counts()
    assert set(counts.index) == set(available.index)
    share = (30 - len(available)) * (available - 1) / (available - 1).sum()
    assert ((counts - 1 - share).abs() < 1).all()

    # only the sampled images, each under its shard's folder
    images = sorted(p.relative_to(dest).as_posix() for p in (dest / "images").rglob("*") if p.is_file())
    assert images == sorted(f"images/test/{shard_of[i]:02d}/{i}.jpg" for i in sample["id"])
    result = read_osv5m(dest)
    assert len(result.manifest) == 30 and result.skipped.empty
    # the manifest reads Namibia's "NMB" (osv5m's fix_namimbia spelling) as "NA"
    assert result.manifest["country"].tolist() == sample["country"].replace("NMB", "NA").tolist()

    # fetched: the csv and the two shards asked for; the full csv stays in the cache
    assert sorted(hub.downloads()) == ["images/test/00.zip", "images/test/01.zip", "test.csv"]
    cached = tmp_path / "osv5m.download" / "test.csv"
    assert cached.read_bytes() == (osv5m_repo["repo"] / "test.csv").read_bytes()
    assert not (tmp_path / "osv5m.tmp").exists()
    commit = hub.repos[("dataset", "osv5m/osv5m")].refs["main"]
    assert {r.revision for r in hub.requests if r.route == "resolve"} == {commit}  # pinned
    assert json.loads((dest / "osv5m_fetch.json").read_text())["commit"] == commit


def test_fetch_osv5m_is_deterministic_and_reuses_the_cache(hub, fetch, osv5m_repo, tmp_path):
    first = fetch(tmp_path / "osv5m", sample_count=30, seed=7)
    text = (first / "test.csv").read_text()
    downloaded = len(hub.downloads())
    again = fetch(tmp_path / "osv5m", sample_count=30, seed=7)
    assert (again / "test.csv").read_text() == text
    assert len(hub.downloads()) == downloaded  # the cache answered: nothing downloaded twice
    other = fetch(tmp_path / "osv5m", sample_count=30, seed=8)
    assert (other / "test.csv").read_text() != text
    everything = fetch(tmp_path / "osv5m", sample_count=None, stratify=None)
    assert len(read_osv5m(everything).manifest) == len(osv5m_repo["table"]) - len(osv5m_repo["held"])


def test_fetch_osv5m_failure_leaves_no_dest_and_keeps_the_cache(hub, fetch, tmp_path):
    hub.fail("lfs", 404)  # the shards (LFS files) cannot be fetched; test.csv can
    with pytest.raises(HubError, match="404"):
        fetch(tmp_path / "osv5m", sample_count=10)
    assert not (tmp_path / "osv5m").exists()
    assert (tmp_path / "osv5m.download" / "test.csv").is_file()
    hub.failures.clear()
    fetch(tmp_path / "osv5m", sample_count=10)
    assert hub.downloads().count("test.csv") == 1  # the rerun took it from the cache


def test_fetch_osv5m_refuses_an_unsafe_shard(hub, osv5m_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(osv5m_repo["repo"], repo)
    with zipfile.ZipFile(repo / "images" / "test" / "01.zip", "a") as archive:
        archive.writestr("../../escaped.jpg", b"not a jpeg")
    sha = hub.add_repo("osv5m/osv5m", repo, repo_type="dataset")
    with pytest.raises(UnsafeArchiveError, match=r"\.\./\.\./escaped\.jpg"):
        fetch_osv5m(tmp_path / "out" / "osv5m", revision=sha, shards=(0, 1), sample_count=30)
    assert not (tmp_path / "out" / "osv5m").exists()
    assert not list(tmp_path.rglob("escaped.jpg"))


def test_allocate_proportional_with_one_each():
    sizes = pd.Series({"A": 10, "B": 5, "C": 1})
    rng = np.random.default_rng(0)
    # one each, then 5 more split 9:4:0 -> quotas 3.46, 1.54 -> 3 + 1, the last to the larger remainder
    assert allocate(sizes, 8, rng).to_dict() == {"A": 4, "B": 3, "C": 1}
    assert allocate(sizes, 16, rng).to_dict() == sizes.to_dict()
    few = allocate(sizes, 2, rng)
    assert few.sum() == 2 and set(few.unique()) <= {0, 1}


# ---- gated repos as the Hub gates them, offline reuse -----------------------------------------------
def test_gated_repo_metadata_is_public_but_files_need_access(hub, tmp_path, monkeypatch):
    """No token: the repo info answers (a gated repo's metadata is public), /resolve answers 401
    GatedRepo; a valid token never granted access: 403 GatedRepo. Both fail before any file."""
    sha = hub.add_repo("meta/gated", tiny_repo("clip", tmp_path / "repo", extras=False), token=TOKEN)
    with pytest.raises(HubError, match="401") as raised:
        snapshot_model("clip", "meta/gated", sha, tmp_path / "gated")
    assert "GatedRepoError" in str(raised.value) and "accept its terms" in str(raised.value)
    statuses = {(r.route, r.status) for r in hub.requests if r.server == "hub"}
    assert ("info", 200) in statuses and ("resolve", 401) in statuses

    other = "hf_OTHERtokenWithoutAccess0123456789"
    hub.add_token(other)
    hub.requests.clear()
    monkeypatch.setenv("HF_TOKEN", other)
    with pytest.raises(HubError, match="403") as raised:
        snapshot_model("clip", "meta/gated", sha, tmp_path / "gated")
    assert "authorized list" in str(raised.value) and other not in str(raised.value)
    assert ("resolve", 403) in {(r.route, r.status) for r in hub.requests}
    assert hub.downloads() == [] and not (tmp_path / "gated").exists()


def test_offline_uses_a_verified_snapshot_without_any_request(hub, tmp_path, monkeypatch):
    sha = hub.add_repo("org/tiny-clip", tiny_repo("clip", tmp_path / "repo", extras=False))
    dest = snapshot_model("clip", "org/tiny-clip", "main", tmp_path / "m")
    record = json.loads((dest / "hub_snapshot.json").read_text())
    weights_file = dest / "model.safetensors"
    assert record["sizes"]["model.safetensors"] == weights_file.stat().st_size
    assert record["sha256"]["model.safetensors"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    for revision in ("main", sha):  # the revision asked for, or the commit it resolved to
        assert snapshot_model("clip", "org/tiny-clip", revision, dest) == dest
    assert hub.requests == []
    with pytest.raises(HubError, match="records revision 'main'"):
        snapshot_model("clip", "org/tiny-clip", "v2", dest)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE.*does not exist"):
        snapshot_model("clip", "org/tiny-clip", "main", tmp_path / "never")

    data = bytearray(weights_file.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed: only the digest tells
    weights_file.write_bytes(bytes(data))
    with pytest.raises(HubError, match="SHA-256"):
        snapshot_model("clip", "org/tiny-clip", "main", dest)
    weights_file.write_bytes(bytes(data[:-1]))
    with pytest.raises(HubError, match="bytes; the snapshot recorded"):
        snapshot_model("clip", "org/tiny-clip", "main", dest)
    assert hub.requests == []


def test_fetch_osv5m_train_split(hub, osv5m_repo, tmp_path):
    """split train: train.csv and images/train/NN.zip (the README's `configs`: train.csv +
    images/train), nothing of the test split; the manifest reads the folder's train.csv."""
    repo = tmp_path / "repo"
    shutil.copytree(osv5m_repo["repo"], repo)
    source = tmp_path / "train_source"
    write_synthetic_streets(source, n_images=24, seed=11, n_countries=4)
    table = pd.read_csv(source / "test.csv", dtype=str, keep_default_na=False)
    table["id"] = "9" + table["id"]  # train ids differ from the test split's
    table.to_csv(repo / "train.csv", index=False)
    (repo / "images" / "train").mkdir(parents=True)
    for shard, ids in enumerate((table["id"][:12], table["id"][12:])):
        with zipfile.ZipFile(repo / "images" / "train" / f"{shard:02d}.zip", "w") as archive:
            for image_id in ids:
                archive.write(source / "images" / "test" / "00" / f"{image_id[1:]}.jpg", f"{image_id}.jpg")
    sha = hub.add_repo("osv5m/osv5m", repo, repo_type="dataset")
    dest = fetch_osv5m(tmp_path / "train", revision=sha, split="train", shards=(1,), sample_count=None)
    assert sorted(hub.downloads()) == ["images/train/01.zip", "train.csv"]
    assert not (dest / "test.csv").exists()
    result = read_osv5m(dest)
    assert result.manifest["image_id"].tolist() == table["id"][12:].tolist()
    assert set(result.manifest["split"]) == {"train"} and result.skipped.empty
    assert json.loads((dest / "osv5m_fetch.json").read_text())["split"] == "train"
    with pytest.raises(ValueError, match="split must be one of"):
        fetch_osv5m(tmp_path / "bad", revision=sha, split="val")
