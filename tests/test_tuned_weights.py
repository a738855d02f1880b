"""Tuned weights applied to a loaded backbone for extraction: LoRA merged, partial tensors replaced."""

import pytest
import torch
from safetensors.torch import save_file

from encoderlens.finetune.lora import LoraSettings, save_lora_adapter, wrap_with_lora
from encoderlens.models.registry import build_tiny, load_adapter
from encoderlens.models.tuned import apply_tuned_weights


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny_clip"
    build_tiny("clip", folder, seed=0)
    return folder


def _pixels():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_a_lora_adapter_is_merged_and_gives_the_wrapped_models_outputs(tiny_clip, tmp_path):
    adapter = load_adapter("clip", tiny_clip)
    wrap_with_lora(adapter, LoraSettings(rank=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # a trained adapter: LoRA's B matrices start at zero, move them
        for name, parameter in adapter.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    expected = adapter.encode(_pixels())
    save_lora_adapter(adapter.model, tmp_path / "variant" / "adapter")

    fresh = load_adapter("clip", tiny_clip)
    frozen = fresh.encode(_pixels())
    fresh.model, applied = apply_tuned_weights(fresh.model, tmp_path / "variant")
    tuned = fresh.encode(_pixels())
    assert applied == "lora"
    assert type(fresh.model).__name__ == "CLIPVisionModel"  # merged back, no peft wrapper left
    assert torch.allclose(tuned.cls, expected.cls, atol=1e-5)
    assert not torch.allclose(tuned.cls, frozen.cls, atol=1e-3)
    for a, b in zip(tuned.attentions, expected.attentions):
        assert torch.allclose(a, b, atol=1e-5)


def test_partial_backbone_tensors_replace_exactly_those_weights(tiny_clip, tmp_path):
    adapter = load_adapter("clip", tiny_clip)
    own = adapter.model.state_dict()
    name = next(k for k in own if k.endswith("layers.1.mlp.fc1.weight"))
    replacement = torch.full_like(own[name], 0.25)
    (tmp_path / "full").mkdir()
    save_file({name: replacement}, str(tmp_path / "full" / "backbone.safetensors"))
    model, applied = apply_tuned_weights(adapter.model, tmp_path / "full")
    assert applied == "partial"
    after = model.state_dict()
    assert torch.equal(after[name], replacement)
    assert all(torch.equal(after[k], v) for k, v in own.items() if k != name)


def test_unknown_or_misshapen_tensors_are_refused(tiny_clip, tmp_path):
    adapter = load_adapter("clip", tiny_clip)
    (tmp_path / "bad").mkdir()
    save_file({"not.a.weight": torch.zeros(2)}, str(tmp_path / "bad" / "backbone.safetensors"))
    with pytest.raises(ValueError, match="does not have"):
        apply_tuned_weights(adapter.model, tmp_path / "bad")
    name = next(iter(adapter.model.state_dict()))
    save_file({name: torch.zeros(1, 2, 3)}, str(tmp_path / "bad" / "backbone.safetensors"))
    with pytest.raises(ValueError, match="shapes differ"):
        apply_tuned_weights(adapter.model, tmp_path / "bad")


def test_a_head_only_variant_leaves_the_backbone_alone(tiny_clip, tmp_path):
    adapter = load_adapter("clip", tiny_clip)
    (tmp_path / "linear").mkdir()
    save_file({"weight": torch.zeros(4, 32)}, str(tmp_path / "linear" / "head.safetensors"))
    model, applied = apply_tuned_weights(adapter.model, tmp_path / "linear")
    assert applied == "none" and model is adapter.model
    with pytest.raises(FileNotFoundError):
        apply_tuned_weights(adapter.model, tmp_path / "missing")
