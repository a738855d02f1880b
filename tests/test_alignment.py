"""Alignment scoring: masks, mass thresholds, IoU / coverage / pointing game, baselines, methods.

Quantus is not installed (it would add opencv-python beside opencv-python-headless in the shared
environment, and is no project dependency); the cross-checks use `reference_scores` below instead: the
definitions written out with Python loops, sorted() and math.fsum, sharing no code with the library.
"""

import math

import h5py
import numpy as np
import pandas as pd
import pytest

from encoderlens.alignment import (BASELINES, METHOD_NAMES, available_methods, baseline_maps, box_mask,
                                   box_masks, coverage, feature_masks, image_seed, iou, mass_iou,
                                   mass_threshold, pointing_game, read_method, score_baseline,
                                   score_maps, upsample, within_tolerance)
from encoderlens.alignment.thresholds import MASS_SLACK

PERCENTS = (10, 15, 20, 25, 30, 40, 50)


# ---- an independent reference ----------------------------------------------------------------------
def reference_scores(saliency, mask, percents, tolerance):
    """IoU per threshold, coverage, pointing hit of one map, by loops over pixels."""
    height, width = len(saliency), len(saliency[0])
    pixels = [(float(np.float32(saliency[r][c])), r, c) for r in range(height) for c in range(width)]
    boxed = {(r, c) for r in range(height) for c in range(width) if mask[r][c]}
    total = math.fsum(v for v, _, _ in pixels)
    ious = []
    for percent in percents:
        ordered = sorted((v for v, _, _ in pixels), reverse=True)
        n = 0
        while math.fsum(ordered[:n]) < (percent / 100 - MASS_SLACK) * total:
            n += 1
        cut = ordered[n - 1]
        above = [(r, c) for v, r, c in pixels if v > cut]
        tied = [(r, c) for v, r, c in pixels if v == cut]
        share = (n - len(above)) / len(tied)
        overlap = sum(1 for p in above if p in boxed) + share * sum(1 for p in tied if p in boxed)
        ious.append(overlap / (n + len(boxed) - overlap))
    cover = math.fsum(v for v, r, c in pixels if (r, c) in boxed) / total
    top = max(v for v, _, _ in pixels)
    maxima = [(r, c) for v, r, c in pixels if v == top]
    near = [p for p in maxima
            if min(math.hypot(p[0] - b[0], p[1] - b[1]) for b in boxed) <= tolerance]
    return ious, cover, len(near) / len(maxima)


def map_zoo(rng, count, size):
    """Maps of every kind the scores must get right: continuous, tied, flat, spiky, signed zeros."""
    height, width = size
    kinds = [
        lambda: rng.random(size),
        lambda: rng.integers(0, 4, size).astype(float),              # many ties at every cut
        lambda: np.full(size, 0.3),                                  # constant
        lambda: np.where(rng.random(size) < 0.7, 0.0, rng.random(size)),  # mostly zeros
        lambda: np.where(rng.random(size) < 0.5, -0.0, rng.random(size)),  # negative zeros
        lambda: (rng.random(size) ** 8).astype(np.float16),          # float16 plateaus, wide range
        lambda: np.pad(np.ones((1, 1)) * 1e4, ((0, height - 1), (0, width - 1))) + rng.random(size),
        lambda: upsample(rng.dirichlet(np.full(9, 0.3)).reshape(3, 3), size),  # smooth, peaked
        lambda: spike_over_dust(rng, size),
    ]
    return np.stack([kinds[i % len(kinds)]() for i in range(count)]).astype(np.float32)


def spike_over_dust(rng, size):
    """One pixel of 1; the rest -0.0 or dust 8+ octaves smaller: high cuts fall among dust and zeros."""
    dust = np.where(rng.random(size) < 0.5, -0.0, rng.uniform(1 / 600, 1 / 300, size))
    dust[0, 0] = 1.0
    return dust


def random_mask(rng, size):
    """A random box, sometimes cut by the border."""
    height, width = size
    top, left = max(rng.integers(-3, height), 0), max(rng.integers(-3, width), 0)
    mask = np.zeros(size, dtype=bool)
    mask[top:top + rng.integers(1, height), left:left + rng.integers(1, width)] = True
    return mask


# ---- upsample ----------------------------------------------------------------------------------------
def test_upsample_shapes_constant_and_convention():
    maps = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float16)
    out = upsample(maps, 16)
    assert out.shape == (2, 3, 16, 16) and out.dtype == np.float32
    assert upsample(np.full((5, 7), 0.25), (20, 30)).shape == (20, 30)
    np.testing.assert_array_equal(upsample(np.full((1, 7, 7), 0.37, dtype=np.float32), 224),
                                  np.float32(0.37))
    # align_corners=False: output centres sample the input at (i + 0.5) * 2 / 4 - 0.5, clamped
    np.testing.assert_allclose(upsample(np.array([[0.0, 1.0]]), (1, 4))[0], [0, 0.25, 0.75, 1])
    np.testing.assert_array_equal(upsample(maps[0], 4), maps[0].astype(np.float32))  # same size


# ---- masks ---------------------------------------------------------------------------------------------
def test_box_mask_pixel_centre_rule():
    # columns: centres (c + 0.5) / 8 in [0.25, 0.75) -> c = 2..5; rows: (r + 0.5) / 4 in [0.5, 1) -> 2, 3
    want = np.zeros((4, 8), dtype=bool)
    want[2:4, 2:6] = True
    np.testing.assert_array_equal(box_mask([[0.25, 0.5, 0.5, 0.5]], (4, 8)), want)
    # a centre on the left/top edge is in, one on the right/bottom edge is out
    on_edges = box_mask([[0.125, 0.125, 0.25, 0.25]], 4)  # edges at centres of pixels 0 and 1
    assert on_edges.sum() == 1 and on_edges[0, 0]
    # narrower than a pixel and between two centres: nothing
    assert not box_mask([[0.3, 0.3, 0.05, 0.05]], 4).any()
    assert box_mask([[0, 0, 1, 1]], (3, 5)).all()
    assert not box_mask(np.zeros((0, 4)), 4).any()


def test_box_mask_clamps_at_the_border():
    # (0.75, -0.25, 0.5, 0.5) clamps to x in [0.75, 1], y in [0, 0.25]: the top-right pixel only
    want = np.zeros((4, 4), dtype=bool)
    want[0, 3] = True
    np.testing.assert_array_equal(box_mask([[0.75, -0.25, 0.5, 0.5]], 4), want)
    assert not box_mask([[1.2, 0.1, 0.3, 0.3]], 4).any()  # entirely outside
    with pytest.raises(ValueError, match="finite"):
        box_mask([[np.nan, 0, 1, 1]], 4)
    with pytest.raises(ValueError, match="non-negative"):
        box_mask([[0.5, 0, -0.1, 1]], 4)


def test_union_of_overlapping_boxes_and_per_feature_masks():
    boxes = [[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.25, 0.25]]
    union = box_mask(boxes, 4)
    want = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(union, want)
    per_feature = feature_masks(boxes, ["window", "portal", "window"], 4)
    assert sorted(per_feature) == ["portal", "window"]
    np.testing.assert_array_equal(per_feature["portal"], box_mask(boxes[1:2], 4))
    np.testing.assert_array_equal(per_feature["window"], box_mask([boxes[0], boxes[2]], 4))
    assert per_feature["portal"].sum() == 4 and per_feature["window"].sum() == 5


def test_box_masks_from_an_annotations_table():
    table = pd.DataFrame({
        "image_id": ["a", "a", "b"], "box_id": [0, 1, 0], "feature": ["tower", "portal", "tower"],
        "left": [0.0, 0.5, 0.5], "top": [0.0, 0.5, 0.0], "width": [0.5, 0.5, 0.5], "height": [0.5, 0.5, 1.0],
    })
    by_image = box_masks(table, 2)
    assert sorted(by_image) == [("a",), ("b",)]
    np.testing.assert_array_equal(by_image[("a",)], [[True, False], [False, True]])
    np.testing.assert_array_equal(by_image[("b",)], [[False, True], [False, True]])
    by_feature = box_masks(table, 2, by=("image_id", "feature"))
    assert sorted(by_feature) == [("a", "portal"), ("a", "tower"), ("b", "tower")]
    np.testing.assert_array_equal(by_feature[("a", "portal")], [[False, False], [False, True]])
    with pytest.raises(ValueError, match="column"):
        box_masks(table.drop(columns="height"), 2)


def test_within_tolerance_is_euclidean_and_inclusive():
    mask = np.zeros((5, 9), dtype=bool)
    mask[2, 2] = True
    near = within_tolerance(mask, 2)
    assert near[2, 4] and near[0, 2] and not near[2, 5]
    assert not near[0, 4]  # sqrt(8) > 2
    assert within_tolerance(mask, math.sqrt(8))[0, 4]
    assert not within_tolerance(np.zeros((3, 3), dtype=bool), 10).any()


@pytest.mark.parametrize("tolerance", [0, 1, 2.5, math.sqrt(8), 15, 400])
def test_within_tolerance_equals_the_distance_transform_of_the_whole_image(tolerance):
    """The transform runs on a window around the mask; the whole image's transform decides."""
    from scipy.ndimage import distance_transform_edt
    rng = np.random.default_rng(int(tolerance * 10))
    for _ in range(20):
        mask = np.zeros((int(rng.integers(1, 90)), int(rng.integers(1, 90))), dtype=bool)
        for _ in range(int(rng.integers(1, 4))):  # boxes, some at the border, and stray pixels
            top, left = rng.integers(0, mask.shape[0]), rng.integers(0, mask.shape[1])
            mask[top:top + rng.integers(1, 30), left:left + rng.integers(1, 30)] = True
        mask |= rng.random(mask.shape) < 0.002
        np.testing.assert_array_equal(within_tolerance(mask, tolerance), distance_transform_edt(~mask) <= tolerance)


# ---- mass thresholds -----------------------------------------------------------------------------------
def test_mass_threshold_includes_the_crossing_pixel():
    values = np.array([[4.0, 3.0, 2.0, 1.0]])  # mass 10
    assert mass_threshold(values, 10).tolist() == [[1, 0, 0, 0]]
    assert mass_threshold(values, 40).tolist() == [[1, 0, 0, 0]]   # 4 reaches exactly 40%: enough
    assert mass_threshold(values, 41).tolist() == [[1, 1, 0, 0]]   # crossing pixel included
    assert mass_threshold(values, 70).tolist() == [[1, 1, 0, 0]]
    assert mass_threshold(values, 71).tolist() == [[1, 1, 1, 0]]
    assert mass_threshold(values, 100).tolist() == [[1, 1, 1, 1]]
    # an exact crossing survives rounding: 7% of 100 is 0.07 * 100 = 7.000000000000001 in float64
    seven = np.array([[7.0] + [1.0] * 93])
    assert mass_threshold(seven, 7).sum() == 1
    assert score_maps(seven[None], np.ones_like(seven, dtype=bool), thresholds=(7,)).region_fraction[0, 0] == 1 / 94


def test_mass_threshold_shares_ties_at_the_cut():
    flat = np.full((2, 2), 2.0)                    # mass 8; 30% = 2.4 needs 2 of the 4 tied pixels
    np.testing.assert_allclose(mass_threshold(flat, 30), 0.5)
    values = np.array([5.0, 3.0, 3.0, 3.0, 1.0])   # mass 15; 50% = 7.5: 5, then one of three 3s
    np.testing.assert_allclose(mass_threshold(values, 50), [1, 1 / 3, 1 / 3, 1 / 3, 0])
    # ties above the cut are whole: 60% = 9 needs 5, 3 and 3 (n = 3, cut 3 shared 2/3)
    np.testing.assert_allclose(mass_threshold(values, 60), [1, 2 / 3, 2 / 3, 2 / 3, 0])
    assert iou(mass_threshold(flat, 30), np.array([[True, False], [False, False]])) == pytest.approx(0.5 / 2.5)


def test_mass_threshold_is_monotone_in_p():
    rng = np.random.default_rng(3)
    for saliency in map_zoo(rng, 8, (9, 11)):
        regions = [mass_threshold(saliency, p) for p in range(1, 101)]
        sizes = [region.sum() for region in regions]
        assert all(b >= a for a, b in zip(sizes, sizes[1:]))
        assert all((b >= a - 1e-12).all() for a, b in zip(regions, regions[1:]))
        assert sizes[-1] == pytest.approx(np.count_nonzero(saliency))


def test_mass_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="percentages"):
        mass_threshold(np.ones((2, 2)), 0)
    with pytest.raises(ValueError, match="percentages"):
        mass_threshold(np.ones((2, 2)), 101)
    with pytest.raises(ValueError, match="not scorable"):
        mass_threshold(np.zeros((2, 2)), 10)


# ---- scores: hand-computed -----------------------------------------------------------------------------
BLOB = np.array([[0, 0, 0, 0], [0, 8, 4, 0], [0, 2, 2, 0], [0, 0, 0, 0]], dtype=np.float32)  # mass 16
BLOB_MASK = np.zeros((4, 4), dtype=bool)
BLOB_MASK[1, 1:3] = True


def test_hand_computed_scores():
    scores = score_maps(BLOB[None], BLOB_MASK, thresholds=(10, 50, 60, 80, 100), tolerance=0)
    # 10%, 50%: {8} (8 is exactly 50%); 60%: {8, 4}; 80%: {8, 4} + half of each tied 2; 100%: all four
    np.testing.assert_allclose(scores.iou[0], [1 / 2, 1 / 2, 1, 2 / 3, 2 / 4])
    np.testing.assert_allclose(scores.region_fraction[0], np.array([1, 1, 2, 3, 4]) / 16)
    assert scores.coverage[0] == 0.75
    assert scores.pointing_hit[0] == 1.0
    assert scores.scorable[0] and scores.has_box[0]
    assert mass_iou(BLOB, BLOB_MASK, 80) == pytest.approx(2 / 3)
    assert coverage(BLOB, BLOB_MASK) == 0.75 and pointing_game(BLOB, BLOB_MASK, 0) == 1.0


def test_box_at_the_image_border():
    mask = box_mask([[0.75, 0.75, 0.5, 0.5]], 4)       # clamped: the bottom-right pixel
    saliency = np.ones((4, 4), dtype=np.float32)
    saliency[3, 3] = 5                                 # mass 20
    scores = score_maps(saliency[None], mask, thresholds=(25, 30))
    np.testing.assert_allclose(scores.iou[0], [1.0, 1 / 2])  # 30% = 6: the corner plus one tied 1 (1/15 each)
    assert scores.coverage[0] == 0.25 and scores.pointing_hit[0] == 1.0


def test_pointing_game_tolerance():
    mask = np.zeros((40, 40), dtype=bool)
    mask[0:10, 0:10] = True
    saliency = np.ones((40, 40), dtype=np.float32)
    saliency[5, 19] = 9.0  # 10 pixels right of column 9, the box's last
    hits = [score_maps(saliency[None], mask, tolerance=t).pointing_hit[0] for t in (15, 10, 9.99, 5)]
    assert hits == [1.0, 1.0, 0.0, 0.0]
    assert pointing_game(saliency, mask, 15) == 1.0 and pointing_game(saliency, mask, 5) == 0.0
    assert score_maps(saliency[None], mask).pointing_hit[0] == 1.0  # default tolerance 15


def test_pointing_game_ties_count_fractionally():
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:2, 0:2] = True
    saliency = np.zeros((8, 8), dtype=np.float32)
    saliency[1, 1] = saliency[7, 7] = 1.0       # one maximum inside, one far outside
    assert score_maps(saliency[None], mask, tolerance=1).pointing_hit[0] == 0.5
    constant = np.ones((1, 8, 8), dtype=np.float32)
    near = within_tolerance(mask, 1).mean()      # the 2x2 box and its 4 edge neighbours, not (2, 2)
    assert near == 8 / 64 and score_maps(constant, mask, tolerance=1).pointing_hit[0] == near


def test_empty_mask_is_flagged_not_scored():
    maps = np.random.default_rng(0).random((3, 6, 6)).astype(np.float32)
    scores = score_maps(maps, np.zeros((6, 6), dtype=bool))
    assert not scores.has_box.any() and scores.scorable.all()
    assert np.isnan(scores.iou).all() and np.isnan(scores.coverage).all() and np.isnan(scores.pointing_hit).all()
    masks = np.ones((3, 6, 6), dtype=bool)
    masks[1] = False
    scores = score_maps(maps, masks)
    assert scores.has_box.tolist() == [True, False, True]
    assert np.isnan(scores.iou[1]).all() and not np.isnan(scores.iou[[0, 2]]).any()
    np.testing.assert_allclose(scores.coverage[[0, 2]], 1.0)
    with pytest.raises(ValueError, match="empty"):
        coverage(maps[0], np.zeros((6, 6), dtype=bool))


def test_unscorable_maps_are_flagged():
    rng = np.random.default_rng(1)
    maps = rng.random((7, 5, 5)).astype(np.float32)
    maps[1, 2, 2] = np.nan
    maps[2] = 0.0
    maps[3] = -maps[3]               # negative sum
    maps[4, 0, 0] = -1e-3            # one negative value, positive sum
    maps[5, 1, 1] = np.inf
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:3, 1:4] = True
    scores = score_maps(maps, mask)
    assert scores.scorable.tolist() == [True, False, False, False, False, False, True]
    bad = [1, 2, 3, 4, 5]
    assert np.isnan(scores.iou[bad]).all() and np.isnan(scores.coverage[bad]).all()
    assert np.isnan(scores.pointing_hit[bad]).all() and scores.has_box.all()
    alone = score_maps(maps[[0, 6]], mask)   # good rows do not depend on their neighbours
    np.testing.assert_array_equal(scores.iou[[0, 6]], alone.iou)
    with pytest.raises(ValueError, match="not scorable"):
        pointing_game(maps[1], mask)


def test_score_maps_checks_shapes_and_thresholds():
    maps = np.ones((2, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="masks must have shape"):
        score_maps(maps, np.ones((3, 4), dtype=bool))
    with pytest.raises(ValueError, match="percentages"):
        score_maps(maps, np.ones((4, 4), dtype=bool), thresholds=(0, 10))
    with pytest.raises(ValueError, match=r"\(M, H, W\)"):
        score_maps(maps[0], np.ones((4, 4), dtype=bool))


# ---- scores: cross-checks ------------------------------------------------------------------------------
@pytest.mark.parametrize("per_map_masks", [False, True])
def test_score_maps_matches_the_loop_reference(per_map_masks):
    rng = np.random.default_rng(2)
    size = (12, 13)
    maps = map_zoo(rng, 24, size)
    masks = np.stack([random_mask(rng, size) for _ in maps]) if per_map_masks else random_mask(rng, size)
    percents = PERCENTS + (90, 100)
    scores = score_maps(maps, masks, thresholds=percents, tolerance=3)
    assert scores.scorable.all() and scores.has_box.all()
    for m, saliency in enumerate(maps):
        mask = masks[m] if per_map_masks else masks
        ious, cover, hit = reference_scores(saliency, mask, percents, tolerance=3)
        np.testing.assert_allclose(scores.iou[m], ious, rtol=1e-9, atol=1e-12)
        assert scores.coverage[m] == pytest.approx(cover, rel=1e-9)
        assert scores.pointing_hit[m] == hit


def test_fast_path_matches_the_definition_at_analysis_resolution():
    """224 x 224: many pixels per bin, values 8+ octaves below the maximum, a cut in the last bin."""
    rng = np.random.default_rng(4)
    size = (224, 224)
    maps = np.concatenate([
        map_zoo(rng, 8, size),
        upsample(rng.dirichlet(np.full(196, 0.2), size=2).reshape(2, 14, 14), size),
        np.pad(np.full((1, 4, 4), 1e5), ((0, 0), (0, 220), (0, 220)))[None][0] + rng.random((1, *size)),
    ]).astype(np.float32)
    mask = box_mask([[0.2, 0.3, 0.4, 0.25]], size)
    scores = score_maps(maps, mask)
    for m, saliency in enumerate(maps):
        want = [mass_iou(saliency, mask, p) for p in PERCENTS]
        np.testing.assert_allclose(scores.iou[m], want, rtol=1e-9, atol=1e-12)
        assert scores.coverage[m] == pytest.approx(coverage(saliency, mask), rel=1e-6)
        assert scores.pointing_hit[m] == pointing_game(saliency, mask)


# ---- known answers -------------------------------------------------------------------------------------
SIZE = (64, 64)
BOX = [[0.55, 0.15, 0.3, 0.25]]  # off-centre, so the centred Gaussian is no box detector


def test_gaussian_on_the_box_beats_every_baseline():
    mask = box_mask(BOX, SIZE)
    rows, cols = np.nonzero(mask)
    centre_r, centre_c = rows.mean(), cols.mean()
    r, c = np.mgrid[0:64, 0:64]
    on_box = np.exp(-((r - centre_r) ** 2 + (c - centre_c) ** 2) / (2 * 6.0**2)).astype(np.float32)
    method = score_maps(on_box[None], mask)
    image = np.random.default_rng(5).integers(0, 256, (48, 80, 3)).astype(np.uint8)
    for name in BASELINES:
        baseline = score_baseline(name, mask, image=image, seed=1)
        assert (method.iou[0] > baseline.iou[0]).all(), name
        assert method.coverage[0] > baseline.coverage[0], name
    assert method.pointing_hit[0] == 1.0


def test_uniform_map_scores_like_the_random_baseline():
    """Coverage and pointing of a constant map are exactly what a random map scores on average.

    Tolerances are 5 standard errors over R draws. Coverage of one i.i.d. U[0, 1) map has standard
    deviation ~ sqrt(a (1 - a) / N) * (sd / mean of U) = sqrt(a (1 - a) / N) / sqrt(3), a the box's
    share of the N pixels; a random map's maximum is a uniformly random pixel, so its hit is Bernoulli(q),
    q the share of pixels near the box. IoU differs by design: a constant map needs p% of the pixels
    to hold p% of its mass, a random map fewer; each equals the chance IoU of its region size n,
    n a / (n + |B| - n a), the expected overlap of n random pixels.
    """
    draws = 400
    mask = box_mask(BOX, SIZE)
    n_pixels, a = mask.size, mask.mean()
    q = within_tolerance(mask, 15).mean()
    constant = score_maps(np.ones((1, *SIZE), dtype=np.float32), mask)
    random = score_baseline("random", mask, seed=0, draws=draws)
    assert constant.coverage[0] == pytest.approx(a, rel=1e-12)
    assert constant.pointing_hit[0] == pytest.approx(q, rel=1e-12)
    assert abs(random.coverage[0] - a) < 5 * math.sqrt(a * (1 - a) / n_pixels / 3 / draws)
    assert abs(random.pointing_hit[0] - q) < 5 * math.sqrt(q * (1 - q) / draws)

    def chance(region_fraction):
        n = region_fraction * n_pixels
        return n * a / (n + a * n_pixels - n * a)

    np.testing.assert_allclose(constant.iou[0], chance(constant.region_fraction[0]), rtol=1e-9)
    np.testing.assert_allclose(constant.region_fraction[0], np.ceil(np.array(PERCENTS) / 100 * n_pixels) / n_pixels)
    np.testing.assert_allclose(random.iou[0], chance(random.region_fraction[0]), rtol=0.05)


# ---- baselines -----------------------------------------------------------------------------------------
def test_baselines_share_one_signature():
    image = np.zeros((10, 12, 3), dtype=np.uint8)
    image[:, 6:] = 200
    for name in BASELINES:
        maps = baseline_maps(name, image, (16, 20), seed=3, draws=5)
        assert maps.dtype == np.float32 and maps.shape[1:] == (16, 20)
        assert maps.shape[0] == (5 if name == "random" else 1)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_maps("saliency", image, 8)


def test_random_baseline_is_seeded_and_averaged():
    a = baseline_maps("random", None, 8, seed=1, draws=3)
    np.testing.assert_array_equal(a, baseline_maps("random", None, 8, seed=1, draws=3))
    assert not np.array_equal(a, baseline_maps("random", None, 8, seed=2, draws=3))
    mask = box_mask([[0, 0, 0.5, 0.5]], 8)
    averaged = score_baseline("random", mask, seed=1, draws=3)
    each = score_maps(a, mask)
    assert len(averaged) == 1
    np.testing.assert_allclose(averaged.iou[0], each.iou.mean(axis=0))
    assert averaged.coverage[0] == pytest.approx(each.coverage.mean())
    assert image_seed(0, "img1") == image_seed(0, "img1") != image_seed(0, "img2") != image_seed(1, "img2")


def test_centred_gaussian():
    gaussian = baseline_maps("gaussian", None, (64, 64))[0]
    sigma = 16.0  # max(H, W) / 4
    assert gaussian[31, 31] == gaussian[32, 32] == gaussian.max()   # centre between four pixels
    assert gaussian[31, 47] == pytest.approx(math.exp(-(15.5**2 + 0.5**2) / (2 * sigma**2)), rel=1e-6)
    np.testing.assert_array_equal(gaussian, gaussian[::-1, ::-1])
    wide = baseline_maps("gaussian", None, (32, 64))[0]  # sigma still 16; centre (16, 32)
    assert wide[15, 48] == pytest.approx(math.exp(-(16.5**2 + 0.5**2) / (2 * 16.0**2)), rel=1e-6)


def test_sobel_edges_of_a_step():
    image = np.zeros((32, 32), dtype=np.uint8)
    image[:, 16:] = 100
    edges = baseline_maps("sobel", image, 32)[0]
    # d/dx is [-1, 0, 1] across, smoothed by [1, 2, 1] down: a step of 100 gives 4 * 100 beside it
    np.testing.assert_allclose(edges[:, 15:17], 400, rtol=1e-5)
    np.testing.assert_allclose(edges[:, :14], 0, atol=1e-3)
    np.testing.assert_allclose(edges[:, 18:], 0, atol=1e-3)
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    np.testing.assert_allclose(baseline_maps("sobel", rgb, 32)[0], edges, rtol=1e-5, atol=1e-3)
    red = np.zeros((32, 32, 3), dtype=np.uint8)
    red[:, 16:, 0] = 100                   # luma weights red 0.299
    np.testing.assert_allclose(baseline_maps("sobel", red, 32)[0][:, 15:17], 0.299 * 400, rtol=1e-5)
    # resized like the models: a 64-pixel-wide step shrunk to 32 keeps its edge at columns 15-16
    wide = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    shrunk = baseline_maps("sobel", wide, 32)[0]
    assert set(np.argsort(shrunk[16])[-2:]) == {15, 16}
    flat = score_baseline("sobel", box_mask(BOX, 32), image=np.full((20, 20, 3), 90, np.uint8))
    assert not flat.scorable[0] and np.isnan(flat.iou).all()  # no edges: flagged, not zero
    with pytest.raises(ValueError, match="needs the image"):
        baseline_maps("sobel", None, 8)


# ---- methods -------------------------------------------------------------------------------------------
def attention_store(rng):
    n, layers, heads, gh, gw = 3, 2, 4, 2, 3
    return {
        "layers": np.array([5, 11]),
        "cls": rng.random((n, layers, heads, gh, gw)).astype(np.float16),
        "rollout": rng.random((n, gh, gw)).astype(np.float32),
        "mean": rng.random((n, layers, gh, gw)).astype(np.float16),
        "map_probe": rng.random((n, heads, gh, gw)).astype(np.float16),
        "gradcam": rng.random((n, gh, gw)).astype(np.float32),
    }


def test_method_readers_label_every_variant():
    store = attention_store(np.random.default_rng(6))
    cls = read_method("cls", store, slice(1, 3))
    assert cls.maps.shape == (2, 2 * 5, 2, 3) and cls.maps.dtype == np.float32
    assert cls.layer.tolist() == [5] * 5 + [11] * 5
    assert cls.head.tolist() == ["0", "1", "2", "3", "mean"] * 2
    np.testing.assert_array_equal(cls.maps[0, 7], store["cls"][1, 1, 2].astype(np.float32))
    np.testing.assert_allclose(cls.maps[1, 9], store["cls"][2, 1].astype(np.float32).mean(axis=0))
    probe = read_method("map_probe", store, 0)
    assert probe.maps.shape == (1, 5, 2, 3) and probe.head.tolist()[-1] == "mean"
    assert probe.layer.tolist() == [-1] * 5
    mean = read_method("mean", store)
    assert mean.maps.shape == (3, 2, 2, 3) and mean.layer.tolist() == [5, 11]
    for name in ("rollout", "gradcam"):
        single = read_method(name, store, np.array([0, 2]))
        np.testing.assert_array_equal(single.maps[:, 0], store[name][[0, 2]])
        assert single.layer.tolist() == [-1] and single.head.tolist() == [""]
    assert METHOD_NAMES == ("cls", "rollout", "mean", "map_probe", "gradcam", "chefer", "ig")
    with pytest.raises(ValueError, match="unknown attention method"):
        read_method("attention", store)


def test_method_readers_read_hdf5(tmp_path):
    store = attention_store(np.random.default_rng(7))
    with h5py.File(tmp_path / "attention.h5", "w") as handle:
        for name in ("layers", "cls", "rollout"):
            handle.create_dataset(name, data=store[name])
    with h5py.File(tmp_path / "attention.h5", "r") as handle:
        assert available_methods(handle) == ["cls", "rollout"]
        cls = read_method("cls", handle, slice(0, 2))
        with pytest.raises(KeyError, match="gradcam"):
            read_method("gradcam", handle)
    np.testing.assert_array_equal(cls.maps[:, :4], store["cls"][:2, 0].astype(np.float32))


def test_upsample_equals_torch_bilinear_interpolate():
    import torch

    rng = np.random.default_rng(7)
    for grid, size in (((14, 14), (224, 224)), ((7, 5), (64, 96)), ((3, 3), (2, 5))):
        maps = rng.random((4, *grid)).astype(np.float32)
        want = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=size,
                                               mode="bilinear", align_corners=False)[:, 0].numpy()
        np.testing.assert_allclose(upsample(maps, size), want, rtol=1e-5, atol=1e-6)
