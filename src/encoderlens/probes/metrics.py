"""Probe metrics over class scores: top-k accuracy, macro F1, the majority-class baseline."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score


def topk_accuracy(scores: np.ndarray, y_index: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the k highest scores.

    A row counts as a hit when fewer than k classes score strictly higher than its true class, so
    ties are resolved in the sample's favour and top-k never falls below argmax accuracy.
    """
    scores = np.asarray(scores)
    y_index = np.asarray(y_index)
    true = scores[np.arange(len(y_index)), y_index]
    higher = (scores > true[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


def majority_top1(y_train, y_test) -> float:
    """Accuracy of predicting the most frequent training class (ties: the first in sorted order)."""
    classes, counts = np.unique(np.asarray(y_train), return_counts=True)
    majority = classes[np.argmax(counts)]
    return float(np.mean(np.asarray(y_test) == majority))


def macro_f1(y_test, y_pred) -> float:
    """F1 averaged over the classes present in the test set (predictions of other classes count as
    misses of the true class only); a class never predicted scores 0."""
    labels = np.unique(np.asarray(y_test))
    return float(f1_score(y_test, y_pred, labels=labels, average="macro", zero_division=0))
