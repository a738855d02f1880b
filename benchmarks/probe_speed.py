"""Linear-probe speed: encoderlens' torch L-BFGS probe against scikit-learn's default LogisticRegression().

Workload (target from the issue: 40,000 x 1,024 features, 2,000 classes; torch >= 10x faster,
top-1 accuracy within 1 point). The data imitate frozen embeddings of geolocated images rather than
well-separated Gaussian blobs (on which lbfgs stops after ~4 iterations, see FACTS.md):
- 2,000 "cities" nested in 100 "countries": city means = country mean + city offset, in a
  `--latent`-dimensional space, so classes overlap and neighbouring classes are confusable;
- class sizes log-normal (sigma 0.75), at least 2 per class;
- each sample = its city mean + unit latent noise, mapped to `--dim` features by a random matrix
  with a decaying spectrum (correlated, ill-conditioned features), plus isotropic feature noise and a
  per-feature offset.
Both solvers see the same stratified 80/20 split of the same standardised float32 features, C = 1,
max_iter = 100 and, by default, tol = 1e-4: at those values `LogisticRegression(C=1.0,
max_iter=100, tol=1e-4)` is scikit-learn's default `LogisticRegression()`, and tol is the same test
for both (max |gradient| of the same mean-loss objective). scikit-learn keeps float32 input in
float32 for lbfgs, so both do their matrix products in float32. `--tols 1e-4,1e-5` repeats the pair
at each tolerance: with many classes 1e-4 stops far from the optimum (each class's gradient is
scaled by its share of the data), so top-1 there depends on the path each solver took.
One small fit runs first so torch's one-time import of torch._dynamo (pulled in by torch.optim) is
reported as warm-up, not as fit time. The machine's 1-minute load average is printed at the end:
on a shared machine, other jobs slow both solvers.

    python benchmarks/probe_speed.py                      # the full-size target
    python benchmarks/probe_speed.py --rows 16000 --dim 512 --classes 800 --tols 1e-4,1e-5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from encoderlens.probes import fit_logistic, standardize, stratified_split


def geo_embeddings(rows: int, dim: int, classes: int, latent: int, separation: float,
                   feature_noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    countries = max(2, classes // 20)
    country_of = rng.integers(0, countries, classes)
    means = (rng.normal(size=(countries, latent))[country_of] * separation
             + rng.normal(size=(classes, latent)) * separation * 0.75)
    weights = rng.lognormal(0.0, 0.75, classes)
    y = rng.choice(classes, size=rows, p=weights / weights.sum())
    y[: 2 * classes] = np.repeat(np.arange(classes), 2)  # at least two per class
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(latent))
    mixing = rng.normal(size=(latent, dim)) * spectrum[:, None]
    X = (means[y] + rng.normal(size=(rows, latent))) @ mixing
    X += feature_noise * rng.normal(size=(rows, dim)) + rng.normal(size=dim) * 3
    return X.astype(np.float32), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=2000)
    parser.add_argument("--latent", type=int, default=256)
    parser.add_argument("--separation", type=float, default=0.35,
                        help="scale of country and city means against unit latent noise")
    parser.add_argument("--feature-noise", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tols", type=lambda text: [float(t) for t in text.split(",")], default=[1e-4],
                        help="comma-separated gradient tolerances; both solvers run at each "
                             "(1e-4: scikit-learn's default)")
    parser.add_argument("--max-iter", type=int, default=100, help="100: scikit-learn's default")
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    X, y = geo_embeddings(args.rows, args.dim, args.classes, args.latent, args.separation,
                          args.feature_noise, args.seed)
    train, test, _ = stratified_split(y, 0.2, seed=args.seed)
    X_train, X_test = standardize(X[train], X[test])
    y_train, y_test = y[train], y[test]
    data_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    fit_logistic(X_train[:200, :8], y_train[:200] % 2, max_iter=5, tol=1.0, device=args.device)
    warmup_s = time.perf_counter() - t0

    result = {"rows": args.rows, "dim": args.dim, "classes": args.classes, "n_train": len(train),
              "n_test": len(test), "data_s": round(data_s, 1), "torch_warmup_s": round(warmup_s, 2),
              "runs": []}
    for tol in args.tols:
        t0 = time.perf_counter()
        probe = fit_logistic(X_train, y_train, C=1.0, max_iter=args.max_iter, tol=tol, device=args.device)
        torch_s = time.perf_counter() - t0
        torch_pred = probe.predict(X_test)
        run = {"tol": tol, "max_iter": args.max_iter, "torch_device": probe.device,
               "torch_dtype": probe.dtype, "torch_s": round(torch_s, 2), "torch_n_iter": probe.n_iter,
               "torch_n_evals": probe.n_evals, "torch_converged": probe.converged,
               "torch_grad_max": float(f"{probe.grad_max:.3g}"),
               "torch_top1": round(float(np.mean(torch_pred == y_test)), 4)}
        if not args.skip_sklearn:
            t0 = time.perf_counter()
            reference = LogisticRegression(C=1.0, max_iter=args.max_iter, tol=tol).fit(X_train, y_train)
            sklearn_s = time.perf_counter() - t0
            sklearn_pred = reference.predict(X_test)
            sklearn_top1 = float(np.mean(sklearn_pred == y_test))
            run.update({
                "sklearn_s": round(sklearn_s, 2), "sklearn_n_iter": int(np.max(reference.n_iter_)),
                "sklearn_top1": round(sklearn_top1, 4),
                "prediction_agreement": round(float(np.mean(sklearn_pred == torch_pred)), 4),
                "speedup": round(sklearn_s / torch_s, 2),
                "top1_gap_points": round(100 * (float(np.mean(torch_pred == y_test)) - sklearn_top1), 2),
            })
        result["runs"].append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    result.update({"load_average_1min_at_end": round(os.getloadavg()[0], 2),
                   "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                   "torch": torch.__version__})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
