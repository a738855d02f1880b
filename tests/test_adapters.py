"""Model registry and family adapters, checked on tiny random checkpoints loaded via `from_pretrained`."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPModel, DINOv3ViTModel, Dinov2WithRegistersModel, SiglipModel, ViTMAEModel

from encoderlens.models.base import check_attentions
from encoderlens.models.registry import (DEFAULT_HUB_IDS, FAMILIES, adapter_class, build_tiny,
                                         load_adapter)

ALL = list(FAMILIES)
# the families with one fixed transformers class (`model_class`); vit and timm: tests/test_families.py
VITS = ["dinov2", "dinov3", "mae", "clip", "siglip"]
ATTENTION = VITS + ["vit", "timm"]
CLS_FAMILIES = ["dinov2", "dinov3", "mae", "clip", "vit", "timm"]
BATCH = 2
TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """family -> folder of its tiny checkpoint, each built once for the module."""
    root = tmp_path_factory.mktemp("tiny")
    folders = {}

    def folder(family):
        if family not in folders:
            build_tiny(family, root / family, seed=0)
            folders[family] = root / family
        return folders[family]

    return folder


@pytest.fixture(scope="module")
def adapters(tiny):
    loaded = {}

    def adapter(family):
        if family not in loaded:
            loaded[family] = load_adapter(family, tiny(family))
        return loaded[family]

    return adapter


def pixels(adapter, seed=0, batch=BATCH):
    generator = torch.Generator().manual_seed(seed)
    size = adapter.info.image_size
    return torch.randn(batch, 3, size, size, generator=generator)


def bare_model(family, folder, attn_implementation="eager"):
    """The model as transformers itself loads it, without the adapter (for CLIP/SigLIP: the full model)."""
    if family == "clip":
        return CLIPModel.from_pretrained(folder, attn_implementation=attn_implementation).vision_model.eval()
    if family == "siglip":
        return SiglipModel.from_pretrained(folder, attn_implementation=attn_implementation).vision_model.eval()
    if family == "mae":
        return ViTMAEModel.from_pretrained(folder, attn_implementation=attn_implementation, mask_ratio=0.0).eval()
    model_class = {"dinov2": Dinov2WithRegistersModel, "dinov3": DINOv3ViTModel}[family]
    return model_class.from_pretrained(folder, attn_implementation=attn_implementation).eval()


# ---- registry -------------------------------------------------------------------------------------
def test_registry_has_exactly_the_eight_families():
    assert set(FAMILIES) == {"dinov2", "dinov3", "mae", "clip", "siglip", "resnet", "vit", "timm"}
    for family, adapter in FAMILIES.items():
        assert adapter.family == family
    assert DEFAULT_HUB_IDS["dinov2"] == "facebook/dinov2-with-registers-base"
    assert DEFAULT_HUB_IDS["siglip"] == "google/siglip2-base-patch16-224"
    assert "geolocal/StreetCLIP" in FAMILIES["clip"].hub_ids


def test_unknown_family_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"'vit_huge'.*dinov2.*resnet.*vit, timm.*README section 'Your own model"):
        adapter_class("vit_huge")
    with pytest.raises(ValueError, match="vit_huge"):
        build_tiny("vit_huge", tmp_path / "x")
    with pytest.raises(ValueError, match="vit_huge"):
        load_adapter("vit_huge", tmp_path)


def test_unknown_tiny_override_is_refused(tmp_path):
    with pytest.raises(ValueError, match="num_experts"):
        build_tiny("dinov2", tmp_path / "x", num_experts=4)
    with pytest.raises(ValueError, match="patch_size"):
        build_tiny("resnet", tmp_path / "y", patch_size=8)


# ---- shapes and ModelInfo -------------------------------------------------------------------------
@pytest.mark.parametrize("family", ALL)
def test_encode_shapes_agree_with_model_info(family, adapters):
    adapter = adapters(family)
    info = adapter.info
    out = adapter.encode(pixels(adapter), attentions=True, hidden_states=True)
    patches = info.grid_h * info.grid_w
    assert info.grid_h == info.grid_w == info.image_size // info.patch_size
    assert out.cls.shape == out.mean.shape == (BATCH, info.hidden_size)
    assert torch.isfinite(out.cls).all() and torch.isfinite(out.mean).all()
    assert (out.cls_raw is not None) == info.has_cls
    if family == "resnet":
        assert out.attentions is None and out.map_probe is None
        assert (info.patch_size, info.n_prefix_tokens, info.has_cls) == (32, 0, False)
        assert out.hidden_states[-1].shape == (BATCH, patches, info.hidden_size)
        return
    tokens = info.n_prefix_tokens + patches
    assert len(out.attentions) == info.num_layers == 3
    for attention in out.attentions:
        assert attention.shape == (BATCH, info.num_heads, tokens, tokens)
    assert len(out.hidden_states) == info.num_layers + 1
    for state in out.hidden_states:
        assert state.shape == (BATCH, tokens, info.hidden_size)
    if info.has_cls:
        assert out.cls_raw.shape == (BATCH, info.hidden_size)
    assert (out.map_probe is not None) == (family == "siglip")


def test_prefix_tokens_per_family(adapters):
    expected = {"dinov2": 1 + 2, "dinov3": 1 + 4, "mae": 1, "clip": 1, "siglip": 0, "resnet": 0, "vit": 1, "timm": 1}
    assert {family: adapters(family).info.n_prefix_tokens for family in ALL} == expected
    assert [family for family in ALL if adapters(family).info.has_cls] == CLS_FAMILIES


@pytest.mark.parametrize("family", ALL)
def test_attention_and_hidden_states_only_when_asked(family, adapters):
    out = adapters(family).encode(pixels(adapters(family)), attentions=False)
    assert out.attentions is None and out.hidden_states is None


@pytest.mark.parametrize("family", ALL)
def test_encode_refuses_pixels_of_another_size(family, adapters):
    with pytest.raises(ValueError, match="expected pixels"):
        adapters(family).encode(torch.zeros(1, 3, 40, 40))


# ---- determinism of the tiny builds ---------------------------------------------------------------
@pytest.mark.parametrize("family", ALL)
def test_build_tiny_is_deterministic_in_the_seed(family, tiny, tmp_path):
    build_tiny(family, tmp_path / "again", seed=0)
    build_tiny(family, tmp_path / "other", seed=1)
    reference = load_file(tiny(family) / "model.safetensors")
    again = load_file(tmp_path / "again" / "model.safetensors")
    other = load_file(tmp_path / "other" / "model.safetensors")
    assert reference.keys() == again.keys() == other.keys()
    assert all(torch.equal(reference[key], again[key]) for key in reference)
    assert not all(torch.equal(reference[key], other[key]) for key in reference)


def test_build_tiny_leaves_the_callers_random_stream_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny("mae", tmp_path / "mae", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_overrides_reach_the_config(tmp_path):
    build_tiny("dinov2", tmp_path / "d", image_size=48, patch_size=16, hidden_size=24, num_layers=2,
               num_heads=3)
    info = load_adapter("dinov2", tmp_path / "d").info
    assert (info.image_size, info.patch_size, info.grid_h, info.hidden_size, info.num_layers, info.num_heads) == (
        48, 16, 3, 24, 2, 3)
    build_tiny("resnet", tmp_path / "r", image_size=96, hidden_size=128, num_layers=2)
    info = load_adapter("resnet", tmp_path / "r").info
    assert (info.image_size, info.grid_h, info.hidden_size) == (96, 3, 128)


# ---- preprocessing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ALL)
def test_preprocess_squashes_a_wide_image_without_cropping(family, adapters):
    """Quarters red | green | blue | white of a 2:1 image stay quarters; a centre crop would lose red and white."""
    adapter = adapters(family)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], dtype=np.uint8)
    image = Image.fromarray(np.repeat(np.repeat(colours[None], 50, axis=1), 100, axis=0))  # 100 x 200
    tensor = adapter.preprocess(image)
    size = adapter.info.image_size
    assert tensor.shape == (3, size, size)
    rgb = (tensor * adapter.std + adapter.mean).numpy()
    quarter, margin = size // 4, 3  # stay clear of the bicubic ringing at the colour edges
    for index, colour in enumerate(colours / 255.0):
        block = rgb[:, :, index * quarter + margin:(index + 1) * quarter - margin]
        np.testing.assert_allclose(block.mean(axis=(1, 2)), colour, atol=0.02)


def test_normalisation_is_read_from_the_checkpoint(adapters):
    assert np.allclose(adapters("siglip").mean.flatten(), 0.5)
    assert np.allclose(adapters("clip").mean.flatten(), [0.48145466, 0.4578275, 0.40821073])
    assert np.allclose(adapters("dinov2").std.flatten(), [0.229, 0.224, 0.225])


def test_resnet_reads_normalisation_from_the_timm_config(tiny, tmp_path):
    folder = tmp_path / "resnet"
    shutil.copytree(tiny("resnet"), folder)
    assert not (folder / "preprocessor_config.json").exists()  # a timm hub snapshot has none either
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"]["mean"] = [0.1, 0.2, 0.3]
    (folder / "config.json").write_text(json.dumps(config))
    assert np.allclose(load_adapter("resnet", folder).mean.flatten(), [0.1, 0.2, 0.3])


# ---- attention against the bare transformers model ---------------------------------------------------
@pytest.mark.parametrize("family", VITS)
def test_attention_equals_the_bare_models_own(family, adapters, tiny):
    adapter = adapters(family)
    x = pixels(adapter, seed=1)
    out = adapter.encode(x, attentions=True)
    model = bare_model(family, tiny(family))
    kwargs = {}
    if family == "mae":
        kwargs["noise"] = torch.arange(adapter.info.grid_h * adapter.info.grid_w).float().expand(BATCH, -1)
    with torch.no_grad():
        reference = model(x, output_attentions=True, **kwargs)
    assert len(reference.attentions) == len(out.attentions)
    for mine, theirs in zip(out.attentions, reference.attentions):
        if adapter.info.has_cls:
            torch.testing.assert_close(mine[:, :, 0], theirs[:, :, 0], **TOL)
        torch.testing.assert_close(mine, theirs, **TOL)
    if getattr(reference, "pooler_output", None) is not None:
        torch.testing.assert_close(out.cls, reference.pooler_output, **TOL)
    patch_tokens = reference.last_hidden_state[:, adapter.info.n_prefix_tokens:]
    assert patch_tokens.shape[1] == adapter.info.grid_h * adapter.info.grid_w
    torch.testing.assert_close(out.mean, patch_tokens.mean(dim=1), **TOL)


@pytest.mark.parametrize("family", ATTENTION)
def test_attention_rows_are_softmax_distributions(family, adapters):
    out = adapters(family).encode(pixels(adapters(family), seed=2))
    for attention in out.attentions:
        assert (attention >= 0).all()
        torch.testing.assert_close(attention.sum(dim=-1), torch.ones(attention.shape[:-1]), atol=1e-5, rtol=0)
    if out.map_probe is not None:
        torch.testing.assert_close(out.map_probe.sum(dim=-1), torch.ones(out.map_probe.shape[:-1]), atol=1e-5,
                                   rtol=0)


@pytest.mark.parametrize("family", CLS_FAMILIES)
def test_cls_raw_is_the_last_layers_cls_before_any_norm(family, adapters):
    adapter = adapters(family)
    out = adapter.encode(pixels(adapter, seed=3), hidden_states=True)
    torch.testing.assert_close(out.cls_raw, out.hidden_states[-1][:, 0], **TOL)
    norm = {"dinov2": "layernorm", "dinov3": "norm", "mae": "layernorm", "clip": "post_layernorm", "vit": "layernorm",
            "timm": "timm_model.norm"}[family]
    torch.testing.assert_close(out.cls, adapter.model.get_submodule(norm)(out.cls_raw), **TOL)
    assert not torch.allclose(out.cls, out.cls_raw)


@pytest.mark.parametrize("family", ATTENTION)
def test_another_image_size_interpolates_positions(family, tiny):
    adapter = load_adapter(family, tiny(family), image_size=32)
    info = adapter.info
    assert (info.grid_h, info.grid_w) == (4, 4)
    out = adapter.encode(pixels(adapter))
    assert out.attentions[0].shape[-1] == info.n_prefix_tokens + 16
    with pytest.raises(ValueError, match="multiple of patch_size"):
        load_adapter(family, tiny(family), image_size=36)


def test_dinov2_analyses_hub_sized_checkpoints_at_224(tmp_path):
    build_tiny("dinov2", tmp_path / "d", image_size=518, patch_size=14, num_layers=1)
    adapter = load_adapter("dinov2", tmp_path / "d")
    assert (adapter.info.image_size, adapter.info.grid_h) == (224, 16)
    out = adapter.encode(pixels(adapter, batch=1))
    assert out.attentions[0].shape[-1] == 3 + 16 * 16
    assert load_adapter("dinov2", tmp_path / "d", image_size=518).info.grid_h == 37


# ---- MAE: no masking, patches in image order ---------------------------------------------------------
def test_mae_tokens_equal_an_unmasked_unshuffled_reference(adapters, tiny):
    adapter = adapters("mae")
    x = pixels(adapter, seed=4)
    out = adapter.encode(x, hidden_states=True)
    model = ViTMAEModel.from_pretrained(tiny("mae")).eval()  # config still says mask_ratio 0.75
    assert model.config.mask_ratio == 0.75
    embeddings = model.embeddings
    with torch.no_grad():
        positions = embeddings.position_embeddings
        patches = embeddings.patch_embeddings(x) + positions[:, 1:]
        cls_token = (embeddings.cls_token + positions[:, :1]).expand(BATCH, -1, -1)
        states = torch.cat([cls_token, patches], dim=1)
        torch.testing.assert_close(out.hidden_states[0], states, **TOL)
        for layer in model.layers:
            states = layer(states)
        final = model.layernorm(states)
    torch.testing.assert_close(out.hidden_states[-1], states, **TOL)
    torch.testing.assert_close(out.cls, final[:, 0], **TOL)
    torch.testing.assert_close(out.mean, final[:, 1:].mean(dim=1), **TOL)
    # the model left to itself shuffles (and masks): the adapter's noise is what keeps the order
    torch.manual_seed(0)
    with torch.no_grad():
        shuffled = model(x)
    assert shuffled.last_hidden_state.shape[1] == 1 + 16
    assert not torch.equal(shuffled.ids_restore[0], torch.arange(64))


def test_mae_patch_token_k_is_patch_k(adapters):
    """Changing one patch of the image changes exactly one patch token of the embedding output."""
    adapter = adapters("mae")
    x = pixels(adapter, seed=5)
    patch, grid = adapter.info.patch_size, adapter.info.grid_w
    row, column = 2, 5
    changed = x.clone()
    changed[:, :, row * patch:(row + 1) * patch, column * patch:(column + 1) * patch] += 1.0
    before = adapter.encode(x, attentions=False, hidden_states=True).hidden_states[0]
    after = adapter.encode(changed, attentions=False, hidden_states=True).hidden_states[0]
    moved = (after - before).abs().amax(dim=(0, 2))
    assert torch.nonzero(moved > 1e-6).flatten().tolist() == [1 + row * grid + column]


# ---- SigLIP: the MAP head's probe attention ----------------------------------------------------------
def test_siglip_map_probe_reproduces_the_pooled_output(adapters):
    adapter = adapters("siglip")
    out = adapter.encode(pixels(adapter, seed=6), hidden_states=True)
    head = adapter.model.head
    with torch.no_grad():
        tokens = adapter.model.post_layernorm(out.hidden_states[-1])  # what the head attends over
    heads, dim = adapter.info.num_heads, adapter.info.hidden_size
    with torch.no_grad():
        values = torch.nn.functional.linear(tokens, head.attention.in_proj_weight[2 * dim:],
                                            head.attention.in_proj_bias[2 * dim:])
        values = values.view(BATCH, -1, heads, dim // heads)  # (B, P, H, d)
        mixed = torch.einsum("bhp,bphd->bhd", out.map_probe, values).reshape(BATCH, dim)
        attended = head.attention.out_proj(mixed)
        pooled = attended + head.mlp(head.layernorm(attended))
    torch.testing.assert_close(pooled, out.cls, **TOL)
    assert out.map_probe.shape == (BATCH, heads, adapter.info.grid_h * adapter.info.grid_w)
    # and the probe is not trivially uniform, so the check above has something to get wrong
    assert out.map_probe.std() > 0


# ---- ResNet -----------------------------------------------------------------------------------------------
def test_resnet_pools_the_last_feature_map(adapters, tiny):
    adapter = adapters("resnet")
    x = pixels(adapter, seed=7)
    out = adapter.encode(x, hidden_states=True)
    with torch.no_grad():
        features = adapter.model.timm_model.forward_features(x)
    assert features.shape[-2:] == (adapter.info.grid_h, adapter.info.grid_w)
    torch.testing.assert_close(out.cls, features.mean(dim=(2, 3)), **TOL)
    assert torch.equal(out.cls, out.mean)
    assert [state.shape[1] for state in out.hidden_states] == [256, 64, 16, 4]  # strides 4, 8, 16, 32
    assert adapter.target_layers()[0] is adapter.model.timm_model.layer4[-1]
    # the folder is laid out like a timm hub snapshot: timm's own parameter names, with a classifier
    names = load_file(tiny("resnet") / "model.safetensors").keys()
    assert "conv1.weight" in names and "fc.weight" in names
    with pytest.raises(ValueError, match="multiple of the total stride"):
        load_adapter("resnet", tiny("resnet"), image_size=80)


# ---- attention checks ---------------------------------------------------------------------------------
def test_check_attentions_accepts_full_and_refuses_partial_results():
    layer = torch.zeros(1, 2, 5, 5)
    assert len(check_attentions((layer, layer, layer), 3, "x")) == 3
    with pytest.raises(RuntimeError, match="expected 3 attention tensors"):
        check_attentions((layer, None, layer), 3, "x")
    with pytest.raises(RuntimeError, match="expected 3"):
        check_attentions(None, 3, "x")
    with pytest.raises(RuntimeError, match="expected 3"):
        check_attentions((layer, layer), 3, "x")


@pytest.mark.parametrize("family", VITS)
def test_sdpa_models_are_refused_when_attention_is_wanted(family, adapters, tiny):
    adapter = adapters(family)
    cls = adapter_class(family)
    model = cls.model_class.from_pretrained(tiny(family), attn_implementation="sdpa",
                                            **({"mask_ratio": 0.0} if family == "mae" else {}))
    sdpa = cls(model, adapter.info, adapter.mean.flatten().tolist(), adapter.std.flatten().tolist())
    x = pixels(adapter)
    with pytest.raises(RuntimeError, match="expected 3 attention tensors"):
        sdpa.encode(x, attentions=True)
    torch.testing.assert_close(sdpa.encode(x, attentions=False).cls, adapter.encode(x).cls, **TOL)


@pytest.mark.parametrize("family", VITS)
def test_a_layer_without_attention_weights_is_refused(family, tiny):
    adapter = load_adapter(family, tiny(family))
    layers = [module for module in adapter.model.modules()
              if type(module).__name__.endswith("Attention") and type(module).__module__.startswith("transformers")]
    assert len(layers) == adapter.info.num_layers
    # prepended, so the output-recording hooks of transformers see the altered output
    handle = layers[1].register_forward_hook(lambda _module, _args, output: (output[0], None), prepend=True)
    try:
        with pytest.raises(RuntimeError, match="expected 3 attention tensors"):
            adapter.encode(pixels(adapter))
    finally:
        handle.remove()
    assert len(adapter.encode(pixels(adapter)).attentions) == 3


# ---- loading safety -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family, fragment", [("dinov2", "encoder.layer.1."), ("clip", "vision_model.encoder."),
                                              ("resnet", "layer4.0.conv2")])
def test_a_checkpoint_missing_weights_is_refused(family, fragment, tiny, tmp_path):
    folder = tmp_path / family
    shutil.copytree(tiny(family), folder)
    weights = load_file(folder / "model.safetensors")
    dropped = next(name for name in weights if fragment in name)
    del weights[dropped]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="not a complete"):
        load_adapter(family, folder)


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_adapter("dinov2", tmp_path / "nowhere")
