"""Grad-CAM for CNN adapters (the ResNet family) through pytorch-grad-cam, on the last feature map.

Logits: the adapter loads a timm checkpoint through transformers' TimmWrapperModel, which builds the
timm model with num_classes=0 (its classifier is an Identity) and drops the checkpoint's classifier
weights as unexpected keys, so the adapter's forward ends at the pooled features. Grad-CAM needs class
scores: `ClassifierLogits` runs the adapter's own backbone (the very modules `target_layers()` returns)
and then the checkpoint's classifier, read from the same folder's model.safetensors (the module named
by pretrained_cfg["classifier"], "fc" for ResNets). That is what timm's forward_head computes with its
classifier, and what TimmWrapperForImageClassification returns as logits, without loading the
backbone a second time.

Maps: GradCAM's channel weights, weighted sum, ReLU and per-image min-max scaling to [0, 1], exactly as
the package computes them, but kept at the target layer's resolution (gh, gw) = image_size / 32
instead of resized to the input. The package's own output is these maps resized by its
`scale_cam_image` and min-max scaled once more: GradCAM(...)(x, targets) equals
scale_cam_image(scale_cam_image(gradcam_maps(...), (S, S))). Stored as /gradcam (N, gh, gw) and
upsampled for scoring like every other method. A map whose ReLU removed everything is all zero, and
the scores flag it as unscorable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors import safe_open

from encoderlens.models.base import FamilyAdapter


class ClassifierLogits(torch.nn.Module):
    """pixels -> logits: the adapter's timm backbone, global pool, then the checkpoint's classifier."""

    def __init__(self, timm_model: torch.nn.Module, classifier: torch.nn.Linear):
        super().__init__()
        self.backbone = timm_model
        self.classifier = classifier

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(pixels)
        return self.classifier(self.backbone.forward_head(features, pre_logits=True))


def classifier_logits(adapter: FamilyAdapter) -> ClassifierLogits:
    """The adapter's model with its checkpoint's classifier on top (see the module doc)."""
    model = adapter.model
    folder = Path(model.name_or_path)
    pretrained_cfg = getattr(model.config, "pretrained_cfg", None) or {}
    name = pretrained_cfg.get("classifier") or "fc"
    path = folder / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: Grad-CAM reads the classifier weights from it")
    with safe_open(str(path), framework="pt") as weights:
        if f"{name}.weight" not in weights.keys():
            raise KeyError(f"{path} has no classifier weights {name}.weight: no logits for Grad-CAM")
        weight, bias = weights.get_tensor(f"{name}.weight"), weights.get_tensor(f"{name}.bias")
    classifier = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    return ClassifierLogits(model.timm_model, classifier).to(adapter.device).eval()


class _GridGradCAM(GradCAM):
    """GradCAM that keeps the target layer's resolution: no target size, so no resize."""

    def get_target_width_height(self, input_tensor):
        return None


def grid_gradcam(model: torch.nn.Module, target_layers: list, pixels: torch.Tensor, targets,
                 grid: tuple[int, int], reshape_transform=None) -> np.ndarray:
    """pytorch-grad-cam's GradCAM maps (B, gh, gw) float32 at the target layer's resolution, with
    gradients on even inside no_grad; the hooks are released and the parameter gradients cleared."""
    cam = _GridGradCAM(model=model, target_layers=target_layers, reshape_transform=reshape_transform)
    try:
        with torch.enable_grad():
            maps = cam(input_tensor=pixels, targets=targets)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    expected = (len(pixels), *grid)
    if maps.shape != expected:
        raise RuntimeError(f"Grad-CAM maps have shape {maps.shape}, expected {expected}")
    return maps.astype(np.float32)


def gradcam_maps(adapter: FamilyAdapter, pixels: torch.Tensor,
                 target_class: int | Sequence[int] | None = None,
                 logits_model: ClassifierLogits | None = None) -> np.ndarray:
    """Grad-CAM maps (B, gh, gw) float32 in [0, 1] of preprocessed `pixels` (B, 3, S, S).

    target_class: None for each image's own top class, one class for all images, or one per image.
    Target layer: `adapter.target_layers()` (the last bottleneck block for ResNets). Pass
    `logits_model` (from `classifier_logits`) to reuse it across batches. Gradients are on even inside
    a torch.no_grad() block; the model's parameter gradients are cleared afterwards.
    """
    logits_model = logits_model or classifier_logits(adapter)
    pixels = pixels.detach().to(adapter.device, torch.float32).clone().requires_grad_(True)
    if target_class is None:
        targets = None
    else:
        classes = [target_class] * len(pixels) if np.isscalar(target_class) else list(target_class)
        if len(classes) != len(pixels):
            raise ValueError(f"{len(classes)} target classes for {len(pixels)} images")
        targets = [ClassifierOutputTarget(int(c)) for c in classes]
    return grid_gradcam(logits_model, adapter.target_layers(), pixels, targets,
                        (adapter.info.grid_h, adapter.info.grid_w))
