"""Compiled scoring kernel: mass thresholds, mask overlaps, coverage and pointing game, many maps at once.

Computes for every (map, mask) pair the same integer counts as the NumPy reference
(`thresholds.mass_threshold_counts`) and the sums behind coverage and the pointing game, without
sorting whole maps. Per map (N pixels, K thresholds):

1. one vectorised pass: validity (finite, non-negative, positive mass) and the maximum of every
   block of BLOCK pixels; one more for the total mass;
2. a floor: pixels below (1 - max fraction) * mean can never enter a region (the reference's
   bound); every SAMPLE_STRIDE-th pixel estimates a tighter floor that still keeps the largest
   threshold's mass plus a margin, checked exactly after step 3 (falling back to the safe floor);
3. one branch-free pass over the blocks that reach the floor: a histogram of BINS value bins over
   [floor, max] with each bin's pixel count and mass, remembering each pixel's bin. The bin index is
   monotone in the value, so every pixel of a higher bin is strictly greater than every pixel of a
   lower one and ties never straddle bins;
4. one scan of the bins from the top finds, for all K thresholds at once, the bin where the
   cumulative mass crosses the target;
5. only the pixels of those (at most K) boundary bins are gathered and sorted, and each crossing is
   resolved pixel by pixel with the reference's rule (the crossing pixel is included; its value is
   the cut; pixels tied at the cut share the remaining places);
6. the mask's pixels are counted against the K cut values, and their mass summed (coverage).
So a map costs a few passes over its pixels, a scatter over the fifth or so that reach the floor,
and sorts of a few dozen values, instead of a sort of its top half.

Maps can be given on their patch grid and are then upsampled inside the kernel, one map at a time
into a per-thread buffer, with the same float32 arithmetic as `resize.upsample` (two taps per axis,
columns first), so the pixels are bitwise those of the reference path.

Floating-point sums (total mass, bin masses) are accumulated in float64 in a different order than
the reference, so they differ from it in the last bits (coverage: ~1e-16 relative); n_p could differ
only where a cumulative mass lies within that rounding of a target, i.e. never in practice and never
for sums that are exact in float64 (the hand-made cases of the tests).

The compiled code is cached on disk (`cache=True`); see `numba_cache_dir` for where.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def numba_cache_dir(package_dir: Path, environ=os.environ) -> str | None:
    """Where numba should cache the compiled kernel, or None for numba's own choice.

    Numba caches next to this file (in __pycache__); where that is read-only (a system-wide install,
    a shared read-only conda env on a cluster) and NUMBA_CACHE_DIR is not set, a per-user directory
    that is writable, so the kernel compiles once per user and machine instead of once per job."""
    if environ.get("NUMBA_CACHE_DIR") or _writable(package_dir / "__pycache__"):
        return None
    home_cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for candidate in (home_cache / "encoderlens" / "numba",
                      Path(tempfile.gettempdir()) / f"encoderlens-numba-{os.getuid()}"):
        if _writable(candidate):
            return str(candidate)
    return None


_CACHE_DIR = numba_cache_dir(Path(__file__).parent)
if _CACHE_DIR:
    os.environ["NUMBA_CACHE_DIR"] = _CACHE_DIR

import numba  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

if _CACHE_DIR:
    numba.config.CACHE_DIR = _CACHE_DIR  # numba read the variable when it was first imported

BINS = 1024              # value bins per map between the floor and the maximum
BLOCK = 16               # pixels per block; blocks whose maximum is below the floor are skipped
SINKS = 8                # extra bins taking the values below the floor
SAMPLE_STRIDE = 13       # every 13th pixel estimates a tighter floor (odd: no alignment with rows of 2^k)
SAMPLE_BINS = 64
SAMPLE_MARGIN = 0.05     # the estimated floor keeps the largest threshold's share + 5% of the mass
UNSCORABLE = 0
SCORED = 1
NEGATIVE_ZERO_BITS = np.int32(-(2**31))
INFINITY_BITS = np.int32(0x7F800000)


@njit(cache=True, nogil=True)
def _upsample_into(grid, col_lo, col_hi, col_w0, col_w1, row_lo, row_hi, row_w0, row_w1, wide, out):
    """Bilinear upsampling of one (gh, gw) float32 map into `out` (H * W), as `resize.upsample`:
    w0 * a + w1 * b in float32, one rounding per operation (no fused multiply-add)."""
    width = col_lo.shape[0]
    for r in range(grid.shape[0]):
        for c in range(width):
            wide[r, c] = grid[r, col_lo[c]] * col_w0[c] + grid[r, col_hi[c]] * col_w1[c]
    for i in range(row_lo.shape[0]):
        lo, hi, w0, w1 = row_lo[i], row_hi[i], row_w0[i], row_w1[i]
        base = i * width
        for c in range(width):
            out[base + c] = wide[lo, c] * w0 + wide[hi, c] * w1


@njit(cache=True, nogil=True)
def _validity(bits, block_top):
    """Number of values that are not finite and >= 0, given float32 bits as int32; `block_top[i]`
    gets the largest bits of block i (BLOCK pixels), the largest overall is returned too.

    Non-negative floats order like their bit patterns, so integer max and compares (which vectorise)
    do the work: valid values are +0 .. the largest finite float, or -0.0."""
    invalid = 0
    top = np.int32(0)
    n = bits.shape[0]
    for block in range(block_top.shape[0]):
        block_max = np.int32(0)
        for j in range(block * BLOCK, min((block + 1) * BLOCK, n)):
            u = bits[j]
            invalid += (u >= INFINITY_BITS) | ((u < 0) & (u != NEGATIVE_ZERO_BITS))
            block_max = max(block_max, u)
        block_top[block] = block_max
        top = max(top, block_max)
    return invalid, top


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sum(values):
    """float64 sum; reassociation lets it vectorise (the order differs from NumPy's pairwise sum)."""
    total = 0.0
    for j in range(values.shape[0]):
        total += values[j]
    return total


@njit(cache=True, nogil=True)
def _sample_floor(values, floor, top, share, sample_masses):
    """A floor >= `floor` above which, judged from every SAMPLE_STRIDE-th pixel, `share` of the mass
    lies. Only an estimate: the caller checks the mass it keeps and falls back to `floor`."""
    n_bins = sample_masses.shape[0]
    sample_masses[:] = 0.0
    span = np.float64(top) - np.float64(floor)
    if span <= 0:
        return floor
    scale = n_bins / span
    sampled = 0.0
    for j in range(0, values.shape[0], SAMPLE_STRIDE):
        v = values[j]
        sampled += v
        if v >= floor:
            sample_masses[min(int((np.float64(v) - np.float64(floor)) * scale), n_bins - 1)] += v
    cumulative = 0.0
    for b in range(n_bins - 1, 0, -1):
        cumulative += sample_masses[b]
        if cumulative >= share * sampled:
            return max(np.float32(np.float64(floor) + b / scale), floor)
    return floor


@njit(cache=True, nogil=True)
def _histogram(values, block_top, near, floor, top, counts, masses, bin_of):
    """Count and mass per value bin over [floor, top] of the values >= floor, visiting only the
    blocks that hold one; `bin_of[j]` gets pixel j's bin. Returns (mass of those values, number of
    maxima, maxima near the mask).

    The bin index is monotone in the value. Branch-free: a value below the floor goes to one of
    SINKS extra bins (rotating, so that runs of them do not queue on one memory cell)."""
    n_bins = counts.shape[0] - SINKS
    counts[:] = 0
    masses[:] = 0.0
    scale = _bin_scale(floor, top, n_bins)
    low = np.float64(floor)
    floor_bits = _bits(floor)
    top_bits = _bits(top)
    n = values.shape[0]
    n_max = 0
    n_max_near = 0
    for block in range(block_top.shape[0]):
        if block_top[block] < floor_bits:
            continue
        stop = min((block + 1) * BLOCK, n)
        for j in range(block * BLOCK, stop):
            v = values[j]
            b = min(int((np.float64(v) - low) * scale), n_bins - 1)
            b = b if v >= floor else n_bins + (j & (SINKS - 1))
            bin_of[j] = b
            counts[b] += 1
            masses[b] += v
        if block_top[block] == top_bits:
            for j in range(block * BLOCK, stop):
                if values[j] == top:
                    n_max += 1
                    n_max_near += near[j] != 0
    return _sum(masses[:n_bins]), n_max, n_max_near


@njit(cache=True, nogil=True)
def _bin_scale(floor, top, n_bins):
    span = np.float64(top) - np.float64(floor)
    return n_bins / span if span > 0 else 0.0


@njit(cache=True, nogil=True)
def _bits(value):
    """The int32 bits of a float32 >= 0 (-0.0 as +0)."""
    return np.array([value + np.float32(0.0)], dtype=np.float32).view(np.int32)[0]


@njit(cache=True, nogil=True)
def _score_one(values, box_pixels, near, fractions, order, scratch, out, p):
    """Score map `values` (N,) against the mask with pixel indices `box_pixels`; writes row `p` of
    the outputs `out`. Returns whether the map is scorable."""
    (block_top, bin_of, counts, masses, sample_masses, slot_of_bin, slot_values, box_values, boundary,
     before_mass, before_count, cuts) = scratch
    size, above, tied, boxed_above, boxed_tied, sums, pointing = out
    invalid, top_bits = _validity(values.view(np.int32), block_top)
    if invalid or top_bits <= 0:
        return False
    top = _from_bits(top_bits)
    total = _sum(values)
    n_thresholds = fractions.shape[0]
    largest = fractions[order[n_thresholds - 1]]

    # pixels below (1 - f) * mean hold less than (1 - f) of the mass together, so the region holding f
    # never reaches them (as the reference); a sampled floor is tighter and checked, with fallbacks
    safe_floor = np.float32((1 - largest) * total / values.shape[0])
    floor = _sample_floor(values, safe_floor, top, min(largest + SAMPLE_MARGIN, 1.0), sample_masses)
    for attempt in range(3):
        kept_mass, n_max, n_max_near = _histogram(values, block_top, near, floor, top, counts, masses,
                                                  bin_of)
        if kept_mass >= largest * total:
            break
        floor = safe_floor if attempt == 0 else np.float32(0.0)

    # the bin where each target is crossed, all thresholds in one scan from the top
    cumulative = 0.0
    count_above = 0
    k = 0
    last = -1
    for b in range(counts.shape[0] - SINKS - 1, -1, -1):
        if counts[b] == 0:
            continue
        last = b
        while k < n_thresholds and cumulative + masses[b] >= fractions[order[k]] * total:
            t = order[k]
            boundary[t] = b
            before_mass[t] = cumulative
            before_count[t] = count_above
            k += 1
        if k == n_thresholds:
            break
        cumulative += masses[b]
        count_above += counts[b]
    while k < n_thresholds:  # rounding left a target above the summed mass: it falls in the last bin
        t = order[k]
        boundary[t] = last
        before_mass[t] = cumulative - masses[last]
        before_count[t] = count_above - counts[last]
        k += 1

    # gather the values of the boundary bins, one slot per distinct bin, and sort each slot
    n_slots = 0
    start = 0
    slot_start = np.empty(n_thresholds + 1, dtype=np.int64)
    for t in range(n_thresholds):
        b = boundary[t]
        if slot_of_bin[b] < 0:
            slot_of_bin[b] = n_slots
            slot_start[n_slots] = start
            start += counts[b]
            n_slots += 1
    slot_start[n_slots] = start
    fill = slot_start[:n_slots].copy()
    floor_bits = _bits(floor)
    n = values.shape[0]
    for block in range(block_top.shape[0]):
        if block_top[block] < floor_bits:
            continue
        for j in range(block * BLOCK, min((block + 1) * BLOCK, n)):
            s = slot_of_bin[bin_of[j]]
            if s >= 0:
                slot_values[fill[s]] = values[j]
                fill[s] += 1
    for s in range(n_slots):
        slot_values[slot_start[s]:slot_start[s + 1]] = np.sort(slot_values[slot_start[s]:slot_start[s + 1]])

    # resolve each crossing pixel by pixel: the crossing pixel is included, its value is the cut
    for t in range(n_thresholds):
        s = slot_of_bin[boundary[t]]
        first, stop = slot_start[s], slot_start[s + 1]
        target = fractions[t] * total
        running = before_mass[t]
        position = stop - first - 1
        for i in range(stop - first):
            running += slot_values[stop - 1 - i]
            if running >= target:
                position = i
                break
        cut = slot_values[stop - 1 - position]
        cuts[t] = cut
        n_greater = 0
        n_equal = 0
        for i in range(first, stop):
            n_greater += slot_values[i] > cut
            n_equal += slot_values[i] == cut
        size[p, t] = before_count[t] + position + 1
        above[p, t] = before_count[t] + n_greater
        tied[p, t] = n_equal
    for t in range(n_thresholds):
        slot_of_bin[boundary[t]] = -1

    # the mask's pixels: their mass, and how many lie above / at each cut (only kept ones can)
    n_box = 0
    for i in range(box_pixels.shape[0]):
        v = values[box_pixels[i]]
        box_values[n_box] = v
        n_box += v >= floor
    sums[p, 0] = total
    sums[p, 1] = _box_mass(values, box_pixels)
    for t in range(n_thresholds):
        cut = cuts[t]
        n_greater = 0
        n_equal = 0
        for i in range(n_box):
            n_greater += box_values[i] > cut
            n_equal += box_values[i] == cut
        boxed_above[p, t] = n_greater
        boxed_tied[p, t] = n_equal
    pointing[p, 0] = n_max
    pointing[p, 1] = n_max_near
    return True


@njit(cache=True, nogil=True)
def _from_bits(bits):
    return np.array([bits], dtype=np.int32).view(np.float32)[0]


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _box_mass(values, box_pixels):
    total = 0.0
    for i in range(box_pixels.shape[0]):
        total += values[box_pixels[i]]
    return total


@njit(cache=True, nogil=True)
def _scratch(n_pixels, n_thresholds):
    n_blocks = (n_pixels + BLOCK - 1) // BLOCK
    return (np.empty(n_blocks, dtype=np.int32), np.empty(n_pixels, dtype=np.int16),
            np.zeros(BINS + SINKS, dtype=np.int64), np.zeros(BINS + SINKS, dtype=np.float64),
            np.zeros(SAMPLE_BINS, dtype=np.float64), np.full(BINS + SINKS, -1, dtype=np.int64),
            np.empty(n_pixels, dtype=np.float32),
            np.empty(n_pixels, dtype=np.float32), np.empty(n_thresholds, dtype=np.int64),
            np.empty(n_thresholds, dtype=np.float64), np.empty(n_thresholds, dtype=np.int64),
            np.empty(n_thresholds, dtype=np.float32))


@njit(cache=True, nogil=True)
def _score_run(maps, map_of_pair, box_start, box_pixels, near, mask_of_pair, fractions, order, taps,
               upsampled, first, stop, out, status):
    """Score the pairs first..stop-1: map `map_of_pair[p]` against mask `mask_of_pair[p]` (pixel
    indices box_pixels[box_start[m]:box_start[m + 1]], `near[m]` the pixels within the pointing
    tolerance). Releases the GIL, so threads can score disjoint runs of pairs at once.

    maps: (M, gh, gw) float32, upsampled to the masks' H * W pixels when `upsampled` is False (taps:
    the column and row interpolation taps), else already (M, H, W).
    """
    col_lo, col_hi, col_w0, col_w1, row_lo, row_hi, row_w0, row_w1 = taps
    n_pixels = near.shape[1]
    scratch = _scratch(n_pixels, fractions.shape[0])
    buffer = np.empty(n_pixels, dtype=np.float32)
    wide = np.empty((maps.shape[1], col_lo.shape[0]), dtype=np.float32)
    for p in range(first, stop):
        if upsampled:
            values = maps[map_of_pair[p]].reshape(n_pixels)
        else:
            _upsample_into(maps[map_of_pair[p]], col_lo, col_hi, col_w0, col_w1, row_lo, row_hi, row_w0,
                           row_w1, wide, buffer)
            values = buffer
        m = mask_of_pair[p]
        scored = _score_one(values, box_pixels[box_start[m]:box_start[m + 1]], near[m], fractions, order,
                            scratch, out, p)
        status[p] = SCORED if scored else UNSCORABLE


def score_pairs(maps: np.ndarray, map_of_pair: np.ndarray, masks: np.ndarray, near: np.ndarray,
                mask_of_pair: np.ndarray, fractions: np.ndarray, taps: tuple | None,
                threads: int | None = None) -> dict[str, np.ndarray]:
    """Counts of every (map, mask) pair; see `_score_run`. masks, near: (D, N) bool; `threads`
    (default: the cores this process may run on) threads score disjoint runs of pairs.

    Returns int64 (P, K) `size`, `above`, `tied`, `boxed_above`, `boxed_tied`, float64 (P,) `total`
    and `total_inside`, int64 (P,) `n_max` and `n_max_near`, bool (P,) `scorable`, as
    `thresholds.mass_threshold_counts`. Rows that are not scorable hold zeros.
    """
    n_pairs, n_thresholds = len(map_of_pair), len(fractions)
    names = ("size", "above", "tied", "boxed_above", "boxed_tied")
    counts = {name: np.zeros((n_pairs, n_thresholds), dtype=np.int64) for name in names}
    sums = np.zeros((n_pairs, 2))
    pointing = np.zeros((n_pairs, 2), dtype=np.int64)
    status = np.zeros(n_pairs, dtype=np.int8)
    if n_pairs:
        masks = np.asarray(masks, dtype=bool).reshape(len(masks), -1)
        box_start = np.concatenate([[0], np.cumsum(masks.sum(axis=1))]).astype(np.int64)
        box_pixels = np.nonzero(masks)[1].astype(np.int64)  # row-major: each mask's pixels in turn
        upsampled = taps is None
        if upsampled:
            empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            taps = (empty_i, empty_i, empty_f, empty_f, empty_i, empty_i, empty_f, empty_f)
        args = (np.ascontiguousarray(maps, dtype=np.float32), np.asarray(map_of_pair, np.int64), box_start,
                box_pixels, np.ascontiguousarray(near, dtype=np.uint8), np.asarray(mask_of_pair, np.int64),
                np.asarray(fractions, np.float64), np.argsort(fractions, kind="stable"), taps, upsampled)
        out = tuple(counts[name] for name in names) + (sums, pointing)
        threads = max(1, min(int(threads or len(os.sched_getaffinity(0))), n_pairs))  # cores we may use
        if threads == 1:
            _score_run(*args, 0, n_pairs, out, status)
        else:
            # runs of pairs, a few per thread so that one slow run does not hold the others up
            bounds = np.linspace(0, n_pairs, min(4 * threads, n_pairs) + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                for done in [pool.submit(_score_run, *args, first, stop, out, status)
                             for first, stop in zip(bounds[:-1], bounds[1:])]:
                    done.result()
    return {**counts, "total": sums[:, 0], "total_inside": sums[:, 1], "n_max": pointing[:, 0],
            "n_max_near": pointing[:, 1], "scorable": status == SCORED}
