"""The style-classification task: which images train, which validate, which are held out.

Labels come from the manifest's `styles` (Wikidata ids joined by "|"): an image's class is the first
of its styles that the configured classes map (the real `churches.json` lists several styles for
some churches, e.g. Gothic Revival before Gothic). Images without a mapped style take no part.

Roles:
- `heldout`: the annotated images (split "annotated"). They never train or validate, so their
  attention can be compared between frozen and tuned weights on images the training never saw.
- pool images of a church that has an annotated image are left out altogether (another photo of the
  same facade would leak the held-out church into training); recorded as role `excluded`.
- `train` / `val`: the remaining pool, split stratified by class and grouped by church (two photos
  of one church stay on the same side), seeded.

Pure pandas/scikit-learn: no torch, so the split can be checked without loading a model.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

ROLES = ("train", "val", "heldout", "excluded")
# Fewer style-labelled pool images than this and a study that needs the pool stops before training
# (config finetune.min_pool_images; the real WikiChurches pool holds about 4,790 in the four styles).
MIN_POOL_IMAGES = 20
TASK_COLUMNS = ["image_id", "path", "church_id", "label", "class_name", "role"]


def style_class(styles: str, classes: Mapping[str, str]) -> str:
    """The class name of the first mapped style in a "|"-joined list of Wikidata ids, "" if none."""
    for style in str(styles).split("|"):
        if style in classes:
            return classes[style]
    return ""


def pool_problem(manifest: pd.DataFrame, classes: Mapping[str, str], source, study: str,
                 minimum: int = MIN_POOL_IMAGES, pool_split: str = "pool") -> str:
    """Why the style-labelled pool is too small for `study` ("" when it is not): the message names
    `source` (the manifest read), the count and the minimum. Missing manifest columns raise."""
    missing = [c for c in ("split", "styles") if c not in manifest.columns]
    if missing:
        raise ValueError(f"{source}: {study} needs the manifest columns {missing}")
    labelled = np.array([style_class(s, classes) != "" for s in manifest["styles"]], dtype=bool)
    count = int(((manifest["split"] == pool_split).to_numpy() & labelled).sum())
    if count >= minimum:
        return ""
    names = ", ".join(dict.fromkeys(classes.values()))
    return (f"{source}: {study} needs the style-labelled pool, and it holds {count} images (split "
            f"{pool_split!r}, a style among {names}); at least {minimum} are needed "
            "(finetune.min_pool_images). A WikiChurches folder lists its images in image_meta.json "
            "and their churches' styles in churches.json; a download needs images: annotated+pool.")


def require_pool(manifest: pd.DataFrame, classes: Mapping[str, str], source, study: str,
                 minimum: int = MIN_POOL_IMAGES, pool_split: str = "pool") -> None:
    """ValueError naming `source` and the count when the pool holds fewer than `minimum` style-
    labelled images: never a silent training on the annotated images alone, nor one stopped later for
    want of images (fine-tuning calls it before any model is read)."""
    problem = pool_problem(manifest, classes, source, study, minimum, pool_split)
    if problem:
        raise ValueError(problem)


def style_task(manifest: pd.DataFrame, classes: Mapping[str, str], val_fraction: float = 0.2,
               seed: int = 0, heldout_split: str = "annotated") -> pd.DataFrame:
    """One row per style-labelled image: `image_id, path, church_id, label, class_name, role`.

    `classes` maps Wikidata style ids to class names; several ids may share a name (one class), and
    `label` numbers the distinct names in the order they first appear in `classes`.
    """
    missing = [c for c in ("image_id", "path", "split", "styles") if c not in manifest.columns]
    if missing:
        raise ValueError(f"style task: the manifest lacks columns {missing}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"style task: val_fraction must be in (0, 1), not {val_fraction}")
    names = list(dict.fromkeys(classes.values()))
    table = manifest.copy()
    if "church_id" not in table.columns:
        table["church_id"] = table["image_id"]
    table["class_name"] = [style_class(s, classes) for s in table["styles"]]
    table = table[table["class_name"] != ""].reset_index(drop=True)
    table["label"] = table["class_name"].map({name: i for i, name in enumerate(names)}).astype("int64")

    heldout = table["split"] == heldout_split
    heldout_churches = set(table.loc[heldout, "church_id"])
    excluded = ~heldout & table["church_id"].isin(heldout_churches)
    role = np.where(heldout, "heldout", np.where(excluded, "excluded", "train")).astype(object)

    pool = np.flatnonzero(role == "train")
    if len(pool):
        val = _grouped_stratified_holdout(table["label"].to_numpy()[pool],
                                          table["church_id"].to_numpy()[pool], val_fraction, seed)
        role[pool[val]] = "val"
    table["role"] = role
    return table[TASK_COLUMNS]


def _grouped_stratified_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float,
                                seed: int) -> np.ndarray:
    """Positions of a validation set of about `fraction`, stratified by label, whole groups only."""
    n_splits = max(2, int(round(1 / fraction)))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"style task: {n_groups} churches in the training pool cannot make a "
                         f"{fraction:.0%} validation split; add pool images or raise val_fraction")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, val = next(folds.split(np.zeros(len(labels)), labels, groups))
    return np.sort(val)


def class_counts(task: pd.DataFrame) -> dict:
    """{role: {class name: images}} for the record kept with the weights."""
    counts = task.groupby(["role", "class_name"]).size()
    return {role: {name: int(n) for name, n in counts[role].items()} for role in counts.index.levels[0]
            if role in counts.index.get_level_values(0)}
