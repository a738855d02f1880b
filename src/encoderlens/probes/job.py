"""Linear probes per label level and feature set: what does a frozen encoder know about place?"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .data import split_level, standardize
from .linear import fit_logistic
from .metrics import macro_f1, majority_top1, topk_accuracy
from .streaming import DEFAULT_CHUNK_ROWS, RowStream, fit_logistic_streaming, stream_moments, streamed_predictions

log = logging.getLogger(__name__)

DEFAULT_LEVELS = ("country", "region", "sub-region", "city")
COLUMNS = ["level", "features", "n_classes", "n_train", "n_test", "dropped_samples", "top1", "top5",
           "macro_f1", "majority_top1", "probeable",
           # beyond the spec'd columns: what else a reader of the table needs
           "dropped_classes", "n_missing", "stratified", "n_iter", "converged", "note"]
# per held-out image: the probe's answer (`run_probes(..., ids=...)`); mean(correct) per (level,
# features) is that row's top1
PREDICTION_COLUMNS = ["image_id", "level", "features", "true_label", "pred_label", "confidence", "correct"]


def run_probes(features: Mapping[str, np.ndarray], labels: pd.DataFrame,
               levels: Sequence[str] = DEFAULT_LEVELS, min_per_class: int = 2, test_size: float = 0.2,
               seed: int = 0, C: float = 1.0, device: str = "auto", max_iter: int = 1000,
               tol: float = 1e-5, dtype: str = "float32", stream_rows: int | None = None,
               chunk_rows: int = DEFAULT_CHUNK_ROWS,
               ids=None) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (level, features): a multinomial logistic probe on standardised features.

    features: name -> (N, D) array, rows in the order of `labels` (e.g. "cls", "mean", "layers/7"
    from embeddings.h5). labels: N rows with one string column per level. Per level: samples whose
    label is "" are left out (n_missing), classes with fewer than `min_per_class` samples are dropped
    (dropped_samples, dropped_classes), then one seeded stratified 80/20 split (shared by every
    feature set, so feature sets are compared on the same samples); features are standardised with
    training statistics and probed with `fit_logistic` (C, max_iter, tol, device, dtype).
    A level with fewer than two classes left, or an empty test set, is reported with
    probeable=False and NaN metrics.

    tol defaults to 1e-5, ten times tighter than scikit-learn's 1e-4: the test is on max |gradient|
    of the mean loss, and each class's gradient shrinks with its share of the data, so with hundreds
    of classes 1e-4 stops well short of the optimum (16,000 x 512 features, 800 classes: top-1 0.58
    at 1e-4, 0.622 at 1e-5, 0.621 at 1e-6 and at 1e-7 in float64) and the accuracy then depends on
    the optimiser's path rather than on the features. Rows whose fit missed the tolerance have
    converged=False.

    top1/top5: accuracy of the argmax / of the five highest scores; macro_f1 over the classes in the
    test set; majority_top1: the most frequent training class predicted for every test sample.

    Large sets: features may be on-disk arrays (h5py datasets). A level with more than `stream_rows`
    training rows (None: never) is fitted by `fit_logistic_streaming`, the same objective and solver
    with the rows read and standardised in blocks of `chunk_rows`; smaller ones are read into memory
    and fitted full-batch by `fit_logistic`.

    ids: (N,) image ids in the order of `labels`. Given, the result is (table, predictions):
    predictions holds one row per held-out (test) sample of every probeable (level, features)
    (PREDICTION_COLUMNS): its true and predicted class and `confidence`, the predicted class's
    softmax probability; the mean of `correct` per (level, features) is the table's top1.
    """
    n = len(labels)
    for name, array in features.items():
        if len(array) != n:
            raise ValueError(f"features {name!r} have {len(array)} rows, labels have {n}")
    missing_levels = [level for level in levels if level not in labels.columns]
    if missing_levels:
        raise KeyError(f"label levels not in labels: {missing_levels}")

    rows, answers = [], []
    for level in levels:
        split = split_level(labels[level].to_numpy(), min_per_class, test_size, seed)
        base = dict(level=level, n_classes=len(split.classes), n_train=len(split.train),
                    n_test=len(split.test), dropped_samples=split.dropped_samples,
                    dropped_classes=split.dropped_classes, n_missing=split.n_missing,
                    stratified=split.stratified)
        note = ""
        if len(split.classes) < 2:
            note = f"{len(split.classes)} class(es) with >= {min_per_class} samples"
        elif len(split.test) == 0:
            note = "empty test set"
        if note:
            log.info("level %s is not probeable: %s", level, note)
            rows.extend(dict(base, features=name, top1=np.nan, top5=np.nan, macro_f1=np.nan,
                             majority_top1=np.nan, probeable=False, n_iter=0, converged=False,
                             note=note) for name in features)
            continue
        y_train = split.labels[split.train]
        y_test = split.labels[split.test]
        majority = majority_top1(y_train, y_test)
        for name, array in features.items():
            if stream_rows is not None and len(split.train) > stream_rows:
                metrics, y_pred, confidence = _streamed_probe(array, split, y_train, y_test, C, max_iter, tol,
                                                              device, seed, dtype, chunk_rows)
                rows.append(dict(base, **metrics, features=name, majority_top1=majority))
                answers.append(_answers(ids, split.test, level, name, y_test, y_pred, confidence))
                continue
            array = np.asarray(array)
            X_train, X_test = standardize(array[split.train], array[split.test])
            probe = fit_logistic(X_train, y_train, C=C, max_iter=max_iter, tol=tol, device=device,
                                 seed=seed, dtype=dtype)
            scores = probe.decision_function(X_test)
            y_index = np.searchsorted(probe.classes, y_test)  # every test class is a training class
            y_pred = probe.classes[np.argmax(scores, axis=1)]
            answers.append(_answers(ids, split.test, level, name, y_test, y_pred, top_probability(scores)))
            rows.append(dict(base, features=name, top1=float(np.mean(y_pred == y_test)),
                             top5=topk_accuracy(scores, y_index, 5), macro_f1=macro_f1(y_test, y_pred),
                             majority_top1=majority, probeable=True, n_iter=probe.n_iter,
                             converged=probe.converged, note=""))
    table = pd.DataFrame(rows, columns=COLUMNS)
    if ids is None:
        return table
    answers = [frame for frame in answers if frame is not None and len(frame)]
    predictions = (pd.concat(answers, ignore_index=True) if answers
                   else pd.DataFrame({column: [] for column in PREDICTION_COLUMNS}))
    return table, predictions


def top_probability(scores: np.ndarray) -> np.ndarray:
    """(N,) softmax probability of each row's highest-scoring class: 1 / sum_k exp(s_k - max s)."""
    scores = np.asarray(scores, dtype=np.float64)
    return 1.0 / np.exp(scores - scores.max(axis=1, keepdims=True)).sum(axis=1)


def _answers(ids, test, level, features, y_test, y_pred, confidence) -> pd.DataFrame | None:
    """The held-out samples' answers of one (level, features) probe (None without ids)."""
    if ids is None:
        return None
    return pd.DataFrame({"image_id": np.asarray(ids, dtype=object)[test], "level": level, "features": features,
                         "true_label": np.asarray(y_test, dtype=object), "pred_label": np.asarray(y_pred, dtype=object),
                         "confidence": np.asarray(confidence, dtype=np.float64),
                         "correct": np.asarray(y_pred == y_test, dtype=bool)}, columns=PREDICTION_COLUMNS)


def _streamed_probe(source, split, y_train, y_test, C, max_iter, tol, device, seed, dtype,
                    chunk_rows) -> tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, predicted class, its probability) of one streamed probe (`fit_logistic_streaming`),
    test rows scored block by block."""
    train = RowStream(source, split.train, chunk_rows)
    mean, std = stream_moments(train)
    probe = fit_logistic_streaming(train, y_train, C=C, max_iter=max_iter, tol=tol, device=device,
                                   seed=seed, dtype=dtype, mean=mean, std=std)
    y_index = np.searchsorted(probe.classes, y_test)  # every test class is a training class
    best, top5_hits, confidence = streamed_predictions(probe, RowStream(source, split.test, chunk_rows), y_index,
                                                       mean, std)
    y_pred = probe.classes[best]
    log.info("streamed probe: %d training rows in blocks of %d, %d iterations", len(split.train),
             chunk_rows, probe.n_iter)
    metrics = dict(top1=float(np.mean(y_pred == y_test)), top5=top5_hits / len(y_test),
                   macro_f1=macro_f1(y_test, y_pred), probeable=True, n_iter=probe.n_iter,
                   converged=probe.converged, note="")
    return metrics, y_pred, confidence
