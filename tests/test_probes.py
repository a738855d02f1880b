"""Linear probes: the torch solver against scikit-learn, known answers, label handling, the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from encoderlens.probes import (COLUMNS, fit_logistic, level_labels, majority_top1, run_probes,
                                split_level, standardize, stratified_split, topk_accuracy)


@pytest.fixture(autouse=True)
def one_thread():
    # tiny GEMMs on 2 busy cores: OpenMP spinning costs more than the work
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def planted(n=2000, d=64, k=20, separation=0.3, seed=0):
    """Gaussian classes around random means, mixed by a random linear map and shifted, so features
    are correlated and unscaled, as embeddings are; overlapping enough that accuracy is ~55%."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * separation
    y = rng.integers(0, k, n)
    X = (means[y] + rng.normal(size=(n, d))) @ rng.normal(size=(d, d)) * 3 + 5
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def problem():
    X, y = planted()
    train, test, _ = stratified_split(y, 0.2, seed=0)
    X_train, X_test = standardize(X[train], X[test])
    return X_train, y[train], X_test, y[test]


def test_accuracy_matches_sklearn(problem):
    X_train, y_train, X_test, y_test = problem
    probe = fit_logistic(X_train, y_train, C=1.0, max_iter=1000, device="cpu")
    reference = LogisticRegression(C=1.0, max_iter=1000).fit(X_train, y_train)
    ours = np.mean(probe.predict(X_test) == y_test)
    theirs = np.mean(reference.predict(X_test) == y_test)
    assert probe.converged
    assert 0.3 < theirs < 0.8  # a realistic problem: far from chance (0.05) and from perfect
    assert abs(ours - theirs) <= 0.01


@pytest.mark.parametrize("C", [0.1, 0.01])
def test_objective_is_sklearns(C):
    # the same minimiser: coefficients agree, including where the penalty matters (C = 0.01)
    X, y = planted(n=800, d=32, k=10, separation=0.4, seed=1)
    X_train, = standardize(X, dtype=np.float64)
    y_train = y
    probe = fit_logistic(X_train, y_train, C=C, max_iter=1000, tol=1e-6, dtype="float64")
    reference = LogisticRegression(C=C, max_iter=1000, tol=1e-6).fit(X_train, y_train)
    scale = np.abs(reference.coef_).max()
    assert np.abs(probe.coef - reference.coef_.T).max() < 0.01 * scale
    assert np.abs(probe.intercept - reference.intercept_).max() < 0.01 * max(1.0, scale)


def test_two_classes_match_sklearn_binary_at_twice_C():
    X, y = planted(n=600, d=16, k=2, separation=0.5, seed=3)
    X, = standardize(X, dtype=np.float64)
    probe = fit_logistic(X, y, C=0.05, max_iter=1000, tol=1e-7, dtype="float64")
    binary = LogisticRegression(C=0.1, max_iter=1000, tol=1e-8).fit(X, y)
    difference = probe.coef[:, 1] - probe.coef[:, 0]
    np.testing.assert_allclose(difference, binary.coef_[0], rtol=1e-3, atol=1e-4)


def test_probe_outputs(problem):
    X_train, y_train, X_test, _ = problem
    labels = np.array([f"c{i:02d}" for i in y_train], dtype=object)
    probe = fit_logistic(X_train, labels, max_iter=50)
    proba = probe.predict_proba(X_test)
    assert proba.shape == (len(X_test), 20) and probe.decision_function(X_test).shape == proba.shape
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(probe.classes) == sorted(set(labels))
    assert set(probe.predict(X_test)) <= set(labels)
    assert probe.n_iter <= 50 and probe.coef.dtype == np.float32
    assert fit_logistic(X_train, labels, max_iter=5, dtype="float64").coef.dtype == np.float64


def test_fit_is_deterministic(problem):
    X_train, y_train, _, _ = problem
    first = fit_logistic(X_train, y_train, max_iter=30, seed=1)
    second = fit_logistic(X_train, y_train, max_iter=30, seed=1)
    np.testing.assert_array_equal(first.coef, second.coef)


def test_stopping_rule():
    X, y = planted(n=400, d=8, k=3, separation=1.0)
    X, = standardize(X)
    loose = fit_logistic(X, y, tol=1e-2, max_iter=1000)
    tight = fit_logistic(X, y, tol=1e-5, max_iter=1000)
    capped = fit_logistic(X, y, tol=1e-12, max_iter=3)
    assert loose.converged and loose.grad_max <= 1e-2
    assert tight.converged and tight.grad_max <= 1e-5 and tight.n_iter > loose.n_iter
    assert capped.n_iter == 3 and not capped.converged


def test_fit_rejects_one_class():
    with pytest.raises(ValueError, match="two classes"):
        fit_logistic(np.zeros((4, 2)), ["a"] * 4)


# --- labels and splits -------------------------------------------------------------------------

def test_empty_label_is_missing_and_na_is_namibia():
    labels, present = level_labels(["NA", "", "FR", None, "NA", np.nan])
    assert list(present) == [True, False, True, False, True, False]
    assert list(labels[present]) == ["NA", "FR", "NA"]
    split = split_level(["NA"] * 10 + [""] * 7 + ["FR"] * 10)
    assert list(split.classes) == ["FR", "NA"]
    assert split.n_missing == 7 and split.dropped_samples == 0
    assert "" not in set(split.labels[split.train]) | set(split.labels[split.test])
    assert len(split.train) + len(split.test) == 20


def test_read_from_csv_keeps_namibia(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("country,sub-region\nNA,\nNA,x\nFR,x\nFR,\n")
    frame = pd.read_csv(path, keep_default_na=False)
    assert list(split_level(frame["country"]).classes) == ["FR", "NA"]
    assert split_level(frame["sub-region"]).n_missing == 2


def test_class_of_one_sample_is_dropped_and_recorded():
    values = ["a"] * 10 + ["b"] * 10 + ["lonely"] + ["pair"] * 2
    split = split_level(values, min_per_class=2)
    assert split.dropped_samples == 1 and split.dropped_classes == 1
    assert list(split.classes) == ["a", "b", "pair"]
    assert len(split.train) + len(split.test) == 22
    assert "lonely" not in set(split.labels[np.concatenate([split.train, split.test])])
    strict = split_level(values, min_per_class=3)
    assert strict.dropped_samples == 3 and strict.dropped_classes == 2


@pytest.mark.parametrize("test_size", [0.2, 0.6])
def test_every_class_keeps_a_training_sample_when_stratifying_is_impossible(test_size):
    # 30 classes of exactly 2: scikit-learn refuses a 12-sample test set for 30 classes
    y = np.repeat([f"c{i}" for i in range(30)], 2)
    train, test, stratified = stratified_split(y, test_size, seed=0)
    assert not stratified
    assert set(y[train]) == set(y)
    assert len(test) > 0 and len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == len(y)


def test_stratified_split_proportions_and_seed():
    y = np.repeat(["a", "b", "c"], [50, 30, 20])
    train, test, stratified = stratified_split(y, 0.2, seed=0)
    assert stratified and len(test) == 20
    assert dict(zip(*np.unique(y[test], return_counts=True))) == {"a": 10, "b": 6, "c": 4}
    again, _, _ = stratified_split(y, 0.2, seed=0)
    other, _, _ = stratified_split(y, 0.2, seed=1)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


def test_standardize_uses_training_statistics():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaled_train, scaled_test = standardize(train, np.array([[5.0, 7.0]]))
    np.testing.assert_allclose(scaled_train, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(scaled_test, [[3.0, 2.0]])  # constant feature: centred only


# --- metrics -----------------------------------------------------------------------------------

def test_majority_baseline_by_hand():
    assert majority_top1(["a", "a", "b"], ["a", "b", "b", "c"]) == 0.25
    assert majority_top1(["b", "a"], ["a", "b", "b"]) == pytest.approx(1 / 3)  # tie: sorted first


def test_topk_by_hand():
    scores = np.array([[0.1, 0.9, 0.5, 0.0],
                       [0.3, 0.3, 0.2, 0.1],    # tie at the top: a hit at k = 1
                       [0.0, 0.1, 0.2, 0.3]])
    y = np.array([2, 0, 0])
    assert topk_accuracy(scores, y, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, y, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, y, 4) == 1.0


# --- run_probes ----------------------------------------------------------------------------------

def geo_table(n=600, seed=0):
    """Countries with a planted linear signal; regions missing for some; one single-class level."""
    rng = np.random.default_rng(seed)
    countries = np.array(["NA", "FR", "JP", "BR", "US", "IN"])
    y = rng.integers(0, len(countries), n)
    region = np.array([f"{countries[c]}-{rng.integers(0, 3)}" for c in y], dtype=object)
    region[rng.random(n) < 0.1] = ""
    labels = pd.DataFrame({"country": countries[y], "region": region, "continent": "Earth"})
    signal = rng.normal(size=(n, 32)).astype(np.float32)
    signal[:, : len(countries)] += 3.0 * np.eye(len(countries))[y]
    noise = rng.normal(size=(n, 32)).astype(np.float32)
    return {"cls": signal, "mean": noise}, labels


def test_planted_signal_is_recovered_and_noise_is_chance():
    features, labels = geo_table()
    table = run_probes(features, labels, levels=["country"], seed=0)
    assert list(table.columns) == COLUMNS
    by_features = table.set_index("features")
    assert by_features.loc["cls", "top1"] > 0.9
    chance = 1 / 6
    assert abs(by_features.loc["mean", "top1"] - chance) < 0.1
    # random labels on the informative features: chance again
    shuffled = labels.assign(country=np.random.default_rng(1).permutation(labels["country"].to_numpy()))
    random_labels = run_probes({"cls": features["cls"]}, shuffled, levels=["country"])
    assert abs(random_labels["top1"].iloc[0] - chance) < 0.1


def test_table_rows_and_invariants():
    features, labels = geo_table()
    table = run_probes(features, labels, levels=["country", "region", "continent"], seed=0)
    assert len(table) == 6 and list(table["level"]) == ["country"] * 2 + ["region"] * 2 + ["continent"] * 2
    probed = table[table["probeable"]]
    assert (probed["top5"] >= probed["top1"]).all()
    assert (probed["n_train"] + probed["n_test"] + probed["dropped_samples"] + probed["n_missing"]
            == len(labels)).all()
    country = table[table["level"] == "country"].iloc[0]
    assert country["n_classes"] == 6 and country["n_test"] == 120 and country["top5"] >= 5 / 6
    region = table[table["level"] == "region"].iloc[0]
    assert region["n_missing"] == (labels["region"] == "").sum() and region["n_classes"] == 18
    # the majority baseline, recomputed from the same split
    split = split_level(labels["country"], seed=0)
    expected = majority_top1(split.labels[split.train], split.labels[split.test])
    assert country["majority_top1"] == expected
    assert 0 < country["macro_f1"] <= 1


def test_single_class_level_is_not_probeable():
    features, labels = geo_table(n=100)
    labels["empty"] = ""
    table = run_probes(features, labels, levels=["continent", "empty"])
    assert not table["probeable"].any()
    assert table["top1"].isna().all() and table["majority_top1"].isna().all()
    assert list(table["n_classes"]) == [1, 1, 0, 0]
    assert (table.loc[table["level"] == "empty", "n_missing"] == 100).all()


def test_run_probes_is_deterministic_per_seed():
    features, labels = geo_table(n=300)
    first = run_probes(features, labels, levels=["country", "region"], seed=4)
    second = run_probes(features, labels, levels=["country", "region"], seed=4)
    pd.testing.assert_frame_equal(first, second)
    other = run_probes(features, labels, levels=["country", "region"], seed=5)
    assert not first[["top1", "macro_f1"]].equals(other[["top1", "macro_f1"]])


def test_run_probes_checks_inputs():
    features, labels = geo_table(n=50)
    with pytest.raises(ValueError, match="rows"):
        run_probes({"cls": features["cls"][:10]}, labels, levels=["country"])
    with pytest.raises(KeyError, match="city"):
        run_probes(features, labels, levels=["city"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(problem):
    X_train, y_train, X_test, _ = problem
    cpu = fit_logistic(X_train, y_train, max_iter=1000, device="cpu", dtype="float64", tol=1e-6)
    cuda = fit_logistic(X_train, y_train, max_iter=1000, device="cuda", dtype="float64", tol=1e-6)
    assert cuda.device.startswith("cuda")
    np.testing.assert_allclose(cuda.coef, cpu.coef, atol=1e-3)


# ---- streamed probes (issue 16 section 3) ----------------------------------------------------------
def test_streamed_probe_equals_the_full_batch_probe(tmp_path, one_thread):
    """Same objective, same solver: features streamed from HDF5 in blocks of 160 rows give the
    full-batch fit on the standardised in-memory copy. Tolerance: float64 coefficients and loss to
    1e-9 (summation order only); float32 probabilities to 1e-4."""
    import h5py

    from encoderlens.probes.streaming import RowStream, fit_logistic_streaming, stream_moments

    X, y = planted(n=600, d=16, k=5)
    with h5py.File(tmp_path / "embeddings.h5", "w") as store:
        store["cls"] = X.astype(np.float16)  # the stored dtype of large extractions
    X16 = X.astype(np.float16)
    rows = np.sort(np.random.default_rng(3).choice(len(X), 450, replace=False))
    with h5py.File(tmp_path / "embeddings.h5", "r") as store:
        stream = RowStream(store["cls"], rows, chunk_rows=160)
        mean, std = stream_moments(stream)
        for dtype, atol in (("float64", 1e-9), ("float32", 1e-4)):
            (X_train,) = standardize(X16[rows], dtype=np.float64 if dtype == "float64" else np.float32)
            full = fit_logistic(X_train, y[rows], C=0.5, max_iter=500, tol=1e-6, dtype=dtype, device="cpu")
            streamed = fit_logistic_streaming(stream, y[rows], C=0.5, max_iter=500, tol=1e-6, dtype=dtype,
                                              device="cpu", mean=mean, std=std)
            assert streamed.loss == pytest.approx(full.loss, abs=atol)
            np.testing.assert_allclose(streamed.predict_proba(X_train), full.predict_proba(X_train), atol=atol)
            if dtype == "float64":
                np.testing.assert_allclose(streamed.coef, full.coef, atol=1e-9)
                assert streamed.n_iter == full.n_iter and streamed.converged


def test_run_probes_streams_above_stream_rows_with_the_same_results(tmp_path, one_thread):
    import h5py

    features, labels = geo_table()
    with h5py.File(tmp_path / "embeddings.h5", "w") as store:
        for name, array in features.items():
            store[name] = array
    in_memory = run_probes(features, labels, levels=["country", "region"], seed=0, dtype="float64")
    with h5py.File(tmp_path / "embeddings.h5", "r") as store:
        on_disk = {name: store[name] for name in features}
        small = run_probes(on_disk, labels, levels=["country", "region"], seed=0, dtype="float64",
                           stream_rows=10_000)  # read whole: the full-batch path
        streamed = run_probes(on_disk, labels, levels=["country", "region"], seed=0, dtype="float64",
                              stream_rows=100, chunk_rows=64)
    pd.testing.assert_frame_equal(small, in_memory)
    for column in ("top1", "top5", "macro_f1", "majority_top1", "n_train", "n_test", "n_iter", "probeable"):
        assert streamed[column].tolist() == pytest.approx(in_memory[column].tolist()), column
    assert streamed.set_index(["level", "features"]).loc[("country", "cls"), "top1"] > 0.9


def test_per_image_predictions_agree_with_the_table(tmp_path, one_thread):
    """ids given: every held-out sample's answer; mean(correct) per (level, features) is top1 exactly,
    confidence is the predicted class's softmax probability (scikit-learn's predict_proba on the same
    coefficients), full-batch and streamed alike; unprobeable levels have no rows."""
    import h5py
    from sklearn.linear_model import LogisticRegression

    from encoderlens.probes.job import PREDICTION_COLUMNS

    features, labels = geo_table(n=300)
    ids = np.array([f"img{k:03d}" for k in range(len(labels))], dtype=object)
    with h5py.File(tmp_path / "embeddings.h5", "w") as store:
        store["cls"] = features["cls"]
    with h5py.File(tmp_path / "embeddings.h5", "r") as store:
        for stream_rows in (None, 100):
            table, answers = run_probes({**features, "disk": store["cls"]}, labels,
                                        levels=["country", "region", "continent"], seed=0, ids=ids,
                                        stream_rows=stream_rows, chunk_rows=64, dtype="float64")
            assert list(answers.columns) == PREDICTION_COLUMNS
            assert set(answers["level"]) == {"country", "region"}  # continent: one class
            for row in table[table["probeable"]].itertuples():
                own = answers[(answers["level"] == row.level) & (answers["features"] == row.features)]
                assert len(own) == row.n_test and own["image_id"].is_unique
                assert own["correct"].mean() == row.top1  # exactly, not approximately
                truth = labels.set_index(ids)[row.level].loc[own["image_id"]].to_numpy()
                assert (own["true_label"].to_numpy() == truth).all()
                assert ((own["pred_label"] == own["true_label"]) == own["correct"]).all()
            assert answers["confidence"].between(1 / 18, 1).all()
    # confidence recomputed from the split and a reference fit of the same objective
    split = split_level(labels["country"], seed=0)
    X_train, X_test = standardize(features["cls"][split.train], features["cls"][split.test], dtype=np.float64)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X_train, split.labels[split.train])
    own = answers[(answers["level"] == "country") & (answers["features"] == "cls")]
    # run_probes stops at max|gradient| 1e-5, the reference at 1e-10: probabilities agree to ~1e-3
    np.testing.assert_allclose(own["confidence"], reference.predict_proba(X_test).max(axis=1), atol=2e-3)
    assert (own["pred_label"].to_numpy() == reference.predict(X_test)).mean() > 0.98
