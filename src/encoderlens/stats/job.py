"""The statistics of one annotated dataset, from its alignment tables to the tables the report reads.

`alignment_statistics`: the per-map summary with bootstrap CIs, model/baseline comparisons and
tuned-vs-frozen comparisons, from every alignment.parquet of the dataset (models, variants and
baselines). `head_statistics`: the per-head analysis from the alignment_features.parquet tables.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from .bootstrap import DEFAULT_MIN_N
from .comparisons import model_comparisons, variant_comparisons
from .heads import head_feature_iou, head_rank_correlation, head_specialisation, top_heads
from .scores import score_matrix
from .summary import summarise_alignment

log = logging.getLogger(__name__)


def read_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The alignment tables concatenated; an empty or unreadable file is an error naming it."""
    tables = []
    for path in paths:
        try:
            table = pd.read_parquet(path)
        except Exception as error:
            raise ValueError(f"{path}: cannot read the alignment table: {error}") from error
        if table.empty:
            log.warning("%s: no rows (no annotated image was scored)", path)
        tables.append(table)
    if not tables:
        raise ValueError("no alignment tables given")
    return pd.concat(tables, ignore_index=True)


def alignment_statistics(paths: Sequence[str | Path], settings: dict) -> dict[str, pd.DataFrame]:
    """{"summary", "models", "variants"} tables; `settings` is the config's `stats` block."""
    table = read_tables(paths)
    metrics = settings["metrics"]
    compare = settings["comparisons"]
    matrix = score_matrix(table, metrics=sorted(set(metrics) | set(compare["metrics"])),
                          source=", ".join(map(str, paths)))
    resampling = {"n_resamples": settings["n_resamples"], "confidence": settings["confidence"],
                  "seed": settings["seed"], "min_n": settings.get("min_n", DEFAULT_MIN_N)}
    log.info("%d maps x %d images", len(matrix.keys), len(matrix.image_ids))
    summary = summarise_alignment(matrix, metrics, **resampling)
    shared = {"layer_choices": compare["layer_choices"], "scopes": compare["scopes"],
              "method_preference": compare["method_preference"], "alpha": settings["alpha"], **resampling}
    kinds = [kind for kind in compare["kinds"] if kind in ("models", "baselines")]
    models = model_comparisons(matrix, compare["metrics"], kinds=kinds, **shared)
    variant_metrics = compare["metrics"] if "variants" in compare["kinds"] else []
    variants = variant_comparisons(matrix, variant_metrics, **shared)
    log.info("summary %d rows, model comparisons %d, variant comparisons %d",
             len(summary), len(models), len(variants))
    return {"summary": summary, "models": models, "variants": variants}


def head_statistics(paths: Sequence[str | Path], settings: dict) -> dict[str, pd.DataFrame]:
    """{"heads", "specialisation", "correlation", "top"}; `settings` is the `stats.heads` block."""
    table = read_tables(paths)
    feature_iou = head_feature_iou(table, settings["thresholds"])
    min_images = settings["min_images"]
    return {"heads": feature_iou,
            "specialisation": head_specialisation(feature_iou, min_images),
            "correlation": head_rank_correlation(feature_iou, min_images),
            "top": top_heads(feature_iou, settings["top_k"], min_images)}
