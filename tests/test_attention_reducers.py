"""Layer-by-layer attention reduction (issue 16): the same maps as the full-attention computation.

The reference is the full path (every layer's (B, H, T, T) attention returned by `encode`, read by
`attention.maps`); the reduced path feeds each layer's attention from hooks on the attention modules
into the methods' reducers. CLS rows and mean received vectors are stored as float16 and must be
bit-identical; rollout (float64 running product on the CPU, read as float32) must agree to 1e-6
relative (the two paths sum in different orders).
"""

import numpy as np
import pytest
import torch

from encoderlens.attention.maps import (ClsRows, MeanReceivedRows, RolloutProduct, cls_attention,
                                        mean_received_attention, rollout)
from encoderlens.attention.methods import methods_for
from encoderlens.extract.run import MAP_PREFIX, ExtractionSettings, ExtractionStep
from encoderlens.models.registry import build_tiny, load_adapter

ROLLOUT_RTOL = 1e-6


def random_attentions(batch=2, layers=4, heads=3, tokens=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.softmax(3 * torch.randn(batch, heads, tokens, tokens, generator=generator), dim=-1)
            for _ in range(layers)]


def feed(reducer, attentions):
    for index, attention in enumerate(attentions):
        reducer.layer(index, attention)
    return reducer.result()


@pytest.mark.parametrize("start_layer", [0, 2])
@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_rollout_product_equals_the_cls_row_chain(start_layer, head_fusion):
    attentions = random_attentions()  # T = 10: 1 prefix token + a 3 x 3 grid
    want = rollout(attentions, 1, (3, 3), start_layer, head_fusion)
    got = feed(RolloutProduct(len(attentions), 1, (3, 3), start_layer, head_fusion), attentions)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=ROLLOUT_RTOL, atol=0)
    # and it is a rollout, not the last layer's CLS row: the layers below matter
    assert not np.allclose(got.numpy(), feed(RolloutProduct(1, 1, (3, 3), 0, head_fusion),
                                              attentions[-1:]).numpy(), rtol=1e-3)


def test_the_float32_product_keeps_its_precision_inside_the_forward_pass_autocast():
    """On a GPU the product is float32 and the hooks run inside bf16 autocast (here: the CPU's)."""
    attentions = random_attentions(tokens=50, layers=6)  # 1 prefix token + a 7 x 7 grid
    want = rollout(attentions, 1, (7, 7))  # float64, outside any autocast
    reducer = RolloutProduct(len(attentions), 1, (7, 7), dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = feed(reducer, attentions)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=0)


def test_cls_rows_and_mean_received_equal_the_full_path_in_the_storage_dtype():
    attentions = random_attentions(tokens=12)  # 3 prefix tokens + a 3 x 3 grid
    layers = [1, 3]
    cls = feed(ClsRows(layers, 3, (3, 3), torch.float16), attentions)
    assert cls.dtype == torch.float16
    np.testing.assert_array_equal(cls.numpy(), cls_attention(attentions, layers, 3, (3, 3)).half().numpy())
    mean = feed(MeanReceivedRows(layers, 3, (3, 3), torch.float16), attentions)
    np.testing.assert_array_equal(mean.numpy(),
                                  mean_received_attention(attentions, layers, 3, (3, 3)).half().numpy())


def test_a_reducer_missing_a_layer_fails_loudly():
    attentions = random_attentions()
    reducer = RolloutProduct(4, 1, (3, 3))
    for index, attention in enumerate(attentions[:3]):
        reducer.layer(index, attention)
    with pytest.raises(RuntimeError, match="3 of 4 layers"):
        reducer.result()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("reducer_models")
    for family in ("clip", "dinov2", "dinov3", "mae", "siglip"):
        build_tiny(family, root / family, seed=1, num_layers=3)
    return root


@pytest.mark.parametrize("family", ["clip", "dinov2", "dinov3", "mae", "siglip"])
def test_layerwise_extraction_equals_the_full_attention_path(family, tiny_models, monkeypatch):
    adapter = load_adapter(family, tiny_models / family)
    assert adapter.attention_modules() is not None and len(adapter.attention_modules()) == 3
    settings = ExtractionSettings(attention_layers=[0, 2], rollout_start_layer=1,
                                  rollout_head_fusion="max")
    methods = [method(adapter, settings, [0, 2]) for method in methods_for(adapter.traits)]
    pixels = torch.randn(3, 3, adapter.info.image_size, adapter.info.image_size,
                         generator=torch.Generator().manual_seed(2))
    full = ExtractionStep(adapter, methods, settings, [0, 1], layerwise=False)(pixels)

    asked = []
    encode = adapter.encode
    monkeypatch.setattr(adapter, "encode", 
                        lambda *a, **k: asked.append((k["attentions"], k["hidden_states"])) or encode(*a, **k))
    step = ExtractionStep(adapter, methods, settings, [0, 1])
    assert step.layerwise  # chosen by itself: every HF family exposes its attention modules
    reduced = step(pixels)
    assert asked == [(False, False)]  # the forward pass returned no list of attentions or states

    assert full.keys() == reduced.keys()
    assert any(key.startswith(MAP_PREFIX) for key in full) and {"layer_0", "layer_1"} <= full.keys()
    for key in full:
        assert reduced[key].dtype == full[key].dtype, key
        if key == MAP_PREFIX + "rollout":
            np.testing.assert_allclose(reduced[key], full[key], rtol=ROLLOUT_RTOL, atol=0, err_msg=key)
        else:
            np.testing.assert_array_equal(reduced[key], full[key], err_msg=key)


def test_an_adapter_without_attention_modules_falls_back_to_the_full_path(tiny_models, monkeypatch):
    adapter = load_adapter("dinov2", tiny_models / "dinov2")
    monkeypatch.setattr(adapter, "attention_modules", lambda: None)
    settings = ExtractionSettings(attention_layers="all")
    methods = [method(adapter, settings, [0, 1, 2]) for method in methods_for(adapter.traits)]
    step = ExtractionStep(adapter, methods, settings, [])
    assert not step.layerwise
    arrays = step(torch.zeros(2, 3, adapter.info.image_size, adapter.info.image_size))
    assert arrays[MAP_PREFIX + "cls"].shape == (2, 3, adapter.info.num_heads, adapter.info.grid_h,
                                                adapter.info.grid_w)
    assert arrays[MAP_PREFIX + "cls"].dtype == np.float16
