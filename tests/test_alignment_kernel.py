"""The compiled scoring kernel against the NumPy reference: identical integer counts, on every kind of map.

`thresholds.mass_threshold_counts` / `scores.score_maps_reference` (one sort per map) is the reference,
itself checked against the pure-Python definitions in test_alignment.py. The kernel must give the same
region sizes, cut counts and mask counts bit for bit, the same flags, and the same upsampled pixels.
"""

from pathlib import Path

import numpy as np
import pytest

from encoderlens.alignment import (box_mask, is_scorable, mass_threshold_counts, score_grid_maps,
                                   score_maps, score_maps_reference, upsample, within_tolerance)
from encoderlens.alignment import kernel
from encoderlens.alignment.resize import bilinear_taps
from encoderlens.alignment.thresholds import MASS_SLACK

PERCENTS = np.array([10, 15, 20, 25, 30, 40, 50], dtype=float)
COUNT_NAMES = ("size", "above", "tied", "boxed_above", "boxed_tied")


def zoo(rng, count, size):
    """Continuous, tied, flat, spiky, sparse, signed-zero, float16-plateau, smooth and bad maps."""
    height, width = size
    grid = (max(height // 8, 2), max(width // 8, 2))
    kinds = [
        lambda: rng.random(size),
        lambda: rng.integers(0, 4, size).astype(float),                      # ties at every cut
        lambda: np.full(size, 0.3),                                          # constant
        lambda: np.where(rng.random(size) < 0.8, 0.0, rng.random(size)),     # mostly zeros
        lambda: np.where(rng.random(size) < 0.5, -0.0, rng.random(size)),    # negative zeros
        lambda: (rng.random(size) ** 8).astype(np.float16),                  # plateaus, wide range
        lambda: np.pad([[1e4]], ((0, height - 1), (0, width - 1))) + rng.random(size),  # one spike
        lambda: upsample(rng.dirichlet(np.full(grid[0] * grid[1], 0.3)).reshape(grid), size),
        lambda: np.where(rng.random(size) < 0.5, -0.0, rng.uniform(1 / 600, 1 / 300, size)) +
        np.pad([[1.0]], ((0, height - 1), (0, width - 1))),                   # spike over dust
        lambda: rng.random(size) * 3e37,                                     # near float32's max
        lambda: rng.random(size) * 1e-41,                                    # subnormal floats
        lambda: np.where(rng.random(size) < 0.01, np.nan, rng.random(size)),  # NaN: unscorable
        lambda: np.zeros(size),                                              # no mass: unscorable
        lambda: rng.random(size) - 0.01,                                     # negative: unscorable
        lambda: np.where(rng.random(size) < 0.01, np.inf, rng.random(size)),  # infinite: unscorable
        lambda: np.full(size, -0.0),                                         # no mass: unscorable
    ]
    return np.stack([kinds[i % len(kinds)]() for i in range(count)]).astype(np.float32)


def border_mask(rng, size):
    """A random box, often touching the image border."""
    height, width = size
    top, left = max(rng.integers(-3, height), 0), max(rng.integers(-3, width), 0)
    mask = np.zeros(size, dtype=bool)
    mask[top:top + rng.integers(1, height + 1), left:left + rng.integers(1, width + 1)] = True
    return mask


def reference_counts(maps, masks, tolerance, percents=PERCENTS):
    """The reference counts for every map (scorable ones only; others keep zeros)."""
    flat = maps.reshape(len(maps), -1)
    inside = masks.reshape(len(masks), -1)
    scorable = is_scorable(maps)
    want = {name: np.zeros((len(maps), len(percents)), dtype=np.int64) for name in COUNT_NAMES}
    want |= {"total": np.zeros(len(maps)), "total_inside": np.zeros(len(maps)),
             "n_max": np.zeros(len(maps), dtype=np.int64), "n_max_near": np.zeros(len(maps), dtype=np.int64)}
    for m in np.flatnonzero(scorable):
        counts = mass_threshold_counts(flat[m:m + 1], inside[m], percents)
        for name, value in counts.items():
            want[name][m] = value[0]
        maxima = flat[m] == flat[m].max()
        near = within_tolerance(masks[m], tolerance).ravel()
        want["n_max"][m], want["n_max_near"][m] = maxima.sum(), (maxima & near).sum()
    return want, scorable


def kernel_counts(maps, masks, tolerance, percents=PERCENTS, threads=1):
    inside = masks.reshape(len(masks), -1)
    near = np.stack([within_tolerance(mask, tolerance).ravel() for mask in masks])
    index = np.arange(len(maps))
    return kernel.score_pairs(maps, index, inside, near, index, percents / 100 - MASS_SLACK, None, threads)


def assert_counts_equal(got, want, scorable):
    np.testing.assert_array_equal(got["scorable"], scorable)
    for name in COUNT_NAMES + ("n_max", "n_max_near"):
        np.testing.assert_array_equal(got[name][scorable], want[name][scorable], err_msg=name)
    for name in ("total", "total_inside"):
        np.testing.assert_allclose(got[name][scorable], want[name][scorable], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("size", [(224, 224), (12, 13), (5, 3), (17, 31), (1, 1)])
def test_kernel_counts_equal_the_numpy_reference(size):
    rng = np.random.default_rng(sum(size))
    maps = zoo(rng, 48, size)
    masks = np.stack([border_mask(rng, size) for _ in maps])
    want, scorable = reference_counts(maps, masks, tolerance=3)
    assert scorable.sum() >= 24 and (~scorable).sum() >= 5
    assert_counts_equal(kernel_counts(maps, masks, tolerance=3), want, scorable)


def test_many_random_attention_like_maps_at_224():
    """Smooth upsampled maps (exact ties from the interpolation), noise, peaked noise: 300 maps."""
    rng = np.random.default_rng(11)
    grids = np.concatenate([rng.dirichlet(np.full(196, alpha), size=60) for alpha in (0.05, 0.3, 1.0)])
    maps = np.concatenate([upsample(grids.reshape(-1, 14, 14).astype(np.float32), 224),
                           rng.random((60, 224, 224), dtype=np.float32),
                           rng.random((60, 224, 224), dtype=np.float32) ** 12])
    masks = np.stack([border_mask(rng, (224, 224)) for _ in maps])
    want, scorable = reference_counts(maps, masks, tolerance=15)
    assert scorable.all()
    assert_counts_equal(kernel_counts(maps, masks, tolerance=15, threads=2), want, scorable)


def test_sampled_floor_that_misses_falls_back_exactly():
    """The kernel estimates a floor from every SAMPLE_STRIDE-th pixel; a map whose sampled pixels
    are all high and the rest half as high fools it, and the exact check must catch that."""
    n = 64 * 64
    values = np.full(n, 0.5, dtype=np.float32)
    values[::kernel.SAMPLE_STRIDE] = 1.0
    maps = values.reshape(1, 64, 64)
    mask = box_mask([[0.1, 0.2, 0.5, 0.3]], 64)[None]
    want, scorable = reference_counts(maps, mask, tolerance=2)
    assert_counts_equal(kernel_counts(maps, mask, tolerance=2), want, scorable)
    sampled_share = values[::kernel.SAMPLE_STRIDE].sum() / values.sum()
    assert sampled_share < PERCENTS.max() / 100  # the sampled floor alone keeps too little mass


def test_thresholds_in_any_order_with_duplicates_and_extremes():
    rng = np.random.default_rng(5)
    size = (40, 36)
    maps = zoo(rng, 24, size)
    masks = np.stack([border_mask(rng, size) for _ in maps])
    percents = np.array([50, 10, 100, 0.001, 25, 25, 99.9999999, 75])
    want, scorable = reference_counts(maps, masks, tolerance=4, percents=percents)
    assert_counts_equal(kernel_counts(maps, masks, tolerance=4, percents=percents), want, scorable)


def test_score_maps_equals_the_reference_scores():
    rng = np.random.default_rng(6)
    size = (64, 48)
    maps = zoo(rng, 40, size)
    shared = border_mask(rng, size)
    per_map = np.stack([border_mask(rng, size) for _ in maps])
    per_map[3] = False  # an image without boxes: flagged, not scored
    for masks in (shared, per_map):
        got, want = score_maps(maps, masks, tolerance=5), score_maps_reference(maps, masks, tolerance=5)
        np.testing.assert_array_equal(got.iou, want.iou)  # same integers, same formula: bitwise
        np.testing.assert_array_equal(got.region_fraction, want.region_fraction)
        np.testing.assert_array_equal(got.pointing_hit, want.pointing_hit)
        np.testing.assert_allclose(got.coverage, want.coverage, rtol=1e-12)
        np.testing.assert_array_equal(got.scorable, want.scorable)
        np.testing.assert_array_equal(got.has_box, want.has_box)
    assert np.isnan(score_maps(maps, per_map).iou[3]).all()


@pytest.mark.parametrize("grid, size", [((14, 14), (224, 224)), ((16, 16), (224, 224)), ((7, 5), (64, 96)),
                                        ((3, 3), (2, 5)), ((6, 6), (6, 6)), ((1, 1), (8, 8))])
def test_kernel_upsampling_is_bitwise_resize_upsample(grid, size):
    rng = np.random.default_rng(grid[0] * size[1])
    maps = np.concatenate([rng.random((3, *grid)), rng.dirichlet(np.full(grid[0] * grid[1], 0.2), 3)
                           .reshape(3, *grid) * 1e-3]).astype(np.float32)
    taps = bilinear_taps(grid[1], size[1]) + bilinear_taps(grid[0], size[0])
    wide = np.empty((grid[0], size[1]), dtype=np.float32)
    buffer = np.empty(size[0] * size[1], dtype=np.float32)
    want = upsample(maps, size)
    block_top = np.empty(-(-size[0] * size[1] // kernel.BLOCK), dtype=np.float32)
    for m in range(len(maps)):
        kernel._upsample_into(maps[m], *taps, wide, buffer)
        np.testing.assert_array_equal(buffer.reshape(size), want[m])
        # the sweep that also takes the total and the block maxima (plain grids) gives the same pixels
        buffer[:] = np.nan
        total, top = kernel._upsample_scan(maps[m], *taps, wide, buffer, block_top)
        np.testing.assert_array_equal(buffer.reshape(size), want[m])
        assert top == want[m].max()
        np.testing.assert_allclose(total, want[m].astype(np.float64).sum(), rtol=1e-12)
        padded = np.pad(want[m].ravel(), (0, len(block_top) * kernel.BLOCK - want[m].size))
        np.testing.assert_array_equal(block_top, padded.reshape(-1, kernel.BLOCK).max(axis=1))


def test_grid_maps_score_as_their_upsampled_maps():
    """score_grid_maps (upsampling inside the kernel) = the reference on `upsample` output, with
    every image's maps paired with its own box mask and with each building part's mask."""
    rng = np.random.default_rng(8)
    n_images, per_image, size = 3, 13, (224, 224)
    grids = rng.dirichlet(np.full(196, 0.3), size=n_images * per_image).reshape(-1, 14, 14)
    grids[5] = np.nan     # a NaN map stays NaN after upsampling: unscorable
    grids[6] = 0.0        # so does an all-zero one
    # grids that are not plain (`kernel._grid_is_plain`) are upsampled first and checked pixel by pixel:
    grids[7, 6, 6] = -0.2 * grids[7].max()  # a negative cell: some pixels negative, unscorable
    grids[8, 6, 6] = -1e-4 * grids[8, 5:8, 5:8].max()  # so slightly negative that no pixel is: scorable
    grids[9, :7] = -0.0   # negative zeros are valid values
    grids = grids.astype(np.float16).astype(np.float32)  # as stored in attention.h5
    grids[10] = grids[10] / grids[10].max() * np.float32(3e37)  # near float32's maximum (not float16's)
    masks = np.stack([box_mask([[0.1 * i, 0.05, 0.3, 0.4]], size) for i in range(2 * n_images)])
    map_of_pair = np.concatenate([np.arange(len(grids))] * 2)
    mask_of_pair = np.concatenate([np.arange(len(grids)) // per_image,
                                   n_images + np.arange(len(grids)) // per_image])
    got = score_grid_maps(grids, masks, map_of_pair, mask_of_pair, tolerance=15, threads=2)
    want = score_maps_reference(upsample(grids, size)[map_of_pair], masks[mask_of_pair], tolerance=15)
    np.testing.assert_array_equal(got.scorable, want.scorable)
    assert (~got.scorable).sum() == 6 and got.scorable[[8, 9, 10]].all()
    assert not any(kernel._grid_is_plain(grids[i]) for i in (5, 7, 8, 10)) and kernel._grid_is_plain(grids[9])
    np.testing.assert_array_equal(got.iou, want.iou)
    np.testing.assert_array_equal(got.pointing_hit, want.pointing_hit)
    np.testing.assert_allclose(got.coverage, want.coverage, rtol=1e-12)


def test_threads_do_not_change_the_numbers():
    rng = np.random.default_rng(9)
    grids = rng.dirichlet(np.full(196, 0.3), size=37).reshape(-1, 14, 14).astype(np.float32)
    mask = box_mask([[0.3, 0.3, 0.2, 0.4]], 224)[None]
    one, two = score_grid_maps(grids, mask, threads=1), score_grid_maps(grids, mask, threads=2)
    np.testing.assert_array_equal(one.iou, two.iou)
    np.testing.assert_array_equal(one.coverage, two.coverage)


def test_grid_maps_check_their_pairs():
    grids = np.ones((2, 3, 3), dtype=np.float32)
    masks = np.ones((3, 8, 8), dtype=bool)
    with pytest.raises(ValueError, match="map_of_pair and mask_of_pair"):
        score_grid_maps(grids, masks)
    with pytest.raises(ValueError, match="mask_of_pair must index"):
        score_grid_maps(grids, masks, [0, 1], [0, 3])
    scores = score_grid_maps(grids, masks[:1])
    np.testing.assert_allclose(scores.coverage, 1.0)


def test_numba_cache_dir_falls_back_where_the_package_is_read_only(tmp_path):
    writable = tmp_path / "package"
    read_only = Path("/dev/null/package")  # nothing can be created under a character device
    assert kernel.numba_cache_dir(writable, {}) is None
    assert kernel.numba_cache_dir(read_only, {"NUMBA_CACHE_DIR": "/somewhere"}) is None
    chosen = kernel.numba_cache_dir(read_only, {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert chosen == str(tmp_path / "cache" / "encoderlens" / "numba") and Path(chosen).is_dir()


def test_the_kernel_is_cached_on_disk():
    score_maps(np.ones((1, 4, 4), dtype=np.float32), np.ones((4, 4), dtype=bool))
    cache = kernel._score_run._cache
    assert Path(cache.cache_path).is_dir()
    assert any(Path(cache.cache_path).glob(f"*{kernel._score_run.__name__}*.nbi"))


# ---- the study table ------------------------------------------------------------------------------
def per_image_reference(path, annotations, model, variant, thresholds, tolerance, size,
                        methods=("cls", "rollout", "mean", "map_probe", "gradcam")):
    """The study's tables as before the kernel: per image and method, `upsample` then the NumPy
    reference, once against the union of boxes and once per building part."""
    import h5py
    import pandas as pd

    from encoderlens.alignment import box_masks, read_method

    rows, feature_rows = [], []
    with h5py.File(path, "r") as store:
        ids = [i.decode() if isinstance(i, bytes) else i for i in store["ids"][()]]
        union = box_masks(annotations, size)
        parts = box_masks(annotations, size, by=("image_id", "feature"))
        for method in [name for name in methods if name in store]:
            for row, image_id in enumerate(ids):
                if (image_id,) not in union:
                    continue
                read = read_method(method, store, row)
                maps = upsample(read.maps[0], size)
                targets = [("", union[(image_id,)])] + [(f, m) for (i, f), m in parts.items() if i == image_id]
                for feature, mask in targets:
                    scores = score_maps_reference(maps, mask, thresholds, tolerance)
                    for v in range(len(maps)):
                        for k, threshold in enumerate(scores.thresholds):
                            record = {"image_id": image_id, "feature": feature, "model": model,
                                      "variant": variant, "method": method, "layer": int(read.layer[v]),
                                      "head": int(read.head[v]) if read.head[v].isdigit() else -1,
                                      "threshold": float(threshold), "iou": scores.iou[v, k],
                                      "coverage": scores.coverage[v], "pointing_hit": scores.pointing_hit[v],
                                      "scorable": bool(scores.scorable[v])}
                            (feature_rows if feature else rows).append(record)
    return pd.DataFrame(rows).drop(columns="feature"), pd.DataFrame(feature_rows)


def test_study_table_equals_the_per_image_reference(tmp_path):
    import h5py
    import pandas as pd

    from encoderlens.alignment.job import COLUMNS, FEATURE_COLUMNS, score_attention_file

    rng = np.random.default_rng(12)
    n, layers, heads, grid, size = 7, 2, 3, 4, 32
    cls = rng.dirichlet(np.full(grid * grid, 0.4), size=(n, layers, heads)).reshape(n, layers, heads, grid, grid)
    cls[2, 1, 0] = np.nan  # a broken map: its rows stay, flagged unscorable
    with h5py.File(tmp_path / "attention.h5", "w") as handle:
        handle.attrs["image_size"] = size
        handle["ids"] = np.array([f"img{i}" for i in range(n)], dtype="S")
        handle["layers"] = np.array([3, 7])
        handle["cls"] = cls.astype(np.float16)
        handle["rollout"] = rng.random((n, grid, grid)).astype(np.float32)
    boxes = [(f"img{i}", feature, *rng.uniform(0, 0.5, 2), *rng.uniform(0.1, 0.5, 2))
             for i in (0, 2, 3, 6) for feature in ("portal", "tower")[: 1 + i % 2]]
    annotations = pd.DataFrame(boxes, columns=["image_id", "feature", "left", "top", "width", "height"])
    got, got_features = score_attention_file(tmp_path / "attention.h5", annotations, "m", "frozen",
                                             PERCENTS, 3.0, methods=["cls", "rollout"], threads=2,
                                             batch_images=3)
    want, want_features = per_image_reference(tmp_path / "attention.h5", annotations, "m", "frozen",
                                              PERCENTS, 3.0, size)
    assert list(got.columns) == COLUMNS and list(got_features.columns) == FEATURE_COLUMNS
    assert len(got) == 4 * (layers * (heads + 1) + 1) * len(PERCENTS)
    assert (~got["scorable"]).sum() == 2 * len(PERCENTS)  # the NaN head and the mean over heads
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want[COLUMNS], check_dtype=False)
    pd.testing.assert_frame_equal(got_features.reset_index(drop=True), want_features[FEATURE_COLUMNS],
                                  check_dtype=False)
