"""Style linear probe on frozen embeddings: does the embedding carry architectural style at all?

Multinomial logistic regression (L2, standardised features) over the style classes, cross-validated
with folds stratified by class and grouped by church (two photos of one church never sit on both
sides of a fold). Every style-labelled image of the manifest takes part (annotated and pool). One
row per embedding: mean and std of fold accuracy, pooled out-of-fold accuracy, balanced accuracy and
macro-F1, against the chance (1 / classes) and majority-class accuracies. No torch here.
Where cross-validation cannot run (fewer than two style classes, or a class whose images all show one
church: a tiny dataset) the rows say so (computable False, NaN scores, a note) instead of failing.
"""

from __future__ import annotations

import logging
import warnings
from typing import Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .task import MIN_POOL_IMAGES, pool_problem, style_class

log = logging.getLogger(__name__)

COLUMNS = ["model", "feature", "n_images", "n_classes", "folds", "accuracy_mean", "accuracy_std",
           "accuracy", "balanced_accuracy", "macro_f1", "chance_accuracy", "majority_accuracy",
           "computable", "note"]
SCORES = ["accuracy_mean", "accuracy_std", "accuracy", "balanced_accuracy", "macro_f1", "chance_accuracy",
          "majority_accuracy"]


def not_computable_reason(y: np.ndarray, groups: np.ndarray, names: Sequence[str]) -> str:
    """Why cross-validation cannot run on these labels ("" when it can): fewer than two classes, or a
    class whose images all come from one church (it could never sit on both sides of a fold)."""
    classes = np.unique(y)
    if len(classes) < 2:
        return (f"{len(y)} style-labelled image(s) in {len(classes)} class(es); the probe needs at least "
                f"2 classes")
    churches = pd.Series(groups).groupby(y).nunique()
    thin = [f"{names[int(c)]} ({n})" for c, n in churches.items() if n < 2]
    if thin:
        return ("every class needs images of at least 2 churches for cross-validation; churches per "
                "class: " + ", ".join(thin))
    return ""


def read_embeddings(path, features: Sequence[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    with h5py.File(path, "r") as store:
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in store["ids"][()]]
        return ids, {name: store[name][()].astype(np.float32) for name in features if name in store}


def cross_validated_probe(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5,
                          C: float = 1.0, seed: int = 0) -> dict:
    """Out-of-fold predictions of a standardised L2 logistic regression, and their scores."""
    n_groups_per_class = pd.Series(groups).groupby(y).nunique().min()
    folds = int(min(folds, n_groups_per_class))
    if folds < 2:
        raise ValueError("style probe: every class needs images of at least 2 churches for cross-validation")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = np.empty_like(y)
    fold_accuracy = []
    for train, test in splitter.split(X, y, groups):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # a fold may miss a rare class
            probe.fit(X[train], y[train])
        predicted[test] = probe.predict(X[test])
        fold_accuracy.append(float((predicted[test] == y[test]).mean()))
    majority = np.bincount(y).argmax()
    return {"folds": folds, "accuracy_mean": float(np.mean(fold_accuracy)),
            "accuracy_std": float(np.std(fold_accuracy, ddof=1)) if folds > 1 else float("nan"),
            "accuracy": float((predicted == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
            "macro_f1": float(f1_score(y, predicted, average="macro")),
            "chance_accuracy": 1.0 / len(np.unique(y)), "majority_accuracy": float((y == majority).mean())}


def style_probe(embeddings_path, manifest: pd.DataFrame, classes: Mapping[str, str], model: str,
                features: Sequence[str] = ("cls", "mean"), folds: int = 5, C: float = 1.0,
                seed: int = 0, source="manifest", min_pool_images: int = MIN_POOL_IMAGES) -> pd.DataFrame:
    """`source`: the manifest's file, named when its style-labelled pool is too small.

    A probe that cannot run (fewer than two classes, a class from one church only, or a pool smaller
    than `min_pool_images`) gives rows with computable False, NaN scores and the reason as `note`, and
    a warning in the log: a tiny dataset does not stop the default targets, and nothing is silent."""
    too_small = pool_problem(manifest, classes, source, "the style probe", min_pool_images)
    ids, arrays = read_embeddings(embeddings_path, features)
    labels = manifest.set_index("image_id").reindex(ids)
    if labels["styles"].isna().any():
        missing = labels.index[labels["styles"].isna()][:3].tolist()
        raise ValueError(f"{embeddings_path}: image ids not in the manifest, e.g. {missing}")
    names = list(dict.fromkeys(classes.values()))
    class_name = np.array([style_class(s, classes) for s in labels["styles"]])
    labelled = class_name != ""
    y = np.array([names.index(c) for c in class_name[labelled]])
    churches = (labels["church_id"] if "church_id" in labels else labels.index.to_series()).to_numpy()[labelled]
    reason = not_computable_reason(y, churches, names) or too_small
    if reason:
        log.warning("style probe of %s on %s is not computable: %s", model, embeddings_path, reason)
    rows = []
    for feature in features:
        if feature not in arrays:
            continue  # e.g. cls_raw of a family without a CLS token
        if reason:
            scores = {"folds": 0, **dict.fromkeys(SCORES, float("nan")), "computable": False,
                      "note": f"not computable: {reason}"}
        else:
            scores = {**cross_validated_probe(arrays[feature][labelled], y, churches, folds, C, seed),
                      "computable": True, "note": ""}
        rows.append({"model": model, "feature": feature, "n_images": int(labelled.sum()),
                     "n_classes": int(len(np.unique(y))), **scores})
    return pd.DataFrame(rows, columns=COLUMNS)
