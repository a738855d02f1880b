"""Linear probes: multinomial logistic regression on frozen embeddings, per label level.

`fit_logistic` is the solver (full-batch L-BFGS in torch, scikit-learn's objective and stopping rule;
see `linear`); `run_probes` drives it over label levels and feature sets and returns one table row
per (level, features).
"""

from .data import MISSING, LevelSplit, level_labels, split_level, standardize, stratified_split
from .linear import LogisticProbe, fit_logistic, resolve_device
from .metrics import macro_f1, majority_top1, topk_accuracy
from .job import COLUMNS, DEFAULT_LEVELS, run_probes

__all__ = [
    "COLUMNS", "DEFAULT_LEVELS", "LevelSplit", "LogisticProbe", "MISSING", "fit_logistic",
    "level_labels", "macro_f1", "majority_top1", "resolve_device", "run_probes", "split_level",
    "standardize", "stratified_split", "topk_accuracy",
]
