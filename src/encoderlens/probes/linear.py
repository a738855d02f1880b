"""Multinomial logistic regression with an L2 penalty, fitted full-batch by L-BFGS in torch.

Objective (the same minimiser as scikit-learn's ``LogisticRegression(C=C)``, lbfgs, more than two
classes)::

    f(W, b) = mean_i CE(softmax(x_i W + b), y_i) + ||W||^2 / (2 C n)

scikit-learn writes its objective as ``C * sum_i CE_i + ||W||^2 / 2``; dividing by ``C n`` gives
``f``, and scikit-learn itself minimises exactly ``f`` internally (``l2_reg_strength = 1 / (C n)``).
W is (D, K), one column per class (the symmetric, over-complete parametrisation scikit-learn uses
for multinomial fits); the intercept b is not penalised. With two classes this is scikit-learn's
*binary* fit at ``C_binary = 2 C`` (the penalty on the two symmetric columns is half that on their
difference).

Stopping rule (scikit-learn's, on the same f): stop when ``max |grad f| <= tol`` (scikit-learn
passes ``gtol=tol`` to scipy's L-BFGS-B, whose test is the same max-abs gradient), or after
``max_iter`` L-BFGS iterations, or when an iteration changes neither f nor the parameters at all
(``tolerance_change = 0``; the search direction is no longer a descent direction, or the line search
finds no decrease). scipy's extra ``ftol = 64 eps`` relative test on f is not reproduced: in float64
it almost never binds before the gradient test. Function evaluations (line-search steps included)
are capped at ``20 * max_iter``, which in practice never binds (scipy's default cap is 15,000).
Line search: strong Wolfe; memory: 10 pairs (scipy's default). ``probe.converged`` says whether the
gradient test was met; the final max|grad| is ``probe.grad_max``.

Precision: features, weights and the two GEMMs per evaluation are in `dtype` (float32 by default;
float64 on request), the sums that form f are in float64. In float32 the line search stops making
progress at roughly ``max |grad f| ~ 1e-6 .. 1e-5``; scikit-learn's default tol, 1e-4, is reached
with room to spare. Ask for float64 for tighter tolerances.

Start: W = 0, b = 0, as in scikit-learn. The fit is full-batch and draws no random numbers, so it is
deterministic for a given device, dtype and thread count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

TOLERANCE_CHANGE = 0.0  # stop on no change at all in f or the parameters (see the module docstring)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto': CUDA when present, else CPU. Any other name is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, torch.dtype):
        if dtype not in dtypes.values():
            raise ValueError(f"dtype must be float32 or float64, not {dtype}")
        return dtype
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, not {dtype!r}")
    return dtypes[dtype]


@dataclass
class LogisticProbe:
    """A fitted multinomial probe: scores = X @ coef + intercept, columns in the order of `classes`."""

    coef: np.ndarray        # (D, K)
    intercept: np.ndarray   # (K,)
    classes: np.ndarray     # (K,) class labels, sorted
    C: float
    n_iter: int             # L-BFGS iterations run
    n_evals: int            # objective + gradient evaluations (line search included)
    loss: float             # f at the solution (penalty included)
    grad_max: float         # max |grad f| at the solution
    converged: bool         # grad_max <= tol
    device: str
    dtype: str
    seed: int

    def decision_function(self, X) -> np.ndarray:
        """(N, K) class scores (logits)."""
        X = np.asarray(X, dtype=self.coef.dtype)
        return X @ self.coef + self.intercept

    def predict_proba(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def predict(self, X) -> np.ndarray:
        return self.classes[np.argmax(self.decision_function(X), axis=1)]


def fit_logistic(X, y, C: float = 1.0, max_iter: int = 100, tol: float = 1e-4, device: str = "auto",
                 seed: int = 0, dtype: str | torch.dtype = "float32",
                 history_size: int = 10) -> LogisticProbe:
    """Fit the L2-penalised multinomial logistic regression of the module docstring.

    X: (N, D) features (standardise them first: the penalty is not scale-invariant); y: (N,) labels
    of any sortable kind, at least two distinct. The defaults of C, max_iter and tol are
    scikit-learn's. The fit starts from zeros and draws no random numbers: `seed` is recorded on the
    probe (so a probe says which split seed produced it) but cannot change the result.
    """
    if C <= 0:
        raise ValueError(f"C must be positive, not {C}")
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X must be (N, D) and y (N,), got {X.shape} and {y.shape}")
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"need at least two classes, got {len(classes)}")
    torch_dtype = _torch_dtype(dtype)
    dev = resolve_device(device)

    n, d = X.shape
    k = len(classes)
    Xt = torch.as_tensor(X, dtype=torch_dtype, device=dev)
    yt = torch.as_tensor(y_index, dtype=torch.long, device=dev)
    rows = torch.arange(n, device=dev)
    alpha = 1.0 / (C * n)
    W = torch.zeros(d, k, dtype=torch_dtype, device=dev, requires_grad=True)
    b = torch.zeros(k, dtype=torch_dtype, device=dev, requires_grad=True)

    def closure() -> torch.Tensor:
        # analytic gradient, no autograd graph: one GEMM forward, one backward, the logits
        # turned into (softmax - onehot) / n in place
        with torch.no_grad():
            logits = torch.addmm(b, Xt, W)
            picked = logits.gather(1, yt[:, None])[:, 0]
            top = logits.max(dim=1).values
            exps = logits.sub_(top[:, None]).exp_()
            total = exps.sum(dim=1)
            # per-sample terms in the working dtype, sums in float64: in float32 the line search's
            # sufficient-decrease test would otherwise drown in the rounding of the sum
            loss = ((total.log() + top - picked).double().sum() / n
                    + 0.5 * alpha * W.double().pow(2).sum())
            probs = exps.div_(total[:, None] * n)
            probs[rows, yt] -= 1.0 / n
            W.grad = torch.addmm(W, Xt.T, probs, beta=alpha)
            b.grad = probs.sum(dim=0)
        return loss

    optimizer = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, max_eval=20 * max_iter,
                                  tolerance_grad=tol, tolerance_change=TOLERANCE_CHANGE,
                                  history_size=history_size,
                                  line_search_fn="strong_wolfe")
    optimizer.step(closure)
    return solved_probe(optimizer, closure, W, b, tol, classes, C, dev, torch_dtype, seed, "L-BFGS")


def solved_probe(optimizer, closure, W, b, tol: float, classes, C: float, dev, torch_dtype, seed: int,
                 solver: str) -> LogisticProbe:
    """The probe at the point L-BFGS stopped (full-batch or streamed): the loss and gradient evaluated
    there (torch does not keep them), and whether max |gradient| met the tolerance (logged if not)."""
    state = optimizer.state[W]
    final_loss = float(closure())
    grad_max = max(float(W.grad.abs().max()), float(b.grad.abs().max()))
    converged = grad_max <= tol
    if not converged:
        log.warning("%s stopped after %d iterations with max|grad| %.3g > tol %.3g",
                    solver, state.get("n_iter", 0), grad_max, tol)
    return LogisticProbe(
        coef=W.detach().cpu().numpy(), intercept=b.detach().cpu().numpy(), classes=classes, C=C,
        n_iter=int(state.get("n_iter", 0)), n_evals=int(state.get("func_evals", 0)) + 1,
        loss=final_loss, grad_max=grad_max, converged=converged, device=str(dev),
        dtype=str(torch_dtype).removeprefix("torch."), seed=seed)
