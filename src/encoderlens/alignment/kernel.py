"""Compiled scoring kernel: mass thresholds, mask overlaps, coverage and pointing game, many maps at once.

Computes for every (map, mask) pair the same integer counts as the NumPy reference
(`thresholds.mass_threshold_counts`) and the sums behind coverage and the pointing game, without
sorting whole maps. Per map (N pixels, K thresholds):

1. validity (finite, non-negative, positive mass), the total mass and the maximum of every block of
   BLOCK pixels. A map given on its patch grid is upsampled here, and if its grid is plain (finite,
   >= 0, not near float32's maximum) every interpolated pixel is valid, so the pixels are not checked
   and the sums and maxima are taken in the same sweep as the interpolation, row by row;
2. a floor: pixels below (1 - max fraction) * mean can never enter a region (the reference's
   bound); every SAMPLE_STRIDE-th pixel estimates a tighter floor that still keeps the largest
   threshold's mass plus a margin, checked exactly after step 3 (falling back to the safe floor);
3. the values >= floor, from the blocks that reach it, are gathered (about a fifth of the pixels of
   an attention map) and histogrammed: count and mass per bin, BINS logarithmic bins between the floor
   and the maximum (the float's bits as an integer, shifted: monotone in the value, so every value
   of a higher bin is strictly greater than every value of a lower one and ties never straddle bins);
4. one scan of the bins from the top finds, for all K thresholds at once, the bin where the
   cumulative mass crosses the target;
5. only the values of those (at most K) boundary bins are gathered and sorted, and each crossing is
   resolved value by value with the reference's rule (the crossing pixel is included; its value is
   the cut; pixels tied at the cut share the remaining places);
6. the mask's pixels are counted against the K cut values, and their mass summed (coverage).
So a map costs an interpolation sweep, a pass over the blocks above the floor, a histogram of the
values above it, and sorts of a few dozen values, instead of a sort of its top half.

The interpolation uses the same float32 arithmetic as `resize.upsample` (two taps per axis, columns
first), so the pixels are bitwise those of the reference path.

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
BLOCK = 16               # pixels per block (_block_maxima assumes 16); blocks below the floor are skipped
SAMPLE_STRIDE = 13       # every 13th pixel estimates a tighter floor (odd: no alignment with rows of 2^k)
SAMPLE_BINS = 64
SAMPLE_MARGIN = 0.02     # the estimated floor keeps the largest share + 2% (no fallback in 3,440 maps)
PLAIN_MAX = np.float32(1e37)  # grid values up to this cannot overflow float32 when interpolated
RUN_PAIRS = 16           # the fewest pairs a thread scores per call (each call sets up its buffers)
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
def _grid_is_plain(grid):
    """Whether every value of `grid` is finite, >= 0 (or -0.0) and at most PLAIN_MAX: then each
    upsampled pixel, a convex combination of such values, is valid too, and the pixels need no check."""
    for v in grid.ravel():
        if not (v >= 0 and v <= PLAIN_MAX):  # NaN fails both
            return False
    return True


@njit(cache=True, nogil=True)
def _upsample_scan(grid, col_lo, col_hi, col_w0, col_w1, row_lo, row_hi, row_w0, row_w1, wide, out,
                   block_top):
    """`_upsample_into`, then the block maxima and the total mass while each row is in the L1 cache;
    for a plain grid (`_grid_is_plain`), whose pixels are all valid. Returns (total, largest value)."""
    width = col_lo.shape[0]
    if width % BLOCK:  # blocks straddle rows: passes of their own
        _upsample_into(grid, col_lo, col_hi, col_w0, col_w1, row_lo, row_hi, row_w0, row_w1, wide, out)
        return _sum(out), _block_maxima(out, block_top, 0, block_top.shape[0])
    for r in range(grid.shape[0]):
        for c in range(width):
            wide[r, c] = grid[r, col_lo[c]] * col_w0[c] + grid[r, col_hi[c]] * col_w1[c]
    total = 0.0
    top = np.float32(0.0)
    for i in range(row_lo.shape[0]):
        lo, hi, w0, w1 = np.uint64(row_lo[i]), np.uint64(row_hi[i]), row_w0[i], row_w1[i]
        base = np.uint64(i * width)
        for c in range(np.uint64(width)):  # written out: as a function call the loop does not vectorise
            out[base + c] = wide[lo, c] * w0 + wide[hi, c] * w1
        total += _sum(out[base:base + width])
        top = max(top, _block_maxima(out, block_top, base // BLOCK, (base + width) // BLOCK))
    return total, top


@njit(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz"})
def _block_maxima(values, block_top, first, stop):
    """block_top[b] = the largest value of block b (BLOCK pixels), for b in first..stop-1, and the
    largest of them; for valid values only (no NaN). The maximum of a full block is a tree of four
    independent chains: a plain loop is one chain of 16 dependent steps per block, three times slower."""
    n = values.shape[0]
    top = np.float32(0.0)
    for block in range(np.uint64(first), np.uint64(stop)):
        j = block * np.uint64(BLOCK)
        if j + BLOCK <= n:
            a = max(max(values[j], values[j + 8]), max(values[j + 4], values[j + 12]))
            b = max(max(values[j + 1], values[j + 9]), max(values[j + 5], values[j + 13]))
            c = max(max(values[j + 2], values[j + 10]), max(values[j + 6], values[j + 14]))
            d = max(max(values[j + 3], values[j + 11]), max(values[j + 7], values[j + 15]))
            block_max = max(max(a, b), max(c, d))
        else:
            block_max = values[j]
            for i in range(j + 1, n):
                block_max = max(block_max, values[i])
        block_max = max(block_max, np.float32(0.0))  # -0.0 counts as +0
        block_top[block] = block_max
        top = max(top, block_max)
    return top


@njit(cache=True, nogil=True)
def _is_valid(values):
    """Whether every value is finite and >= 0 (or -0.0): one vectorised pass over the int32 bits."""
    bits = values.view(np.int32)
    invalid = 0
    for j in range(bits.shape[0]):
        u = bits[j]
        invalid += (u >= INFINITY_BITS) | ((u < 0) & (u != NEGATIVE_ZERO_BITS))
    return invalid == 0


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
    low = np.float64(floor)
    for j in range(0, values.shape[0], SAMPLE_STRIDE):
        v = values[j]
        # branch-free: a value below the floor lands in bin 0, which is never counted
        position = max((np.float64(v) - low) * scale + 1.0, 0.0)
        sample_masses[min(int(position), n_bins - 1)] += v
    sampled = _sum(sample_masses)  # every sampled value went to one bin
    cumulative = 0.0
    for b in range(n_bins - 1, 1, -1):
        cumulative += sample_masses[b]
        if cumulative >= share * sampled:
            return max(np.float32(low + (b - 1) / scale), floor)
    return floor


@njit(cache=True, nogil=True)
def _keep_above(values, block_top, floor, kept):
    """kept[:k] = the values >= floor, visiting only the blocks that hold one; returns k.

    Branch-free: every value is written and the end advances only past the kept ones, so a map whose
    values cross the floor at random (noise) costs what a smooth one does."""
    n = values.shape[0]
    k = np.uint64(0)  # unsigned indices: no wraparound test for negative ones, a third faster
    for block in range(block_top.shape[0]):
        if block_top[block] < floor:
            continue
        for j in range(np.uint64(block * BLOCK), np.uint64(min((block + 1) * BLOCK, n))):
            v = values[j]
            kept[k] = v
            k += np.uint64(v >= floor)
    return np.int64(k)


@njit(cache=True, nogil=True)
def _maxima(values, block_top, top, near):
    """(number of pixels equal to the maximum `top`, how many of them are near the mask)."""
    n = values.shape[0]
    n_max = 0
    n_max_near = 0
    for block in range(block_top.shape[0]):
        if block_top[block] == top:
            for j in range(block * BLOCK, min((block + 1) * BLOCK, n)):
                if values[j] == top:
                    n_max += 1
                    n_max_near += near[j] != 0
    return n_max, n_max_near


@njit(cache=True, nogil=True)
def _histogram(kept, n_kept, floor, top, counts, masses, bin_of):
    """Count and mass per value bin over [floor, top] of kept[:n_kept] (all >= floor); `bin_of[i]`
    gets value i's bin. Returns the mass of those values.

    Bins are logarithmic: a non-negative float's bit pattern, read as an integer, grows
    monotonically with the value, about linearly in its logarithm, so (bits - floor's bits) >> shift
    is a monotone bin index with a fixed number of bins per octave. Attention maps are heavy-tailed:
    linear bins would pile most pixels into the few bins just above the floor, where the widest
    thresholds cut, and those bins' pixels are sorted."""
    n_bins = counts.shape[0]
    counts[:] = 0
    masses[:] = 0.0
    bits = kept.view(np.int32)
    floor_bits = np.int32(np.array([floor + np.float32(0.0)]).view(np.int32)[0])
    top_bits = np.int32(np.array([top]).view(np.int32)[0])
    shift = 0
    while (top_bits - floor_bits) >> shift >= n_bins:
        shift += 1
    for i in range(np.uint64(n_kept)):
        b = np.uint64(max((bits[i] - floor_bits) >> shift, 0))  # -0.0 (negative bits): only at a floor of 0
        bin_of[i] = b
        counts[b] += 1
        masses[b] += kept[i]
    return _sum(masses)


@njit(cache=True, nogil=True)
def _score_one(values, box_pixels, near, fractions, order, scratch, out, p):
    """Score map `values` (N,) against the mask with pixel indices `box_pixels`; writes row `p` of
    the outputs `out`. Returns whether the map is scorable."""
    if not _is_valid(values):
        return False
    block_top = scratch[0]
    top = _block_maxima(values, block_top, 0, block_top.shape[0])
    return _score_valid(values, top, _sum(values), box_pixels, near, fractions, order, scratch, out, p)


@njit(cache=True, nogil=True)
def _score_valid(values, top, total, box_pixels, near, fractions, order, scratch, out, p):
    """`_score_one` for a map known to be valid, whose block maxima (scratch[0]), largest value and
    total mass are already known."""
    (block_top, bin_of, counts, masses, sample_masses, slot_of_bin, slot_values, box_values, boundary,
     before_mass, before_count, cuts, kept) = scratch
    size, above, tied, boxed_above, boxed_tied, sums, pointing = out
    if not top > 0:  # no mass
        return False
    n_thresholds = fractions.shape[0]
    largest = fractions[order[n_thresholds - 1]]

    # pixels below (1 - f) * mean hold less than (1 - f) of the mass together, so the region holding f
    # never reaches them (as the reference); a sampled floor is tighter and checked, with fallbacks
    safe_floor = np.float32((1 - largest) * total / values.shape[0])
    floor = _sample_floor(values, safe_floor, top, min(largest + SAMPLE_MARGIN, 1.0), sample_masses)
    for attempt in range(3):
        n_kept = _keep_above(values, block_top, floor, kept)
        kept_mass = _histogram(kept, n_kept, floor, top, counts, masses, bin_of)
        if kept_mass >= largest * total:
            break
        floor = safe_floor if attempt == 0 else np.float32(0.0)
    n_max, n_max_near = _maxima(values, block_top, top, near)

    _crossing_bins(counts, masses, fractions, order, total, boundary, before_mass, before_count)
    _resolve_cuts(kept, n_kept, bin_of, counts, boundary, before_mass, before_count, fractions, total,
                  slot_of_bin, slot_values, cuts, size[p], above[p], tied[p])
    sums[p, 0] = total
    sums[p, 1] = _count_box(values, box_pixels, floor, cuts, box_values, boxed_above[p], boxed_tied[p])
    pointing[p, 0] = n_max
    pointing[p, 1] = n_max_near
    return True


@njit(cache=True, nogil=True)
def _crossing_bins(counts, masses, fractions, order, total, boundary, before_mass, before_count):
    """For every threshold t, the bin where the cumulative mass from the top crosses fractions[t] *
    total (boundary[t]), and the mass and count of the bins above it; all thresholds in one scan."""
    n_thresholds = fractions.shape[0]
    cumulative = 0.0
    count_above = 0
    k = 0
    last = -1
    for b in range(counts.shape[0] - 1, -1, -1):
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


@njit(cache=True, nogil=True)
def _resolve_cuts(kept, n_kept, bin_of, counts, boundary, before_mass, before_count, fractions, total,
                  slot_of_bin, slot_values, cuts, size, above, tied):
    """Each threshold's cut value and region counts, from the sorted values of its boundary bin: the
    crossing pixel is included, its value is the cut, pixels tied at the cut share the remaining places.
    slot_of_bin must be all -1 on entry; it is again on return."""
    n_thresholds = fractions.shape[0]
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
    for i in range(np.uint64(n_kept)):
        s = slot_of_bin[np.uint64(bin_of[i])]
        if s >= 0:
            slot_values[fill[s]] = kept[i]
            fill[s] += 1
    for s in range(n_slots):
        slot_values[slot_start[s]:slot_start[s + 1]] = np.sort(slot_values[slot_start[s]:slot_start[s + 1]])

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
        size[t] = before_count[t] + position + 1
        above[t] = before_count[t] + n_greater
        tied[t] = n_equal
    for t in range(n_thresholds):
        slot_of_bin[boundary[t]] = -1


@njit(cache=True, nogil=True)
def _count_box(values, box_pixels, floor, cuts, box_values, boxed_above, boxed_tied):
    """How many of the mask's pixels lie above / at each cut (only those >= floor can); returns the
    mask's mass (for coverage)."""
    n_box = 0
    for i in range(box_pixels.shape[0]):
        v = values[box_pixels[i]]
        box_values[n_box] = v
        n_box += v >= floor
    for t in range(cuts.shape[0]):
        cut = cuts[t]
        n_greater = 0
        n_equal = 0
        for i in range(n_box):
            n_greater += box_values[i] > cut
            n_equal += box_values[i] == cut
        boxed_above[t] = n_greater
        boxed_tied[t] = n_equal
    return _box_mass(values, box_pixels)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _box_mass(values, box_pixels):
    total = 0.0
    for i in range(box_pixels.shape[0]):
        total += values[box_pixels[i]]
    return total


@njit(cache=True, nogil=True)
def _scratch(n_pixels, n_thresholds):
    n_blocks = (n_pixels + BLOCK - 1) // BLOCK
    return (np.empty(n_blocks, dtype=np.float32), np.empty(n_pixels, dtype=np.int16),
            np.zeros(BINS, dtype=np.int64), np.zeros(BINS, dtype=np.float64),
            np.zeros(SAMPLE_BINS, dtype=np.float64), np.full(BINS, -1, dtype=np.int64),
            np.empty(n_pixels, dtype=np.float32),
            np.empty(n_pixels, dtype=np.float32), np.empty(n_thresholds, dtype=np.int64),
            np.empty(n_thresholds, dtype=np.float64), np.empty(n_thresholds, dtype=np.int64),
            np.empty(n_thresholds, dtype=np.float32), np.empty(n_pixels, dtype=np.float32))


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
        m = mask_of_pair[p]
        boxed = box_pixels[box_start[m]:box_start[m + 1]]
        grid = maps[map_of_pair[p]]
        if upsampled:
            scored = _score_one(grid.reshape(n_pixels), boxed, near[m], fractions, order, scratch, out, p)
        elif _grid_is_plain(grid):
            total, top = _upsample_scan(grid, col_lo, col_hi, col_w0, col_w1, row_lo, row_hi, row_w0, row_w1,
                                        wide, buffer, scratch[0])
            scored = _score_valid(buffer, top, total, boxed, near[m], fractions, order, scratch, out, p)
        else:
            _upsample_into(grid, col_lo, col_hi, col_w0, col_w1, row_lo, row_hi, row_w0, row_w1, wide, buffer)
            scored = _score_one(buffer, boxed, near[m], fractions, order, scratch, out, p)
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
            # runs of pairs, many per thread (of RUN_PAIRS pairs at least) so that the threads finish
            # together: one slow run at the end would hold the others up
            n_runs = max(min(16 * threads, n_pairs // RUN_PAIRS), threads)
            bounds = np.linspace(0, n_pairs, n_runs + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                for done in [pool.submit(_score_run, *args, first, stop, out, status)
                             for first, stop in zip(bounds[:-1], bounds[1:])]:
                    done.result()
    return {**counts, "total": sums[:, 0], "total_inside": sums[:, 1], "n_max": pointing[:, 0],
            "n_max_near": pointing[:, 1], "scorable": status == SCORED}
