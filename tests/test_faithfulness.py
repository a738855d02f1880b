"""Deletion and insertion curves: exact values on an additive model, Quantus' RegionPerturbation on a
tiny CLIP, a one-pass-per-step reference loop, and the table of one attention file."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from encoderlens.faithfulness.curves import (area_under, deletion_insertion, rank_cells, step_counts,
                                             target_scorer)
from encoderlens.faithfulness.job import COLUMNS, chosen_variants, faithfulness_file
from encoderlens.models.registry import build_tiny, load_adapter


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one torch thread is as fast, and does not stall when the machine is oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_step_counts_and_area():
    assert step_counts(64, 16).tolist() == list(range(0, 65, 4))
    assert step_counts(5, 16).tolist() == [0, 1, 2, 3, 4, 5]          # more steps than cells
    assert step_counts(10, 4).tolist() == [0, 2, 5, 8, 10]            # round half to even: 2.5 -> 2
    np.testing.assert_allclose(area_under(np.array([[1.0, 0.5, 0.0]]), np.array([0, 0.25, 1])),
                               [0.25 * 0.75 + 0.75 * 0.25])


def _additive_scorer(weights, grid, size):
    """e(x) = sum over cells of w_c x (pixel sum of x in cell c) / pixels per cell: linear, 1-D."""
    cell = size // grid[0]
    w = torch.from_numpy(np.kron(weights.reshape(grid), np.ones((cell, cell))) / cell**2).float()

    def encode(batch):
        return (batch * w).sum(dim=(1, 2, 3))[:, None]

    return encode


def test_curves_of_an_additive_model_are_cumulative_weights():
    grid, size = (4, 4), 16
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.1, 1.0, 16)
    pixels = torch.ones(1, 3, size, size)
    encode = _additive_scorer(weights, grid, size)
    scorer = target_scorer(encode, encode(pixels))                    # relative: 1 at the image
    the_map = rng.random(grid)
    curves = deletion_insertion(pixels, rank_cells(the_map[None], "map"), np.array([0]), scorer, grid, steps=8)
    ranked = weights[np.argsort(-the_map.ravel())]
    removed = np.concatenate([[0], np.cumsum(ranked)])[[0, 2, 4, 6, 8, 10, 12, 14, 16]] / weights.sum()
    np.testing.assert_allclose(curves.fractions, np.arange(9) / 8)
    np.testing.assert_allclose(curves.deletion[0], 1 - removed, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(curves.insertion[0], removed, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(curves.deletion_auc, area_under(1 - removed, np.arange(9) / 8), rtol=1e-5)
    # the map that ranks the weights themselves deletes fastest; its inverse slowest
    oracle = weights.reshape(grid)[None]
    best = deletion_insertion(pixels, rank_cells(oracle, "map"), [0], scorer, grid, steps=8)
    worst = deletion_insertion(pixels, rank_cells(oracle, "inverse"), [0], scorer, grid, steps=8)
    assert best.deletion_auc[0] < curves.deletion_auc[0] < worst.deletion_auc[0]
    np.testing.assert_allclose(worst.insertion[0], best.deletion[0][::-1], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip")
    build_tiny("clip", folder, seed=0)
    return folder, load_adapter("clip", folder)


def _inputs(adapter, n=3):
    size = adapter.info.image_size
    pixels = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    maps = np.random.default_rng(0).random((n, adapter.info.grid_h, adapter.info.grid_w))
    return pixels, maps


def _encode(adapter):
    return lambda batch: adapter.encode(batch, attentions=False).cls


def test_deletion_matches_quantus_region_perturbation(clip):
    """Quantus records y(x) - y(x with the first k regions set to the baseline), one region (a patch
    of patch_size) per step, regions ranked by the attribution summed over the patch (morf: most
    relevant first, lerf: least). Ours with one cell per step, zero (mean) fill and the absolute
    projection: y(k) = y(0) - quantus(k)."""
    quantus = pytest.importorskip("quantus")
    _, adapter = clip
    info = adapter.info
    pixels, maps = _inputs(adapter)
    encode = _encode(adapter)
    with torch.no_grad():
        reference = encode(pixels)
    direction = reference / reference.norm(dim=-1, keepdim=True)

    class Projection(torch.nn.Module):  # the explained scalar as Quantus' one-output "classifier"
        def __init__(self):
            super().__init__()
            self.model = adapter.model

        def forward(self, batch):
            return (encode(batch) * direction[: len(batch)]).sum(-1, keepdim=True)

    cells = info.grid_h * info.grid_w
    pixel_maps = np.kron(maps, np.ones((info.patch_size, info.patch_size)))[:, None].astype(np.float32)
    scorer = target_scorer(encode, reference, relative=False)
    for order, quantus_order in (("map", "morf"), ("inverse", "lerf")):
        metric = quantus.RegionPerturbation(patch_size=info.patch_size, order=quantus_order,
                                            regions_evaluation=cells, perturb_baseline=0.0,
                                            normalise=False, abs=False, disable_warnings=True)
        theirs = np.array(metric(model=Projection().eval(), x_batch=pixels.numpy(), y_batch=np.zeros(3, int),
                                 a_batch=pixel_maps, softmax=False, device="cpu", batch_size=3))
        ours = deletion_insertion(pixels, rank_cells(maps, order), np.arange(3), scorer,
                                  (info.grid_h, info.grid_w), steps=cells, batch_size=50)
        assert theirs.shape == (3, cells)
        np.testing.assert_allclose(ours.deletion[:, 1:], ours.deletion[:, :1] - theirs, atol=2e-5, rtol=0)
        assert np.ptp(theirs) > 1e-2  # the curves do move


def test_batched_blur_curves_match_a_loop_of_single_passes(clip):
    _, adapter = clip
    info = adapter.info
    grid, size = (info.grid_h, info.grid_w), info.image_size
    pixels, maps = _inputs(adapter, n=2)
    encode = _encode(adapter)
    with torch.no_grad():
        reference = encode(pixels)
    scorer = target_scorer(encode, reference)
    ours = deletion_insertion(pixels, rank_cells(maps, "map"), np.arange(2), scorer, grid, steps=4,
                              perturbation="blur", blur_sigma=2.0, batch_size=5)
    from torchvision.transforms.functional import gaussian_blur
    cell = size // grid[0]
    for i in range(2):
        blurred = gaussian_blur(pixels[i:i + 1], [13, 13], [2.0, 2.0])
        ranking = np.argsort(-maps[i].ravel())
        for k, count in enumerate([0, 16, 32, 48, 64]):
            mask = np.zeros(grid[0] * grid[1], bool)
            mask[ranking[:count]] = True
            pixel_mask = torch.from_numpy(np.kron(mask.reshape(grid), np.ones((cell, cell))).astype(bool))
            deleted = torch.where(pixel_mask, blurred, pixels[i:i + 1])
            inserted = torch.where(pixel_mask, pixels[i:i + 1], blurred)
            with torch.no_grad():
                want_del = (encode(deleted) @ reference[i] / reference[i].norm() ** 2).item()
                want_ins = (encode(inserted) @ reference[i] / reference[i].norm() ** 2).item()
            assert ours.deletion[i, k] == pytest.approx(want_del, abs=1e-5)
            assert ours.insertion[i, k] == pytest.approx(want_ins, abs=1e-5)
    assert ours.deletion[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_chosen_variants():
    layer = np.array([2, 2, 2, 5, 5, 5])
    head = np.array(["0", "1", "mean", "0", "1", "mean"])
    assert chosen_variants(layer, head).tolist() == [2, 5]
    assert chosen_variants(layer, head, layers="last").tolist() == [5]
    assert chosen_variants(layer, head, heads="all", layers="last").tolist() == [3, 4, 5]
    assert chosen_variants(np.array([-1]), np.array([""]), layers="last").tolist() == [0]


SETTINGS = {"heads": "mean", "layers": "all", "orders": ["map", "random", "inverse"], "steps": 8,
            "perturbation": "mean", "blur_sigma": 4.0, "seed": 0, "batch_size": 64, "max_images": None,
            "methods": None}


def test_table_of_an_attention_file(clip, tmp_path):
    folder, adapter = clip
    info = adapter.info
    grid = (info.grid_h, info.grid_w)
    rng = np.random.default_rng(3)
    ids = ["a", "b", "c"]
    rows = []
    for image_id in ids:
        path = tmp_path / f"{image_id}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        rows.append({"image_id": image_id, "path": str(path)})
    cls = rng.random((3, 2, info.num_heads, *grid)).astype(np.float16)
    rollout = rng.random((3, *grid)).astype(np.float32)
    rollout[1] = 0.5                                                     # constant: ranks nothing
    with h5py.File(tmp_path / "attention.h5", "w") as store:
        store["ids"] = np.array(ids, dtype="S")
        store["layers"] = np.array([0, 1])
        store["cls"] = cls
        store["rollout"] = rollout
    annotations = pd.DataFrame({"image_id": ["a", "c", "c"]})            # b has no boxes
    table, curves = faithfulness_file(tmp_path / "attention.h5", pd.DataFrame(rows), annotations, folder,
                                      "clip", "tiny_clip", "frozen", SETTINGS)
    assert list(table.columns) == COLUMNS
    # images a and c; cls head mean at layers 0 and 1, and rollout; three orders
    assert len(table) == 2 * 3 * 3
    assert set(table["image_id"]) == {"a", "c"}
    assert set(zip(table["method"], table["layer"], table["head"])) == {("cls", 0, -1), ("cls", 1, -1),
                                                                        ("rollout", -1, -1)}
    assert table["scorable"].all()
    random = table[table["order"] == "random"]
    assert random.groupby("image_id")["deletion_auc"].nunique().eq(1).all()  # one random curve per image
    mapped = table[table["order"] == "map"].set_index(["image_id", "method", "layer"])["deletion_auc"]
    assert mapped.nunique() == 6                                         # each map its own curve
    assert len(curves) == len(table) * 2 * 9
    start = curves[(curves["curve"] == "deletion") & (curves["step"] == 0)]["value"]
    np.testing.assert_allclose(start, 1.0, atol=1e-5)
    # the same auc as the curve it summarises
    one = curves[(curves["image_id"] == "c") & (curves["method"] == "rollout") & (curves["order"] == "map")
                 & (curves["curve"] == "insertion")]
    row = table[(table["image_id"] == "c") & (table["method"] == "rollout") & (table["order"] == "map")]
    assert row["insertion_auc"].item() == pytest.approx(area_under(one["value"].to_numpy(),
                                                                   one["fraction"].to_numpy()))
    # a constant map ranks nothing; its image's random rows are still scored
    with h5py.File(tmp_path / "attention.h5", "a") as store:
        store["rollout"][2] = np.full(grid, 0.25, dtype=np.float32)
    table, _ = faithfulness_file(tmp_path / "attention.h5", pd.DataFrame(rows), annotations, folder,
                                 "clip", "tiny_clip", "frozen", {**SETTINGS, "methods": ["rollout"]})
    flat = table[table["image_id"] == "c"].set_index("order")
    assert not flat.loc["map", "scorable"] and np.isnan(flat.loc["map", "deletion_auc"])
    assert flat.loc["random", "scorable"] and np.isfinite(flat.loc["random", "deletion_auc"])


def test_known_answer_on_synthetic_churches():
    """The synthetic churches draw their style only inside the boxes. A tiny CNN trained on two styles
    (round arch vs pediment) explains its predicted class's logit; the boxes as an oracle map delete
    that evidence first: its deletion curve falls faster than the random order's, the inverse
    order's slowest, and insertion the other way round."""
    from encoderlens.data.synthetic_churches import render_church

    torch.manual_seed(0)
    size, grid, styles = 64, (8, 8), ["Q46261", "Q236122"]
    pixels, boxes = [], []
    for i in range(56):
        image, image_boxes = render_church([5, i], styles[i % 2], size, size)
        pixels.append(image)
        boxes.append(image_boxes)
    x = (torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    y = torch.tensor([i % 2 for i in range(56)])
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=2, padding=2), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten())
    head = torch.nn.Linear(16, 2)
    optimiser = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(head(body(x[:48])), y[:48]).backward()
        optimiser.step()
    test = x[48:]
    with torch.no_grad():
        reference = body(test)
    assert (head(reference).argmax(1) == y[48:]).float().mean() >= 0.75
    oracle = np.zeros((8, *grid))
    for j, image_boxes in enumerate(boxes[48:]):
        mask = np.zeros((size, size))
        for x0, y0, x1, y1, _ in image_boxes:
            mask[max(0, y0):y1, max(0, x0):x1] = 1
        oracle[j] = mask.reshape(grid[0], size // grid[0], grid[1], size // grid[1]).mean(axis=(1, 3))
    scorer = target_scorer(body, reference, "class_score", head=head)
    auc = {}
    for order in ("map", "random", "inverse"):
        rankings = rank_cells(oracle, order, seeds=list(range(8)))
        curves = deletion_insertion(test, rankings, np.arange(8), scorer, grid, steps=16)
        auc[order] = (curves.deletion_auc, curves.insertion_auc)
    deletion = {order: values[0].mean() for order, values in auc.items()}
    insertion = {order: values[1].mean() for order, values in auc.items()}
    assert deletion["map"] < deletion["random"] < deletion["inverse"]
    assert insertion["map"] > insertion["random"] > insertion["inverse"]


def _faithfulness_frames():
    rng = np.random.default_rng(0)
    rows, alignment = [], []
    for k in range(12):
        image = f"img{k}"
        random_auc = rng.random()
        for method, layer in (("cls", 0), ("cls", 1), ("rollout", -1)):
            deletion = rng.random() * 0.5 + (0.2 if method == "rollout" else 0.0)
            unscorable = method == "cls" and layer == 0 and k == 3
            for order, value in (("map", deletion), ("random", random_auc)):
                rows.append({"image_id": image, "model": "m", "variant": "frozen", "method": method,
                             "layer": layer, "head": -1, "order": order,
                             "deletion_auc": np.nan if unscorable and order == "map" else value,
                             "insertion_auc": 1 - value, "scorable": not (unscorable and order == "map")})
            for threshold in (10.0, 20.0):
                alignment.append({"image_id": image, "model": "m", "variant": "frozen", "method": method,
                                  "layer": layer, "head": -1, "threshold": threshold,
                                  "iou": rng.random(), "scorable": True})
    return pd.DataFrame(rows), pd.DataFrame(alignment)


STATS = {"n_resamples": 2000, "confidence": 0.95, "seed": 0, "alpha": 0.05, "min_n": 10, "threshold": 20.0}


def test_statistics_pair_images_and_match_scipy():
    from scipy import stats

    from encoderlens.faithfulness.stats import (faithfulness_comparisons, faithfulness_summary,
                                                plausibility_faithfulness)
    table, alignment = _faithfulness_frames()
    shuffled = table.sample(frac=1.0, random_state=1)                  # pairing is by image, not by row
    summary = faithfulness_summary(shuffled, STATS)
    row = summary[(summary["method"] == "cls") & (summary["layer"] == 0) & (summary["order"] == "map")
                  & (summary["metric"] == "deletion_auc")].iloc[0]
    values = table[(table["method"] == "cls") & (table["layer"] == 0) & (table["order"] == "map")]["deletion_auc"]
    assert (row["n"], row["n_dropped"]) == (11, 1)
    assert row["mean"] == pytest.approx(np.nanmean(values))
    assert row["ci_low"] < row["mean"] < row["ci_high"]

    comparisons = faithfulness_comparisons(shuffled, STATS)
    deletion = comparisons[comparisons["metric"] == "deletion_auc"]
    assert deletion["kind"].value_counts().to_dict() == {"random": 3, "methods": 1}
    against = deletion[(deletion["kind"] == "methods")].iloc[0]
    assert (against["method_a"], against["layer_a"], against["method_b"]) == ("cls", 1, "rollout")
    pick = lambda m, l, o: table[(table["method"] == m) & (table["layer"] == l) & (table["order"] == o)]  # noqa: E731
    a = pick("cls", 1, "map").sort_values("image_id")["deletion_auc"].to_numpy()
    b = pick("rollout", -1, "map").sort_values("image_id")["deletion_auc"].to_numpy()
    assert against["p_ttest"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert against["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert against["cohens_dz"] == pytest.approx((a - b).mean() / (a - b).std(ddof=1))
    family = deletion[deletion["kind"] == "random"]
    p = family["p_ttest"].to_numpy()
    order = np.argsort(p)
    holm = np.minimum(np.maximum.accumulate(p[order] * np.arange(3, 0, -1)), 1.0)
    np.testing.assert_allclose(family["p_ttest_holm"].to_numpy()[order], holm)

    plausibility = plausibility_faithfulness(shuffled, alignment, 20.0, STATS)
    assert len(plausibility) == 3
    cls0 = plausibility[(plausibility["method"] == "cls") & (plausibility["layer"] == 0)].iloc[0]
    iou = alignment[(alignment["method"] == "cls") & (alignment["layer"] == 0) & (alignment["threshold"] == 20.0)]
    iou = iou.sort_values("image_id")["iou"].to_numpy()
    auc = pick("cls", 0, "map").sort_values("image_id")["deletion_auc"].to_numpy()
    kept = ~np.isnan(auc)
    assert cls0["n"] == 11 and cls0["iou_mean"] == pytest.approx(iou[kept].mean())
    assert cls0["rho_images"] == pytest.approx(stats.spearmanr(iou[kept], auc[kept]).statistic)
    assert cls0["rho_maps"] == pytest.approx(stats.spearmanr(plausibility["iou_mean"],
                                                             plausibility["deletion_mean"]).statistic)
