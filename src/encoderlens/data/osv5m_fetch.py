"""Fetch a (sampled) OSV-5M split from the Hugging Face dataset `osv5m/osv5m`.

The dataset repo holds `<split>.csv` and each split's images as zip shards: `images/test/00.zip` ...
`04.zip` (210,122 images) and `images/train/00.zip` ... `97.zip` (4,894,685 images), about 50,000
`<id>.jpg` each, possibly inside a folder of the zip; the README's `configs` name the files of each
split (`train.csv` + `images/train`, `test.csv` + `images/test`). `fetch_osv5m` downloads the csv
and the chosen shards at one pinned commit into `<dest>.download/` (kept: an interrupted download
resumes there, and a new sample does not download again), draws the sample among the rows whose
image is in those shards, and writes the layout `read_osv5m` expects:

    dest/<split>.csv                       the sampled rows, the original columns in their order
    dest/images/<split>/<shard>/<id>.jpg   only the sampled images (shard as two digits)
    dest/osv5m_fetch.json                  the commit and the sampling settings

`dest` is built in `<dest>.tmp` and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from huggingface_hub import hf_hub_download

from encoderlens.data.archive import safe_extract
from encoderlens.data.osv5m import NAMIBIA, NAMIBIA_SPELLINGS
from encoderlens.models.hub import call_hub, hub_client, resolve_revision

OSV5M_REPO = "osv5m/osv5m"
SPLITS = ("test", "train")
PROVENANCE = "osv5m_fetch.json"


def shard_path(shard: int, split: str = "test") -> str:
    return f"images/{split}/{shard:02d}.zip"


def read_rows(csv_path: Path) -> pd.DataFrame:
    """Every field as the exact string in the file: "NA" stays Namibia, "" stays empty, and floats
    are written back digit for digit."""
    return pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False)


def zip_index(zip_path: Path) -> dict[str, str]:
    """image id -> member name, for every `<id>.jpg` in the zip whatever folder holds it."""
    index = {}
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            base = PurePosixPath(name.replace("\\", "/")).name
            if base.endswith(".jpg"):
                index.setdefault(base[: -len(".jpg")], name)
    return index


def usable_rows(rows: pd.DataFrame, available: dict[str, int]) -> pd.DataFrame:
    """Rows `read_osv5m` will keep: image in a fetched shard, first occurrence of the id, numeric
    coordinates. Sampling only among these makes the sampled dataset read with zero skips."""
    coordinates = rows[["latitude", "longitude"]].apply(pd.to_numeric, errors="coerce")
    keep = (rows["id"].isin(available.keys()) & ~rows["id"].duplicated()
            & coordinates.notna().all(axis=1))
    return rows[keep]


def allocate(sizes: pd.Series, count: int, rng: np.random.Generator) -> pd.Series:
    """How many of `count` draws each group gets: one per group where `count` allows, the rest in
    proportion to what each group has left (largest remainders, ties to the earlier group).

    With fewer draws than groups, `count` groups are drawn (weighted by size) and get one each.
    """
    sizes = sizes.sort_index()
    if count >= sizes.sum():
        return sizes.copy()
    if count < len(sizes):
        chosen = rng.choice(len(sizes), size=count, replace=False, p=(sizes / sizes.sum()).to_numpy())
        return pd.Series(np.isin(np.arange(len(sizes)), chosen).astype(int), index=sizes.index)
    spare = sizes - 1
    quota = (count - len(sizes)) * spare / spare.sum()
    extra = np.floor(quota).astype(int)
    leftover = int(count - len(sizes) - extra.sum())
    # stable sort: equal remainders go to groups in index (country code) order
    order = np.argsort(-(quota - extra).to_numpy(), kind="stable")[:leftover]
    extra.iloc[order] += 1
    return 1 + extra


def draw_sample(rows: pd.DataFrame, count: int | None, seed: int, stratify: str | None) -> pd.DataFrame:
    """`count` rows (all when None), deterministic in `seed`, returned in their original order."""
    if count is not None and count < 0:
        raise ValueError(f"sample_count must be >= 0, got {count}")
    if count is None or count >= len(rows):
        return rows
    rng = np.random.default_rng(seed)
    if stratify is None:
        picked = rng.choice(len(rows), size=count, replace=False)
        return rows.iloc[np.sort(picked)]
    keys = rows[stratify].astype(str)
    if stratify == "country":  # Namibia is one stratum however the file spells it ("NA", "NMB")
        keys = keys.replace(dict.fromkeys(NAMIBIA_SPELLINGS, NAMIBIA))
    groups = pd.Series(np.arange(len(rows))).groupby(keys.to_numpy(), sort=True).indices
    counts = allocate(pd.Series({key: len(ix) for key, ix in groups.items()}), count, rng)
    picked = [rng.choice(groups[key], size=n, replace=False) for key, n in counts.items() if n]
    return rows.iloc[np.sort(np.concatenate(picked))] if picked else rows.iloc[:0]


def fetch_osv5m(dest: str | Path, repo_id: str = OSV5M_REPO, *, revision: str,
                shards: tuple[int, ...] = (0, 1, 2, 3, 4), sample_count: int | None = None,
                seed: int = 0, stratify: str | None = "country", token: str | None = None,
                archive_limits: dict | None = None, split: str = "test") -> Path:
    """Download OSV-5M's `split` (csv + image `shards`) at `revision` and write `dest`, keeping
    `sample_count` images drawn with `seed` (stratified by `stratify`, a csv column, or uniformly).

    `revision` has no default on purpose: a commit sha pins the data a study used.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if stratify not in (None, "country"):
        raise ValueError(f"stratify must be 'country' or None, got {stratify!r}")
    dest = Path(dest)
    cache = dest.with_name(dest.name + ".download")
    api, token, endpoint = hub_client(token)
    commit, files = resolve_revision(api, repo_id, revision, "dataset", token)
    wanted = [f"{split}.csv"] + [shard_path(s, split) for s in shards]
    absent = [name for name in wanted if name not in files]
    if absent:
        raise FileNotFoundError(f"dataset {repo_id}@{commit} has no {absent}")

    local = {}
    for name in wanted:  # one at a time: a shard is about a gigabyte
        local[name] = Path(call_hub(
            f"downloading {name} from dataset {repo_id}@{commit}", token, hf_hub_download, repo_id, name,
            repo_type="dataset", revision=commit, local_dir=cache, token=token or False,
            endpoint=endpoint))

    rows = read_rows(local[f"{split}.csv"])
    missing = [c for c in ("id", "latitude", "longitude", stratify) if c and c not in rows.columns]
    if missing:
        raise ValueError(f"{local[f'{split}.csv']}: missing columns {missing}")
    members, shard_of = {}, {}
    for shard in shards:
        for image_id, member in zip_index(local[shard_path(shard, split)]).items():
            if image_id not in shard_of:  # an id in two shards: the first shard wins
                shard_of[image_id], members[image_id] = shard, member
    sample = draw_sample(usable_rows(rows, shard_of), sample_count, seed, stratify)

    temporary = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        for shard in shards:
            ids = [i for i in sample["id"] if shard_of[i] == shard]
            if ids:
                # safe_extract refuses the whole shard if any member is absolute, has '..' or is a
                # link, or if the sampled members declare more bytes than archive_limits allow
                safe_extract(local[shard_path(shard, split)], temporary / "images" / split / f"{shard:02d}",
                             members=[members[i] for i in ids], flatten=True, **(archive_limits or {}))
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)  # nothing half-extracted is left behind
        raise
    (temporary / "images" / split).mkdir(parents=True, exist_ok=True)
    sample.to_csv(temporary / f"{split}.csv", index=False)
    # the commit a branch name resolved to, and how the sample was drawn
    (temporary / PROVENANCE).write_text(json.dumps(
        {"repo_id": repo_id, "revision": revision, "commit": commit, "split": split, "shards": list(shards),
         "sample_count": sample_count, "seed": seed, "stratify": stratify, "rows": len(sample)}, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(temporary, dest)
    return dest
