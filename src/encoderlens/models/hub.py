"""Hugging Face Hub snapshots of the checkpoints a family loads, pinned to one commit.

`snapshot_model` fetches only what `from_pretrained` reads: config.json (for timm checkpoints it is
timm's own config, holding the normalisation), preprocessor_config.json where the family has one,
and one set of weights: transformers' safetensors file(s) when the repo has them, else its pickle
`pytorch_model.bin` (+ shards). Repo extras (TF/Flax/ONNX weights, open_clip copies, READMEs) never
leave the hub. A pickle checkpoint is safe to fetch because transformers (5.x) loads `.bin` files
only through `torch.load(weights_only=True)`, which refuses pickles that build arbitrary objects.

Configuration, as huggingface_hub's: `HF_ENDPOINT` (a mirror) and `HF_TOKEN` (gated repos, e.g.
DINOv3). Both are read when a function is called, not when a module is imported, and passed to every
hub call explicitly, so the token resolved here is also the one redacted from errors and logs.
`HF_HUB_OFFLINE=1`: no request at all; a snapshot already in `dest` whose hub_snapshot.json names the
same repo and revision (or commit) and whose files match their recorded sizes and SHA-256 is used as
it is, anything else is an error that says what is missing.

Transfer paths: the tests (tests/fakehub.py) serve small files from /resolve and LFS files through a
302 to a CDN, as the Hub does for repos stored on LFS. Repos stored on Xet make huggingface_hub fetch
through hf_xet (installed) instead; that path is NOT exercised by any test here (the fake hub sends
no Xet headers) and relies on huggingface_hub's own tests.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path

from huggingface_hub import HfApi, get_token, snapshot_download
from huggingface_hub.errors import GatedRepoError

from encoderlens.models.families import FAMILIES, HF_CONFIG_FILES, family_traits
from encoderlens.models.snapshot import PROVENANCE, describe_files, hub_offline, snapshot_problem
from encoderlens.secrets import redact, redacted_logs

log = logging.getLogger(__name__)

# which files of a checkpoint each family reads besides its weights (the traits table's, torch-free)
FAMILY_CONFIG_FILES = {name: traits.hub_files for name, traits in FAMILIES.items()}
# the weight files transformers' from_pretrained looks for, safest first; a plain "*.safetensors"
# would also fetch copies for other libraries (open_clip_model.safetensors, model.fp16.safetensors)
WEIGHT_SETS = (
    ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"),
)


class HubError(RuntimeError):
    """A hub request failed. The message is redacted: it never contains the token."""


class CustomCodeError(ValueError):
    """The checkpoint needs code shipped in its repo (`auto_map`), which encoderlens never runs."""


def hub_token(token: str | None = None) -> str | None:
    """The token to send: `token`, else $HF_TOKEN, else the one `hf auth login` stored, else None."""
    return token or os.environ.get("HF_TOKEN") or get_token() or None


def hub_endpoint() -> str | None:
    """$HF_ENDPOINT read now (huggingface_hub reads it once, at import); None means huggingface.co."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return endpoint or None


def hub_client(token: str | None = None) -> tuple[HfApi, str | None, str | None]:
    """(API client, token, endpoint) for one download; the token from the argument or HF_TOKEN."""
    token = hub_token(token)
    endpoint = hub_endpoint()
    # token=False, not None: stop huggingface_hub from looking a token up on its own
    return HfApi(endpoint=endpoint, token=token or False), token, endpoint


def call_hub(what: str, token: str | None, function, /, *args, **kwargs):
    """`function(*args, **kwargs)` with the token redacted from its log lines and from any error.

    The error is re-raised as a HubError *outside* the except block, so that the original exception
    (whose text may hold the token) is not kept as its __context__ and never printed in a traceback.
    """
    with redacted_logs([token]):
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - every failure is reported, redacted
            message = redact(f"{what} failed: {type(error).__name__}: {error}", [token])
            if isinstance(error, GatedRepoError):
                message += ("\n(a gated repo: accept its terms on its hub page with your account, then "
                            "export HF_TOKEN=<a read token of that account>)")
    raise HubError(message)


def resolve_revision(api: HfApi, repo_id: str, revision: str, repo_type: str, token: str | None):
    """(commit sha, files) of `repo_id` at `revision`; every later request names the sha, so a
    branch that moves during the download cannot mix two commits."""
    info = call_hub(f"looking up {repo_type} {repo_id!r} at revision {revision!r}", token,
                    api.repo_info, repo_id, revision=revision, repo_type=repo_type)
    files = [sibling.rfilename for sibling in info.siblings] if info.siblings is not None else None
    if files is None:  # servers that omit siblings: list the tree instead
        files = call_hub(f"listing {repo_id!r} at {info.sha}", token, api.list_repo_files, repo_id,
                         revision=info.sha, repo_type=repo_type)
    return info.sha, files


def weight_files(files: list[str]) -> list[str]:
    """The first weight set of WEIGHT_SETS present at the repo root (safetensors before pickle)."""
    root = [f for f in files if "/" not in f]
    for patterns in WEIGHT_SETS:
        chosen = sorted(f for f in root if any(fnmatch.fnmatchcase(f, p) for p in patterns))
        if chosen:
            return chosen
    raise FileNotFoundError(f"no transformers weights (model.safetensors or pytorch_model.bin, sharded or "
                            f"not) at the repo root; it holds {sorted(files)}")


def refuse_custom_code(folder: Path, hub_id: str) -> None:
    """Raise CustomCodeError if a config names classes from the repo's own code (`auto_map`)."""
    for name in HF_CONFIG_FILES:
        path = folder / name
        if path.is_file():
            auto_map = json.loads(path.read_text()).get("auto_map")
            if auto_map:
                raise CustomCodeError(
                    f"{hub_id}: {name} has auto_map {auto_map}: the model needs code from its repo "
                    f"(trust_remote_code), which encoderlens refuses to run")


def snapshot_model(family: str, hub_id: str, revision: str, dest: str | Path,
                   token: str | None = None) -> Path:
    """Download the files `family` needs from model repo `hub_id` at `revision` into `dest`.

    Built in `<dest>.tmp` and renamed when complete, so `dest` is never half written; a rerun after an
    interruption resumes the partial files kept there. `dest/hub_snapshot.json` records the commit and
    each file's size and SHA-256. With HF_HUB_OFFLINE set, a verified snapshot in `dest` is returned
    without any request (see the module's notes).
    """
    family_traits(family)  # a clear error for an unknown family
    dest = Path(dest)
    if hub_offline():
        problem = snapshot_problem(dest, family, hub_id, revision, digests=True)
        if problem:
            raise HubError(f"HF_HUB_OFFLINE is set, so {hub_id}@{revision} cannot be downloaded, and {dest} "
                           f"holds no usable snapshot of it: {problem}. Take the snapshot once with network "
                           f"access (or copy resources/models/<model>/ from a machine that has it).")
        log.info("HF_HUB_OFFLINE: using the snapshot of %s@%s already in %s (sizes and SHA-256 verified)",
                 hub_id, revision, dest)
        return dest
    temporary = dest.with_name(dest.name + ".tmp")
    api, token, endpoint = hub_client(token)
    commit, files = resolve_revision(api, hub_id, revision, "model", token)
    if "config.json" not in files:
        raise FileNotFoundError(f"{hub_id}@{commit}: no config.json; files: {sorted(files)}")
    configs = [name for name in FAMILY_CONFIG_FILES[family] if name in files]
    weights = weight_files(files)

    def download(patterns: list[str]) -> None:
        call_hub(f"downloading {patterns} from {hub_id}@{commit}", token, snapshot_download, hub_id,
                 revision=commit, local_dir=temporary, allow_patterns=patterns, token=token or False,
                 endpoint=endpoint, cache_dir=temporary / ".cache" / "hub")

    download(configs)  # the configs first: refuse custom code before fetching any weights
    try:
        refuse_custom_code(temporary, hub_id)
    except CustomCodeError:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    download(configs + weights)

    wanted = set(configs + weights)
    missing = sorted(name for name in wanted if not (temporary / name).is_file())
    if missing:
        raise HubError(f"{hub_id}@{commit}: download finished without {missing}")
    for entry in temporary.iterdir():  # resume metadata and leftovers of an earlier attempt
        if entry.name not in wanted:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    (temporary / PROVENANCE).write_text(json.dumps(
        {"hub_id": hub_id, "revision": revision, "commit": commit, "family": family,
         "files": sorted(wanted), **describe_files(temporary, wanted)}, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(temporary, dest)
    return dest
