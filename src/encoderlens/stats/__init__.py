"""Statistics of the alignment study: bootstrap CIs of mean scores, paired tests with Holm's
correction and Cohen's d_z, and the per-head analysis. Pure functions over tables and arrays; no
torch."""

from .bootstrap import MeanIntervals, bootstrap_mean_ci, resample_counts, resample_generator
from .comparisons import (LAYER_CHOICES, MODEL_COMPARISON_COLUMNS, VARIANT_COMPARISON_COLUMNS,
                          choose_layers, head_mean_maps, model_comparisons, scope_maps, threshold_free,
                          variant_comparisons)
from .heads import (head_feature_iou, head_rank_correlation, head_specialisation,
                    normalised_entropy_specialisation, top_heads)
from .paired import holm, paired_test
from .scores import MAP_KEYS, METRICS, ScoreMatrix, score_matrix
from .job import alignment_statistics, head_statistics
from .summary import SUMMARY_COLUMNS, summarise_alignment

__all__ = [
    "LAYER_CHOICES", "MAP_KEYS", "METRICS", "MODEL_COMPARISON_COLUMNS", "MeanIntervals", "SUMMARY_COLUMNS",
    "ScoreMatrix", "VARIANT_COMPARISON_COLUMNS", "alignment_statistics", "bootstrap_mean_ci", "choose_layers",
    "head_feature_iou", "head_mean_maps", "head_rank_correlation", "head_specialisation", "head_statistics",
    "holm", "model_comparisons", "normalised_entropy_specialisation", "paired_test", "resample_counts",
    "resample_generator", "score_matrix", "scope_maps", "summarise_alignment", "threshold_free", "top_heads",
    "variant_comparisons",
]
