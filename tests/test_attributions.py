"""The gradient map methods (Chefer, Grad-CAM for ViTs, Integrated Gradients), each cross-checked
against an independent computation, and their flow from extraction to the alignment table."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image

from encoderlens.alignment.job import score_attention_file
from encoderlens.attention.chefer import chefer_maps, relevance_cls_row, relevance_reference
from encoderlens.attention.gradcam_vit import (PooledEmbedding, SelfSimilarityTarget, last_block_norm,
                                               token_grid, vit_gradcam_maps)
from encoderlens.attention.integrated_gradients import ig_attributions, ig_baseline, ig_maps, patch_sums
from encoderlens.attention.methods import methods_for, read_method
from encoderlens.attention.targets import SelfSimilarity
from encoderlens.extract.job import extraction_settings
from encoderlens.extract.run import ExtractionSettings, extract
from encoderlens.models.registry import build_tiny, load_adapter


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    adapters = {}
    for family in ("dinov2", "resnet"):
        build_tiny(family, folder / family, seed=0)
        adapters[family] = load_adapter(family, folder / family)
    return adapters


def _pixels(adapter, n=2, seed=0):
    size = adapter.info.image_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- Chefer ----------------------------------------------------------------------------------
def test_chefer_rule_matches_the_papers_loop_on_random_attentions_and_gradients():
    rng = torch.Generator().manual_seed(1)
    batch, heads, n_prefix, grid, layers = 2, 3, 3, (2, 3), 4
    tokens = n_prefix + grid[0] * grid[1]
    attentions = [torch.randn(batch, heads, tokens, tokens, generator=rng).softmax(-1) for _ in range(layers)]
    gradients = [torch.randn(batch, heads, tokens, tokens, generator=rng) for _ in range(layers)]
    maps = relevance_cls_row(attentions, gradients, n_prefix, grid)
    for image in range(batch):
        # the paper's rule written out once more, element by element for the head mean
        relevance = torch.eye(tokens, dtype=torch.float64)
        for attention, gradient in zip(attentions, gradients):
            cam = torch.zeros(tokens, tokens, dtype=torch.float64)
            for head in range(heads):
                cam += torch.relu(gradient[image, head].double() * attention[image, head].double()) / heads
            relevance = relevance + cam @ relevance
        np.testing.assert_allclose(relevance_reference([a[image] for a in attentions],
                                                       [g[image] for g in gradients]), relevance, rtol=1e-12)
        want = relevance[0, n_prefix:].reshape(grid).numpy()
        np.testing.assert_allclose(maps[image].numpy(), want, rtol=1e-5)
        # the gradient weighting matters: plain attention (gradients of one) gives another map
        plain = relevance_reference([a[image] for a in attentions], [torch.ones_like(a[image]) for a in attentions])
        assert not np.allclose(plain[0, n_prefix:].reshape(grid).numpy(), want, rtol=1e-2)


def test_chefer_maps_of_a_tiny_dinov2_match_the_step_by_step_reference(tiny):
    adapter = tiny["dinov2"]
    info = adapter.info
    pixels = _pixels(adapter)
    maps = chefer_maps(adapter, pixels)
    assert maps.shape == (2, info.grid_h, info.grid_w) and maps.dtype == np.float32
    for image in range(2):  # one image at a time, attention gradients through retain_grad and backward
        output = adapter.encode_with_grad(pixels[image:image + 1], attentions=True)
        for attention in output.attentions:
            attention.retain_grad()
        embedding = output.cls[0]
        (embedding @ (embedding.detach() / embedding.detach().norm())).backward()
        relevance = relevance_reference([a[0].detach() for a in output.attentions],
                                        [a.grad[0] for a in output.attentions])
        want = relevance[0, info.n_prefix_tokens:].reshape(info.grid_h, info.grid_w).numpy()
        np.testing.assert_allclose(maps[image], want, rtol=1e-4, atol=1e-12 * want.max())
        assert want.max() > 0
    adapter.model.zero_grad(set_to_none=True)


# ---- Grad-CAM for ViTs -----------------------------------------------------------------------
def test_vit_gradcam_matches_pytorch_grad_cam_and_a_hand_computation(tiny):
    adapter = tiny["dinov2"]
    info = adapter.info
    pixels = _pixels(adapter, n=3)
    maps = vit_gradcam_maps(adapter, pixels)
    assert maps.shape == (3, info.grid_h, info.grid_w)
    # the package's own output at the input resolution
    model = PooledEmbedding(adapter)
    with torch.no_grad():
        references = model(pixels)
    cam = GradCAM(model=model, target_layers=[last_block_norm(adapter)],
                  reshape_transform=token_grid(info.n_prefix_tokens, (info.grid_h, info.grid_w)))
    direct = cam(input_tensor=pixels.clone().requires_grad_(True),
                 targets=[SelfSimilarityTarget(r) for r in references])
    cam.activations_and_grads.release()
    size = info.image_size
    np.testing.assert_allclose(scale_cam_image(scale_cam_image(maps, (size, size))), direct, atol=1e-5)
    # by hand: the last block's norm1 output and its gradient, prefix tokens dropped
    seen = []

    def keep(_module, _args, output):
        output.retain_grad()
        seen.append(output)

    handle = last_block_norm(adapter).register_forward_hook(keep)
    try:
        embeddings = adapter.pooled(pixels)
        SelfSimilarity(references)(embeddings).sum().backward()
    finally:
        handle.remove()
        adapter.model.zero_grad(set_to_none=True)
    tokens = seen[0][:, info.n_prefix_tokens:].detach()
    grads = seen[0].grad[:, info.n_prefix_tokens:]
    weights = grads.mean(dim=1, keepdim=True)                                # (B, 1, D)
    hand = torch.relu((weights * tokens).sum(-1)).reshape(3, info.grid_h, info.grid_w).numpy()
    hand = (hand - hand.min(axis=(1, 2), keepdims=True))
    hand /= hand.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(maps, hand, atol=1e-5)


# ---- Integrated Gradients --------------------------------------------------------------------
def _riemann(adapter, pixels, baselines, target, steps):
    """The path integral by hand: midpoint rule, every point of the path in one batch."""
    alphas = ((torch.arange(steps) + 0.5) / steps).view(steps, 1, 1, 1, 1)
    points = (baselines + alphas * (pixels - baselines)).reshape(-1, *pixels.shape[1:]).requires_grad_(True)
    (gradient,) = torch.autograd.grad(target(adapter.pooled(points)).sum(), points)  # image i at rows i, i+B, ...
    adapter.model.zero_grad(set_to_none=True)
    return gradient.reshape(steps, *pixels.shape).mean(dim=0) * (pixels - baselines)


@pytest.mark.parametrize("family, steps", [("dinov2", 128), ("resnet", 32)])
def test_integrated_gradients_match_a_riemann_sum_and_completeness(tiny, family, steps):
    adapter = tiny[family]
    pixels = _pixels(adapter, n=1, seed=3)
    attributions, baselines = ig_attributions(adapter, pixels, steps=32, baseline="mean")
    assert not baselines.any()  # mean: zeros after normalisation
    with torch.no_grad():
        target = SelfSimilarity(adapter.pooled(pixels))
        gap = target(adapter.pooled(pixels)) - target(adapter.pooled(baselines))
    riemann = _riemann(adapter, pixels, baselines, target, steps)
    scale = riemann.abs().max()
    assert float((attributions - riemann).abs().max()) < 2e-3 * float(scale)
    np.testing.assert_allclose(attributions.sum(dim=(1, 2, 3)).numpy(), gap.numpy(), rtol=2e-3)
    assert gap.abs().min() > 0


def test_integrated_gradients_baselines_and_patch_sums(tiny):
    adapter = tiny["resnet"]
    pixels = _pixels(adapter)
    black = ig_baseline(adapter, pixels, "black")
    np.testing.assert_allclose((black * adapter.std + adapter.mean).numpy(), 0, atol=1e-6)  # pixel value 0
    with pytest.raises(ValueError, match="IG baseline"):
        ig_baseline(adapter, pixels, "white")
    attributions = torch.randn(2, 3, 12, 8, generator=torch.Generator().manual_seed(0))
    maps = patch_sums(attributions, (3, 2))
    magnitude = attributions.abs().sum(1)
    for row in range(3):
        for col in range(2):
            np.testing.assert_allclose(maps[:, row, col], magnitude[:, 4 * row:4 * row + 4, 4 * col:4 * col + 4]
                                       .sum(dim=(1, 2)), rtol=1e-5)
    with pytest.raises(ValueError, match="patch grid"):
        patch_sums(attributions, (5, 2))


# ---- choice and flow -------------------------------------------------------------------------
def test_the_gradient_methods_run_only_when_chosen():
    names = lambda family, chosen=None: [m.name for m in methods_for(family, chosen)]  # noqa: E731
    assert names("clip") == ["cls", "rollout"] and names("resnet") == ["gradcam"]
    assert names("clip", "all") == ["cls", "rollout", "gradcam", "chefer", "ig"]
    assert names("siglip", "all") == ["mean", "map_probe", "gradcam", "ig"]  # no CLS: no Chefer
    assert names("resnet", "all") == ["gradcam", "ig"]
    assert names("dinov2", ["ig", "cls"]) == ["cls", "ig"] and names("resnet", ["chefer"]) == []
    with pytest.raises(ValueError, match=r"unknown map method\(s\) \['lrp'\]"):
        methods_for("clip", ["lrp"])
    with pytest.raises(ValueError, match="neither 'all'"):
        methods_for("clip", "ig")


def test_the_model_config_reaches_the_extraction_settings():
    base = {"batch_size": 4, "attention_layers": "all", "embedding_layers": [], "num_workers": 0, "device": "cpu",
            "precision": "fp32"}
    chosen = extraction_settings(base | {"map_methods": ["ig"], "ig": {"steps": 8, "baseline": "black"}})
    assert (chosen.map_methods, chosen.ig_steps, chosen.ig_baseline) == (["ig"], 8, "black")
    default = extraction_settings(base | {"map_methods": None, "ig": {}})
    assert (default.map_methods, default.ig_steps, default.ig_baseline) == (None, 32, "mean")


def test_the_gradient_methods_flow_from_extraction_to_the_alignment_table(tiny, tmp_path):
    adapter = tiny["dinov2"]
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        path = tmp_path / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, size=(48, 80, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    settings = ExtractionSettings(batch_size=2, map_methods="all", ig_steps=4)
    extract(["a", "b", "c"], paths, adapter, tmp_path / "embeddings.h5", tmp_path / "attention.h5",
            settings, {"model": "tiny_dinov2"})
    pixels = torch.stack([adapter.preprocess(Image.open(p)) for p in paths])
    info = adapter.info
    with h5py.File(tmp_path / "attention.h5", "r") as store:
        assert sorted(store) == ["chefer", "cls", "gradcam", "ids", "ig", "layers", "rollout"]
        for name, want in (("chefer", chefer_maps(adapter, pixels)), ("gradcam", vit_gradcam_maps(adapter, pixels)),
                           ("ig", ig_maps(adapter, pixels, steps=4))):
            assert store[name].dtype == np.float32 and store[name].shape == (3, info.grid_h, info.grid_w)
            np.testing.assert_allclose(store[name][()], want, rtol=1e-4, atol=1e-6 * want.max(), err_msg=name)
            read = read_method(name, store, slice(0, 2))
            assert read.maps.shape == (2, 1, info.grid_h, info.grid_w) and read.layer.tolist() == [-1]
    boxes = pd.DataFrame({"image_id": ["a", "b"], "box_id": [0, 1], "feature": ["door", "tower"],
                          "left": [0.1, 0.5], "top": [0.2, 0.0], "width": [0.3, 0.4], "height": [0.5, 0.6],
                          "clamped": [False, False]})
    table, _ = score_attention_file(tmp_path / "attention.h5", boxes, "tiny_dinov2", "frozen", [25.0], 2.0)
    assert table["method"].unique().tolist() == ["cls", "rollout", "gradcam", "chefer", "ig"]
    assert table.loc[table["method"] == "ig", "iou"].notna().all()
