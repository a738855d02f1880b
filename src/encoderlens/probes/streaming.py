"""The probe of `linear` on features that stay on disk: rows streamed from HDF5 in minibatches.

Same objective, same solver, same stopping rule as `fit_logistic` (see `linear`): full-batch L-BFGS on

    f(W, b) = mean_i CE(softmax(x_i W + b), y_i) + ||W||^2 / (2 C n)

where every evaluation of f and its gradient is a sum over minibatches of rows read from the source
(an HDF5 dataset, or any array that slices rows) in blocks of `chunk_rows` consecutive rows, so at
most one block of features (and its (rows, K) logits) is in memory at a time, never the whole
matrix. Standardisation (training mean and population std, constant features centred only, as
`data.standardize`) is applied to each block as it is read; its statistics are accumulated the same
way in float64. The result therefore equals `fit_logistic` on the standardised in-memory features up
to floating-point summation order (float32: probabilities agree to ~1e-5; the tests state theirs).

Cost: each evaluation reads the selected rows once (the operating system's page cache serves
repeated reads of a file that fits in memory) and does the same two GEMMs as the full-batch solver.
`run_probes` takes this path above `stream_rows` training rows or when a features source is not an
in-memory array.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .linear import TOLERANCE_CHANGE, LogisticProbe, _torch_dtype, resolve_device, solved_probe

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 65536


@dataclass
class RowStream:
    """Rows `rows` (sorted positions) of `source`, read in blocks of consecutive source rows."""

    source: object            # (N, D) array-like that slices rows: np.ndarray, h5py.Dataset
    rows: np.ndarray          # sorted positions into source
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def __post_init__(self):
        self.rows = np.asarray(self.rows, dtype=np.int64)
        if len(self.rows) and np.any(np.diff(self.rows) <= 0):
            raise ValueError("RowStream rows must be sorted and unique")

    def blocks(self):
        """(offset into `rows`, float64-ready block of the selected rows), block by block."""
        if not len(self.rows):
            return
        first, last = int(self.rows[0]), int(self.rows[-1]) + 1
        for start in range(first, last, self.chunk_rows):
            stop = min(start + self.chunk_rows, last)
            lo, hi = np.searchsorted(self.rows, [start, stop])
            if lo == hi:
                continue
            block = np.asarray(self.source[start:stop])
            yield int(lo), block[self.rows[lo:hi] - start]


def stream_moments(stream: RowStream) -> tuple[np.ndarray, np.ndarray]:
    """(mean, population std) per feature over the stream's rows, in float64; std 0 becomes 1."""
    n = len(stream.rows)
    if n == 0:
        raise ValueError("no rows to standardise on")
    total = None
    for _, block in stream.blocks():
        part = block.sum(axis=0, dtype=np.float64)
        total = part if total is None else total + part
    mean = total / n
    squares = None
    for _, block in stream.blocks():
        part = np.square(block.astype(np.float64) - mean).sum(axis=0)
        squares = part if squares is None else squares + part
    std = np.sqrt(squares / n)
    std[std == 0] = 1.0
    return mean, std


def fit_logistic_streaming(stream: RowStream, y, C: float = 1.0, max_iter: int = 100, tol: float = 1e-4,
                           device: str = "auto", seed: int = 0, dtype: str | torch.dtype = "float32",
                           history_size: int = 10, mean: np.ndarray | None = None,
                           std: np.ndarray | None = None) -> LogisticProbe:
    """`fit_logistic` with the features streamed (module notes). y: (n,) labels of the stream's rows in
    order; mean/std: standardisation (None: none). The probe's coefficients act on standardised rows."""
    if C <= 0:
        raise ValueError(f"C must be positive, not {C}")
    y = np.asarray(y)
    n = len(stream.rows)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"y must be ({n},), got {y.shape}")
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"need at least two classes, got {len(classes)}")
    torch_dtype = _torch_dtype(dtype)
    dev = resolve_device(device)
    d = int(stream.source.shape[1])
    k = len(classes)
    shift = None if mean is None else torch.as_tensor(mean, dtype=torch_dtype, device=dev)
    scale = None if std is None else torch.as_tensor(std, dtype=torch_dtype, device=dev)
    labels = torch.as_tensor(y_index, dtype=torch.long)
    alpha = 1.0 / (C * n)
    W = torch.zeros(d, k, dtype=torch_dtype, device=dev, requires_grad=True)
    b = torch.zeros(k, dtype=torch_dtype, device=dev, requires_grad=True)

    def batches():
        for offset, block in stream.blocks():
            X = torch.as_tensor(block, device=dev).to(torch_dtype)
            if shift is not None:
                X = X.sub_(shift)
            if scale is not None:
                X = X.div_(scale)
            yield X, labels[offset:offset + len(block)].to(dev)

    def closure() -> torch.Tensor:
        # the full-batch closure of `linear`, its sums taken over blocks
        with torch.no_grad():
            loss = torch.zeros((), dtype=torch.float64, device=dev)
            grad_W = torch.zeros_like(W)
            grad_b = torch.zeros_like(b)
            for X, yt in batches():
                logits = torch.addmm(b, X, W)
                picked = logits.gather(1, yt[:, None])[:, 0]
                top = logits.max(dim=1).values
                exps = logits.sub_(top[:, None]).exp_()
                total = exps.sum(dim=1)
                loss += (total.log() + top - picked).double().sum()
                probs = exps.div_(total[:, None] * n)
                probs[torch.arange(len(yt), device=dev), yt] -= 1.0 / n
                grad_W.addmm_(X.T, probs)
                grad_b += probs.sum(dim=0)
            loss = loss / n + 0.5 * alpha * W.double().pow(2).sum()
            W.grad = grad_W.add_(W, alpha=alpha)
            b.grad = grad_b
        return loss

    optimizer = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, max_eval=20 * max_iter,
                                  tolerance_grad=tol, tolerance_change=TOLERANCE_CHANGE,
                                  history_size=history_size, line_search_fn="strong_wolfe")
    optimizer.step(closure)
    return solved_probe(optimizer, closure, W, b, tol, classes, C, dev, torch_dtype, seed, "streamed L-BFGS")


def streamed_predictions(probe: LogisticProbe, stream: RowStream, y_index, mean: np.ndarray | None = None,
                         std: np.ndarray | None = None, top: int = 5) -> tuple[np.ndarray, int, np.ndarray]:
    """(argmax class index per row (n,), rows whose true class is in the top `top`, the argmax class's
    softmax probability per row (n,)) over the stream, block by block, so the (n, K) scores never
    exist at once. The top-k rule is `topk_accuracy`'s: a hit when fewer than `top` classes score
    strictly higher than the true class."""
    y_index = np.asarray(y_index)
    best, hits, confidence = [], 0, []
    for offset, block in stream.blocks():
        X = block.astype(probe.coef.dtype)
        if mean is not None:
            X = (X - mean.astype(X.dtype)) / std.astype(X.dtype)
        scores = probe.decision_function(X)
        best.append(np.argmax(scores, axis=1))
        shifted = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
        confidence.append(1.0 / np.exp(shifted).sum(axis=1))
        truth = y_index[offset:offset + len(block)]
        true_score = scores[np.arange(len(block)), truth]
        hits += int(((scores > true_score[:, None]).sum(axis=1) < top).sum())
    if not best:
        return np.empty(0, dtype=np.int64), hits, np.empty(0)
    return np.concatenate(best), hits, np.concatenate(confidence)
