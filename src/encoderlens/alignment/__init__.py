"""Do encoders look where experts look? Box masks, attention-mass thresholds, IoU, pointing game.

Pure functions over arrays. A map and a mask meet at one analysis resolution (H, W): maps are
upsampled bilinearly (`upsample`), boxes rasterised by the pixel-centre rule (`box_mask`). Map methods
(`attention.methods.METHODS`, read here by name) and baselines (BASELINES) are registered by name and
scored by the same compiled kernel (`score_maps`, or `score_grid_maps` for maps on their patch grid,
upsampled on the fly).
"""

from ..attention.methods import METHOD_NAMES, MethodMaps, available_methods, read_method
from .baselines import BASELINES, baseline_maps, image_seed, score_baseline
from .masks import box_mask, box_masks, feature_masks, within_tolerance
from .resize import upsample
from .scores import (DEFAULT_TOLERANCE, Scores, coverage, iou, is_scorable, mass_iou, pointing_game,
                     score_grid_maps, score_maps, score_maps_reference)
from .thresholds import DEFAULT_THRESHOLDS, mass_threshold, mass_threshold_counts, mass_threshold_overlaps

__all__ = [
    "BASELINES", "DEFAULT_THRESHOLDS", "DEFAULT_TOLERANCE", "METHOD_NAMES", "MethodMaps", "Scores",
    "available_methods", "baseline_maps", "box_mask", "box_masks", "coverage", "feature_masks",
    "image_seed", "iou", "is_scorable", "mass_iou", "mass_threshold", "mass_threshold_counts",
    "mass_threshold_overlaps", "pointing_game", "read_method", "score_baseline", "score_grid_maps",
    "score_maps", "score_maps_reference", "upsample", "within_tolerance",
]
