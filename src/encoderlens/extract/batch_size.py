"""`batch_size: auto`: the largest batch the extraction step fits in the device's free memory.

On CUDA the step itself is the probe: the whole extraction step (forward pass, attention reducers,
every map method, Grad-CAM's pass with gradients included) runs on a synthetic batch of 1, 2, 4, ...
images until one runs out of memory or the next would exceed `MAX_BATCH` or the image count (then
that limit itself is tried); the size is then bisected (3 steps) between the last that fit and the
first that did not, and the largest that fit is used. A CPU (or MPS, whose memory is the machine's) cannot be probed that way (running out of memory
there kills the process), so its size follows a stated rule instead: the largest power of two at most
`CPU_MAX_BATCH`, at most the image count, and at most `CPU_RAM_SHARE` of the available RAM divided by
an estimate of one image's working memory, 4 bytes x (3 H T^2 + 16 T D) (one layer's attention scores,
softmax and reduction temporaries, and the token states with the MLP's 4x expansion; T tokens, H heads,
D width), and at least 1. The size used is written to the HDF5 files' `batch_size` attribute.
"""

from __future__ import annotations

import sys

import torch

MAX_BATCH = 1024
CPU_MAX_BATCH = 64  # beyond this a CPU gains nothing from larger matrix products
CPU_RAM_SHARE = 0.25  # other jobs share the machine's RAM
BISECT_STEPS = 3


def auto_batch_size(step, n_images: int, log=sys.stderr) -> int:
    """The batch size for `step` (an `extract.run.ExtractionStep`) over `n_images` images."""
    adapter = step.adapter
    limit = max(1, min(MAX_BATCH, n_images))
    if adapter.device.type == "cuda":
        size = probe_cuda(step, limit, log)
        print(f"batch_size auto: {size} (largest of the probed sizes that fit in "
              f"{adapter.device}'s memory)", file=log)
        return size
    import psutil
    available = psutil.virtual_memory().available
    size = cpu_batch_size(adapter.info, available, limit)
    print(f"batch_size auto: {size} on {adapter.device} ({available / 2**30:.1f} GiB available, "
          f"{image_bytes(adapter.info) / 2**20:.1f} MiB per image estimated)", file=log)
    return size


def image_bytes(info) -> int:
    """The rule's estimate of one image's working memory in the extraction step."""
    tokens = info.n_prefix_tokens + info.grid_h * info.grid_w
    heads = max(1, info.num_heads)
    return 4 * (3 * heads * tokens ** 2 + 16 * tokens * info.hidden_size)


def cpu_batch_size(info, available_bytes: int, limit: int) -> int:
    fits = max(1, int(CPU_RAM_SHARE * available_bytes // image_bytes(info)))
    cap = min(CPU_MAX_BATCH, limit, fits)
    return 1 << (cap.bit_length() - 1)


def probe_cuda(step, limit: int, log=sys.stderr) -> int:
    size = step.adapter.info.image_size

    def fits(batch: int) -> bool:
        pixels = torch.zeros(batch, 3, size, size, device=step.adapter.device)
        try:
            step(pixels)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            del pixels
            torch.cuda.empty_cache()

    return largest_fitting(fits, limit)


def largest_fitting(fits, limit: int) -> int:
    """Doubling from 1 while `fits(batch)`, then a few bisection steps below the first failure; the
    largest size that fit. Raises if not even one image fits."""
    good, bad = 0, None
    batch = 1
    while batch <= limit:
        if not fits(batch):
            bad = batch
            break
        good = batch
        batch *= 2
    if good == 0:
        raise RuntimeError("batch_size auto: not even one image fits in the device's free memory")
    if bad is None:  # everything up to the limit doubled fine: the limit itself may fit too
        if good == limit or fits(limit):
            return limit
        bad = limit
    for _ in range(BISECT_STEPS):
        middle = (good + bad) // 2
        if middle <= good:
            break
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good
