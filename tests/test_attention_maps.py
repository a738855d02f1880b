import numpy as np
import pytest
import torch

from encoderlens.attention.maps import cls_attention, mean_received_attention, rollout


def random_attentions(rng, layers=3, batch=2, heads=2, tokens=7):
    raw = rng.random((layers, batch, heads, tokens, tokens))
    return list(raw / raw.sum(-1, keepdims=True))


def as_torch(attentions):
    return [torch.from_numpy(a).float() for a in attentions]


def rollout_by_loops(attentions, n_prefix, grid, start_layer, fusion):
    """The formula written out per image, per layer, without broadcasting."""
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[fusion]
    out = []
    for b in range(attentions[0].shape[0]):
        tokens = attentions[0].shape[-1]
        joint = np.eye(tokens)
        for layer in range(start_layer, len(attentions)):
            a = fuse(attentions[layer][b], axis=0) + np.eye(tokens)
            for row in range(tokens):
                a[row] = a[row] / a[row].sum()
            joint = a @ joint
        out.append(joint[0, n_prefix:].reshape(grid))
    return np.array(out)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("start_layer", [0, 1, 2])
def test_rollout_matches_the_formula_with_registers(fusion, start_layer):
    rng = np.random.default_rng(0)
    attentions = random_attentions(rng, tokens=3 + 4)  # CLS + 2 registers + 2x2 patches
    got = rollout(as_torch(attentions), n_prefix=3, grid=(2, 2), start_layer=start_layer,
                  head_fusion=fusion).numpy()
    want = rollout_by_loops(attentions, 3, (2, 2), start_layer, fusion)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_rollout_of_identity_attention_is_zero_on_patches():
    tokens = 5
    attentions = [torch.eye(tokens).expand(1, 2, tokens, tokens) for _ in range(3)]
    np.testing.assert_allclose(rollout(attentions, 1, (2, 2)).numpy(), 0.0)


def test_rollout_rejects_bad_arguments():
    attentions = as_torch(random_attentions(np.random.default_rng(1)))
    with pytest.raises(ValueError, match="head_fusion"):
        rollout(attentions, 1, (2, 3), head_fusion="median")
    with pytest.raises(ValueError, match="start_layer"):
        rollout(attentions, 1, (2, 3), start_layer=3)


def test_cls_attention_drops_prefix_tokens_and_keeps_raw_values():
    rng = np.random.default_rng(2)
    attentions = random_attentions(rng, layers=4, tokens=2 + 6)
    maps = cls_attention(as_torch(attentions), layers=[1, 3], n_prefix=2, grid=(2, 3)).numpy()
    assert maps.shape == (2, 2, 2, 2, 3)
    np.testing.assert_array_equal(maps[1, 1, 0].ravel(), attentions[3][1, 0, 0, 2:].astype(np.float32))
    assert np.all(maps.sum(axis=(-2, -1)) < 1.0)  # prefix mass dropped, not renormalised
    with pytest.raises(ValueError, match="grid"):
        cls_attention(as_torch(attentions), [0], 2, (3, 3))


def test_mean_received_attention_averages_heads_and_queries():
    rng = np.random.default_rng(3)
    attentions = random_attentions(rng, layers=2, tokens=4)
    maps = mean_received_attention(as_torch(attentions), [1], n_prefix=0, grid=(2, 2)).numpy()
    want = attentions[1][0].mean(axis=(0, 1)).reshape(2, 2)
    np.testing.assert_allclose(maps[0, 0], want, rtol=1e-6)
    np.testing.assert_allclose(maps.sum(axis=(-2, -1)), 1.0, rtol=1e-6)


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_rollout_on_a_tiny_dinov2_with_registers_matches_the_formula(tmp_path, fusion):
    from encoderlens.models.registry import build_tiny, load_adapter

    build_tiny("dinov2", tmp_path / "m", seed=1)
    adapter = load_adapter("dinov2", tmp_path / "m")
    info = adapter.info
    assert info.n_prefix_tokens == 3  # CLS and two registers stay inside the product
    pixels = torch.randn(2, 3, info.image_size, info.image_size, generator=torch.Generator().manual_seed(0))
    attentions = adapter.encode(pixels, attentions=True).attentions
    got = rollout(attentions, info.n_prefix_tokens, (info.grid_h, info.grid_w), start_layer=1,
                  head_fusion=fusion).numpy()
    want = rollout_by_loops([a.double().numpy() for a in attentions], info.n_prefix_tokens,
                            (info.grid_h, info.grid_w), 1, fusion)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert got.sum(axis=(1, 2)).max() < 1.0  # mass on CLS and registers is dropped, not renormalised
