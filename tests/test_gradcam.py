"""Grad-CAM wiring on the tiny ResNet: encoderlens's maps are pytorch-grad-cam's, at the feature grid."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from transformers import TimmWrapperForImageClassification

from encoderlens.attention.gradcam import classifier_logits, gradcam_maps
from encoderlens.models.registry import build_tiny, load_adapter

SIZE = 128  # a 4x4 last feature map


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_resnet")
    build_tiny("resnet", folder, image_size=SIZE)
    return folder


@pytest.fixture(scope="module")
def adapter(folder):
    return load_adapter("resnet", folder)


@pytest.fixture(scope="module")
def classifier(folder):
    """The checkpoint loaded independently, with its classifier: timm's own model, logits out."""
    return TimmWrapperForImageClassification.from_pretrained(folder).eval().timm_model


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def direct_gradcam(classifier, pixels, targets):
    """pytorch-grad-cam called as its README does: model, last bottleneck block, targets."""
    return GradCAM(model=classifier, target_layers=[classifier.layer4[-1]])(input_tensor=pixels,
                                                                            targets=targets)


def test_logits_are_the_checkpoint_classifier(adapter, classifier, pixels):
    with torch.no_grad():
        ours = classifier_logits(adapter)(pixels)
        want = classifier(pixels)
    assert ours.shape == (3, 10)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-5)


def test_default_target_matches_pytorch_grad_cam(adapter, classifier, pixels):
    maps = gradcam_maps(adapter, pixels)
    assert maps.shape == (3, SIZE // 32, SIZE // 32) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-6)  # not degenerate
    assert maps.min() == 0.0
    direct = direct_gradcam(classifier, pixels, targets=None)  # the model's top class
    assert direct.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(scale_cam_image(scale_cam_image(maps, (SIZE, SIZE))), direct, atol=1e-5)


def test_explicit_target_class_matches_and_matters(adapter, classifier, pixels):
    with torch.no_grad():
        top = classifier(pixels).argmax(dim=1)
    other = 7
    assert (top != other).all()
    maps = gradcam_maps(adapter, pixels, target_class=other)
    direct = direct_gradcam(classifier, pixels, [ClassifierOutputTarget(other)] * 3)
    np.testing.assert_allclose(scale_cam_image(scale_cam_image(maps, (SIZE, SIZE))), direct, atol=1e-5)
    assert np.abs(maps - gradcam_maps(adapter, pixels)).max() > 0.1
    # one class per image
    per_image = gradcam_maps(adapter, pixels, target_class=[other, int(top[1]), other])
    np.testing.assert_allclose(per_image[[0, 2]], maps[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(per_image[1], gradcam_maps(adapter, pixels)[1], atol=1e-6)
    with pytest.raises(ValueError, match="target classes"):
        gradcam_maps(adapter, pixels, target_class=[1, 2])


def test_runs_inside_no_grad_and_leaves_no_hooks_or_gradients(adapter, pixels):
    logits = classifier_logits(adapter)
    with torch.no_grad():
        maps = gradcam_maps(adapter, pixels, logits_model=logits)
    np.testing.assert_allclose(maps, gradcam_maps(adapter, pixels), atol=1e-6)
    layer = adapter.target_layers()[0]
    assert not layer._forward_hooks
    assert all(p.grad is None for p in adapter.model.parameters())
    # the adapter's own forward is untouched: pooled features, no classifier
    assert adapter.encode(pixels).cls.shape == (3, adapter.info.hidden_size)
