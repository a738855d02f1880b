"""The open families: `vit` (any transformers ViT with output_attentions) and `timm` (timm vision
transformers), on tiny random checkpoints written the way the hub holds them (save_pretrained; timm's
own save_for_hf) and loaded through the real loading path."""

import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from timm.utils import AttentionExtract
from transformers import BeitModel, DeiTModel, Dinov2Model, Dinov2WithRegistersModel, ViTModel

from encoderlens.attention.methods import methods_for
from encoderlens.extract.run import ExtractionSettings, extract
from encoderlens.finetune.lora import save_lora_adapter, wrap_with_lora
from encoderlens.models.registry import adapter_class, build_tiny, load_adapter
from encoderlens.models.tuned import apply_tuned_weights

TOL = {"rtol": 1e-4, "atol": 1e-5}
# transformers model_type -> (bare class, prefix tokens)
HF_ARCHITECTURES = {"vit": (ViTModel, 1), "deit": (DeiTModel, 2), "beit": (BeitModel, 1),
                    "dinov2": (Dinov2Model, 1)}
# timm architecture -> prefix tokens (CLS; + distillation token; + 4 registers)
TIMM_ARCHITECTURES = {"vit_base_patch16_224": 1, "deit_small_distilled_patch16_224": 2,
                      "vit_small_patch14_reg4_dinov2": 5, "eva02_small_patch14_224": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(family, architecture) -> folder of its tiny checkpoint, built once for the module."""
    root = tmp_path_factory.mktemp("families")
    folders = {}

    def folder(family, architecture):
        if (family, architecture) not in folders:
            path = root / f"{family}-{architecture}"
            adapter_class(family).build_tiny(path, seed=0, architecture=architecture)
            folders[family, architecture] = path
        return folders[family, architecture]

    return folder


def pixels(adapter, seed=0, batch=2):
    size = adapter.info.image_size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- vit: transformers checkpoints ----------------------------------------------------------------
@pytest.mark.parametrize("architecture", HF_ARCHITECTURES)
def test_vit_family_equals_the_bare_transformers_model(architecture, tiny):
    folder = tiny("vit", architecture)
    assert json.loads((folder / "config.json").read_text())["model_type"] == architecture
    adapter = load_adapter("vit", folder)
    model_class, n_prefix = HF_ARCHITECTURES[architecture]
    assert type(adapter.model) is model_class and adapter.info.n_prefix_tokens == n_prefix
    x = pixels(adapter)
    out = adapter.encode(x, hidden_states=True)
    bare = model_class.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        reference = bare(x, output_attentions=True)
    assert len(out.attentions) == len(reference.attentions) == 3
    for mine, theirs in zip(out.attentions, reference.attentions):
        torch.testing.assert_close(mine, theirs, **TOL)
        torch.testing.assert_close(mine.sum(-1), torch.ones(mine.shape[:-1]), atol=1e-5, rtol=0)
    tokens = reference.last_hidden_state
    assert tokens.shape[1] == n_prefix + adapter.info.grid_h * adapter.info.grid_w
    torch.testing.assert_close(out.mean, tokens[:, n_prefix:].mean(1), **TOL)
    # pooling as declared: BEiT's fine-tuned layout pools the normed mean of the patches, the rest the CLS
    if architecture == "beit":
        assert adapter.info.extra["pooling"] == "mean"
        torch.testing.assert_close(out.cls, bare.pooler.layernorm(tokens[:, 1:].mean(1)), **TOL)
    else:
        assert adapter.info.extra["pooling"] == "cls"
        torch.testing.assert_close(out.cls, tokens[:, 0], **TOL)
    torch.testing.assert_close(out.cls_raw, out.hidden_states[-1][:, 0], **TOL)


def test_vit_family_reads_registers_from_the_config(tmp_path):
    """A dinov2-with-registers checkpoint (the dinov2 family's tiny build: 2 registers) loads as `vit`
    with CLS + 2 registers; a plain dinov2 one with CLS only."""
    build_tiny("dinov2", tmp_path / "registers", seed=0)
    adapter = load_adapter("vit", tmp_path / "registers")
    assert type(adapter.model) is Dinov2WithRegistersModel
    assert adapter.info.extra["prefix_tokens"] == ["cls", "register", "register"]
    out = adapter.encode(pixels(adapter))
    assert out.attentions[0].shape[-1] == 3 + adapter.info.grid_h * adapter.info.grid_w


def test_vit_family_refuses_a_model_type_it_does_not_know(tmp_path):
    build_tiny("clip", tmp_path / "clip", seed=0)
    with pytest.raises(ValueError, match=r"model_type 'clip'.*\['beit', 'deit', 'dinov2'.*README"):
        load_adapter("vit", tmp_path / "clip")


def test_vit_family_checks_the_declared_prefix_against_the_tokens(tiny):
    adapter = load_adapter("vit", tiny("vit", "deit"))
    adapter.info.n_prefix_tokens = 1  # as if the distillation token had been forgotten
    with pytest.raises(RuntimeError, match=r"returned 66 tokens.*'distillation'.*make 65"):
        adapter.encode(pixels(adapter))


# ---- timm -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", TIMM_ARCHITECTURES)
def test_timm_capture_leaves_the_numerics_alone_and_equals_timms_own_attention(architecture, tiny):
    adapter = load_adapter("timm", tiny("timm", architecture))
    timm_model = adapter.model.timm_model
    assert adapter.info.n_prefix_tokens == timm_model.num_prefix_tokens == TIMM_ARCHITECTURES[architecture]
    x = pixels(adapter, seed=1)
    captured = adapter.encode(x, attentions=True, hidden_states=True)
    plain = adapter.encode(x, attentions=False)
    with torch.no_grad():
        features = timm_model.forward_features(x)
        pooled = timm_model.forward_head(features, pre_logits=True)
    # the capture observes the fused attention calls and changes nothing: bit-identical outputs
    assert torch.equal(captured.cls, plain.cls) and torch.equal(captured.mean, plain.mean)
    assert torch.equal(captured.cls, pooled)
    assert torch.equal(captured.mean, features[:, adapter.info.n_prefix_tokens:].mean(1))
    torch.testing.assert_close(captured.cls_raw, captured.hidden_states[-1][:, 0], rtol=0, atol=0)
    assert len(captured.hidden_states) == adapter.info.num_layers + 1
    # EVA's qkv called as a module (so that LoRA can wrap it) equals timm's F.linear default
    separate = [m for m in timm_model.modules() if getattr(m, "qkv_bias_separate", False)]
    assert bool(separate) == architecture.startswith("eva")
    for module in separate:
        module.qkv_bias_separate = False
    with torch.no_grad():
        torch.testing.assert_close(timm_model.forward_features(x), features, rtol=1e-5, atol=1e-6)
    for module in separate:
        module.qkv_bias_separate = True
    # timm's own extraction (its non-fused path, softmax read at each attn_drop) as the reference
    for module in timm_model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    try:
        reference = list(AttentionExtract(timm_model, method="hook")(x).values())
    finally:
        for module in timm_model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = True
    assert len(reference) == len(captured.attentions) == adapter.info.num_layers
    tokens = adapter.info.n_prefix_tokens + adapter.info.grid_h * adapter.info.grid_w
    for mine, theirs in zip(captured.attentions, reference):
        assert mine.shape == (2, adapter.info.num_heads, tokens, tokens)
        torch.testing.assert_close(mine, theirs, **TOL)
        torch.testing.assert_close(mine.sum(-1), torch.ones(mine.shape[:-1]), atol=1e-5, rtol=0)
    assert captured.attentions[0].std() > 0  # not uniform: the comparison had something to get wrong


def test_timm_snapshot_is_timms_own_and_another_size_resamples_positions(tiny):
    folder = tiny("timm", "vit_small_patch14_reg4_dinov2")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "vit_small_patch14_reg4_dinov2" and config["model_args"]["embed_dim"] == 32
    adapter = load_adapter("timm", folder)
    assert adapter.info.extra["prefix_tokens"] == ["cls"] + ["register"] * 4
    np.testing.assert_allclose(adapter.mean.flatten(), config["pretrained_cfg"]["mean"])
    smaller = load_adapter("timm", folder, image_size=32)
    assert (smaller.info.grid_h, smaller.info.grid_w) == (4, 4)
    assert smaller.encode(pixels(smaller)).attentions[0].shape[-1] == 5 + 16
    with pytest.raises(ValueError, match="multiple of patch_size"):
        load_adapter("timm", folder, image_size=36)


def test_timm_refuses_a_model_without_class_token(tmp_path):
    import timm

    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8,
                              embed_dim=16, depth=1, num_heads=2, class_token=False, global_pool="avg")
    timm.models.save_for_hf(model, str(tmp_path / "noclass"), safe_serialization=True)
    with pytest.raises(ValueError, match="no class token"):
        load_adapter("timm", tmp_path / "noclass")


# ---- both: LoRA, map methods, extraction ------------------------------------------------------------
@pytest.mark.parametrize("family, architecture", [("vit", "deit"), ("timm", "eva02_small_patch14_224")])
def test_lora_adapts_the_declared_projections_and_trains_a_step(family, architecture, tiny, tmp_path):
    adapter = load_adapter(family, tiny(family, architecture))
    x = pixels(adapter)
    before = adapter.encode(x, attentions=False).cls
    wrap_with_lora(adapter)
    lora = {name: p for name, p in adapter.model.named_parameters() if p.requires_grad}
    assert lora and all(".lora_" in name for name in lora)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in lora} == set(adapter.lora_target_modules)
    assert len(lora) == 2 * len(adapter.lora_target_modules) * adapter.info.num_layers
    torch.testing.assert_close(adapter.encode(x, attentions=False).cls, before, **TOL)  # B starts at zero
    head = torch.nn.Linear(adapter.info.hidden_size, 3)
    optimiser = torch.optim.SGD(list(lora.values()) + list(head.parameters()), lr=0.5)
    loss = torch.nn.functional.cross_entropy(head(adapter.pooled(x)), torch.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None for name, p in lora.items() if "lora_A" in name)
    optimiser.step()
    optimiser.zero_grad()
    # the trained LoRA weights reach the forward pass (EVA's qkv is called as a module, not bypassed)
    adapter.model.eval()  # peft's new LoRA dropout modules start in training mode
    trained = adapter.encode(x, attentions=True)
    assert not torch.allclose(trained.cls, before, atol=1e-6)
    # and come back, merged, where extraction loads a LoRA variant (models.tuned)
    save_lora_adapter(adapter.model, tmp_path / "variant" / "adapter")
    fresh = load_adapter(family, tiny(family, architecture))
    fresh.model, applied = apply_tuned_weights(fresh.model, tmp_path / "variant")
    merged = fresh.encode(x, attentions=True)
    assert applied == "lora"
    torch.testing.assert_close(merged.cls, trained.cls, **TOL)
    torch.testing.assert_close(merged.attentions[-1], trained.attentions[-1], **TOL)


def test_map_methods_and_blocks_of_the_new_families(tiny):
    assert [m.name for m in methods_for("vit")] == [m.name for m in methods_for("timm")] == ["cls", "rollout"]
    timm_adapter = load_adapter("timm", tiny("timm", "vit_base_patch16_224"))
    assert timm_adapter.blocks() == list(timm_adapter.model.timm_model.blocks)
    assert timm_adapter.after_blocks() == [timm_adapter.model.timm_model.norm, timm_adapter.model.timm_model.fc_norm]
    vit_adapter = load_adapter("vit", tiny("vit", "beit"))
    assert vit_adapter.blocks() == list(vit_adapter.model.layers)
    assert vit_adapter.after_blocks() == [vit_adapter.model.layernorm, vit_adapter.model.pooler]


def full_rollout(attentions):
    """Rollout as the full matrix product, rows renormalised: every row sums to 1."""
    result = None
    for attention in attentions:
        fused = attention.double().mean(1) + torch.eye(attention.shape[-1], dtype=torch.float64)
        fused = fused / fused.sum(-1, keepdim=True)
        result = fused if result is None else fused @ result
    return result


@pytest.mark.parametrize("family, architecture", [("vit", "deit"), ("timm", "vit_small_patch14_reg4_dinov2")])
def test_extraction_drops_the_prefix_tokens(family, architecture, tiny, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        path = tmp_path / f"img{index}.png"
        Image.fromarray(rng.integers(0, 256, size=(50, 60 + index, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    adapter = load_adapter(family, tiny(family, architecture))
    info = adapter.info
    extract(["a", "b", "c"], paths, adapter, tmp_path / "embeddings.h5", tmp_path / "attention.h5",
            ExtractionSettings(batch_size=2), {"model": f"tiny_{family}"})
    direct = adapter.encode(torch.stack([adapter.preprocess(Image.open(p)) for p in paths]))
    with h5py.File(tmp_path / "embeddings.h5") as embeddings, h5py.File(tmp_path / "attention.h5") as attention:
        assert embeddings.attrs["n_prefix_tokens"] == info.n_prefix_tokens > 1
        np.testing.assert_allclose(embeddings["cls"][()], direct.cls.numpy(), rtol=1e-4, atol=1e-5)
        assert attention["cls"].shape == (3, info.num_layers, info.num_heads, info.grid_h, info.grid_w)
        want = torch.stack([a[:, :, 0, info.n_prefix_tokens:] for a in direct.attentions], 1)
        np.testing.assert_allclose(attention["cls"][()].reshape(want.shape), want.numpy(), atol=2e-3)
        rollout = full_rollout(direct.attentions)
        torch.testing.assert_close(rollout.sum(-1), torch.ones(rollout.shape[:2], dtype=torch.float64))
        assert attention["rollout"].shape == (3, info.grid_h, info.grid_w)
        np.testing.assert_allclose(attention["rollout"][()],
                                   rollout[:, 0, info.n_prefix_tokens:].reshape(3, info.grid_h, info.grid_w),
                                   rtol=1e-4, atol=1e-6)


# ---- real architectures, random weights (`-m realshape`) ------------------------------------------
# facebook/dino-vits16: ViTModel, model_type vit, ViT-S/16 at 224 (hidden 384, 12 layers, 6 heads, MLP 1536),
# the dimensions of DINO's ViT-S/16 (public code loads it with ViTModel + ViTImageProcessor)
DINO_VITS16 = {"architectures": ["ViTModel"], "model_type": "vit", "hidden_size": 384, "num_hidden_layers": 12,
               "num_attention_heads": 6, "intermediate_size": 1536, "image_size": 224, "patch_size": 16,
               "qkv_bias": True, "hidden_act": "gelu", "layer_norm_eps": 1e-6}


@pytest.mark.realshape
def test_realshape_dino_vits16_as_vit(tmp_path):
    from transformers import ViTConfig
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = ViTModel(ViTConfig(**{k: v for k, v in DINO_VITS16.items() if k != "architectures"}))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    model.save_pretrained(tmp_path / "dino")  # with its pooler, as the hub repo: loading leaves it out
    (tmp_path / "dino" / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "ViTImageProcessor", "image_mean": [0.485, 0.456, 0.406],
         "image_std": [0.229, 0.224, 0.225], "size": {"height": 224, "width": 224}}))
    adapter = load_adapter("vit", tmp_path / "dino")
    info = adapter.info
    assert (info.grid_h, info.n_prefix_tokens, info.num_layers, info.num_heads, info.hidden_size) == (14, 1, 12, 6, 384)
    out = adapter.encode(pixels(adapter, batch=1))
    assert len(out.attentions) == 12 and out.attentions[-1].shape == (1, 6, 197, 197)
    torch.testing.assert_close(out.attentions[-1].sum(-1), torch.ones(1, 6, 197), atol=1e-5, rtol=0)


@pytest.mark.realshape
def test_realshape_eva02_small_as_timm(tmp_path):
    import timm

    model = timm.create_model("eva02_small_patch14_224.mim_in22k", pretrained=False)
    timm.models.save_for_hf(model, str(tmp_path / "eva"), safe_serialization=True)
    adapter = load_adapter("timm", tmp_path / "eva")
    info = adapter.info
    assert (info.image_size, info.grid_h, info.n_prefix_tokens, info.num_layers, info.num_heads,
            info.hidden_size) == (224, 16, 1, 12, 6, 384)
    np.testing.assert_allclose(adapter.mean.flatten(), [0.48145466, 0.4578275, 0.40821073])
    x = pixels(adapter, batch=1)
    out = adapter.encode(x)
    assert out.attentions[-1].shape == (1, 6, 257, 257)
    with torch.no_grad():
        assert torch.equal(out.cls, adapter.model.timm_model.forward_head(
            adapter.model.timm_model.forward_features(x), pre_logits=True))
    torch.testing.assert_close(out.attentions[-1].sum(-1), torch.ones(1, 6, 257), atol=1e-5, rtol=0)
