"""A fine-tuned variant with a classification head: the gradient maps and the faithfulness curves
explain the head's logit of each image's predicted class (on the pooled embedding the head was
trained on), and say so (attention.h5 `map_target`, faithfulness.parquet `target`)."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from encoderlens.attention.chefer import chefer_maps, relevance_reference
from encoderlens.attention.gradcam_vit import vit_gradcam_maps
from encoderlens.attention.integrated_gradients import ig_attributions, ig_maps
from encoderlens.attention.targets import ExplainedScalar
from encoderlens.extract.job import extract_manifest
from encoderlens.faithfulness.job import faithfulness_file
from encoderlens.models.registry import build_tiny, load_adapter
from encoderlens.models.tuned import HEAD, load_head

CLASSES = ["romanesque", "gothic", "baroque"]
SETTINGS = {"batch_size": 2, "attention_layers": "all", "embedding_layers": [], "num_workers": 0,
            "device": "cpu", "precision": "fp32", "map_methods": ["chefer", "gradcam", "ig"],
            "ig": {"steps": 4, "baseline": "mean"}}
FAITHFULNESS = {"heads": "mean", "layers": "all", "orders": ["map", "random"], "steps": 4,
                "perturbation": "mean", "blur_sigma": 4.0, "seed": 0, "batch_size": 64, "max_images": None,
                "methods": ["chefer"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny DINOv2, a random linear head saved as finetune saves it, and two extractions of three
    images: frozen (no head) and `linear` (the head's folder)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("heads")
    build_tiny("dinov2", root / "model", seed=0)
    adapter = load_adapter("dinov2", root / "model")
    head = torch.nn.Linear(adapter.info.hidden_size, len(CLASSES))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(5)))
    tuned = root / "finetune" / "linear"
    tuned.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, tuned / HEAD,
              metadata={"classes": json.dumps(CLASSES), "input": "pooled embedding (cls)"})
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        paths.append(str(root / f"{index}.png"))
        Image.fromarray(rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)).save(paths[-1])
    manifest = pd.DataFrame({"image_id": ["a", "b", "c"], "path": paths, "split": "train"})
    manifest.to_parquet(root / "manifest.parquet")
    identity = {"family": "dinov2", "model": "tiny_dinov2", "model_id": None, "revision": None}
    for variant, folder in (("frozen", None), ("linear", tuned)):
        (root / variant).mkdir()
        extract_manifest(root / "manifest.parquet", root / "model", identity, SETTINGS,
                         root / variant / "embeddings.h5", root / variant / "attention.h5",
                         variant=variant, tuned_folder=folder)
    pixels = torch.stack([adapter.preprocess(Image.open(p)) for p in paths])
    yield {"root": root, "adapter": adapter, "head": head, "tuned": tuned, "pixels": pixels, "manifest": manifest}
    torch.set_num_threads(threads)


def _stored(run, variant, name):
    with h5py.File(run["root"] / variant / "attention.h5", "r") as store:
        return store[name][()], store.attrs["map_target"]


def test_the_head_is_read_back_as_saved(run):
    head = load_head(run["tuned"])
    assert head.classes == CLASSES
    torch.testing.assert_close(head.weight, run["head"].weight)
    assert load_head(None) is None and load_head(run["root"]) is None  # no head.safetensors there
    assert ExplainedScalar.for_variant(run["tuned"]).name == "class_score"
    assert ExplainedScalar.for_variant(None).name == "self_similarity"
    broken = run["root"] / "broken"
    broken.mkdir()
    save_file({"weight": torch.zeros(3, 8)}, broken / HEAD)  # no bias: not the linear head finetune saves
    with pytest.raises(ValueError, match=r"broken/head.safetensors: expected a linear head"):
        load_head(broken)


def test_chefer_with_a_head_explains_the_predicted_class(run):
    adapter, head, pixels = run["adapter"], run["head"], run["pixels"]
    info = adapter.info
    stored, target = _stored(run, "linear", "chefer")
    frozen, frozen_target = _stored(run, "frozen", "chefer")
    assert (target, frozen_target) == ("class_score", "self_similarity")
    for image in range(3):  # by hand: the head's top logit, attention gradients by retain_grad
        output = adapter.encode_with_grad(pixels[image:image + 1], attentions=True)
        for attention in output.attentions:
            attention.retain_grad()
        logits = head(output.cls)[0]
        logits[logits.detach().argmax()].backward()
        relevance = relevance_reference([a[0].detach() for a in output.attentions],
                                        [a.grad[0] for a in output.attentions])
        want = relevance[0, info.n_prefix_tokens:].reshape(info.grid_h, info.grid_w).numpy()
        np.testing.assert_allclose(stored[image], want, rtol=1e-4, atol=1e-6 * want.max())
        assert not np.allclose(frozen[image], want, rtol=1e-2)  # the self-similarity's map differs
    adapter.model.zero_grad(set_to_none=True)
    np.testing.assert_allclose(frozen, chefer_maps(adapter, pixels), rtol=1e-4, atol=1e-8)


def test_ig_and_gradcam_with_a_head_explain_the_predicted_class(run):
    adapter, head, pixels = run["adapter"], run["head"], run["pixels"]
    target = ExplainedScalar(head)
    stored, _ = _stored(run, "linear", "ig")
    np.testing.assert_allclose(stored, ig_maps(adapter, pixels, steps=4, target=target), rtol=1e-4)
    assert not np.allclose(stored, _stored(run, "frozen", "ig")[0], rtol=1e-2)
    # completeness: the attributions sum to the predicted class's logit at the image minus at the baseline
    attributions, baselines = ig_attributions(adapter, pixels, steps=64, target=target)
    with torch.no_grad():
        logits, base = head(adapter.pooled(pixels)), head(adapter.pooled(baselines))
    top = logits.argmax(dim=1, keepdim=True)
    gap = (logits.gather(1, top) - base.gather(1, top)).squeeze(1)
    assert gap.abs().min() > 1e-3
    np.testing.assert_allclose(attributions.sum(dim=(1, 2, 3)).numpy(), gap.numpy(), rtol=5e-3)
    gradcam, _ = _stored(run, "linear", "gradcam")
    np.testing.assert_allclose(gradcam, vit_gradcam_maps(adapter, pixels, target), atol=1e-5)
    assert not np.allclose(gradcam, _stored(run, "frozen", "gradcam")[0], atol=1e-2)


def test_faithfulness_of_a_variant_with_a_head_records_its_logit(run):
    adapter, root = run["adapter"], run["root"]
    annotations = pd.DataFrame({"image_id": ["a", "c"]})
    common = dict(manifest=run["manifest"][["image_id", "path"]], annotations=annotations,
                  model_folder=root / "model", family="dinov2", model="tiny_dinov2", settings=FAITHFULNESS)
    table, curves = faithfulness_file(root / "linear" / "attention.h5", variant="linear",
                                      tuned_folder=run["tuned"], **common)
    assert set(table["target"]) == {"class_score"}
    with torch.no_grad():
        logits = run["head"](adapter.pooled(run["pixels"][[0, 2]]))
    start = curves[(curves["curve"] == "deletion") & (curves["step"] == 0)]
    for image_id, top in zip(["a", "c"], logits.max(dim=1).values.tolist()):
        np.testing.assert_allclose(start.loc[start["image_id"] == image_id, "value"], top, rtol=1e-5)
    # after deleting every cell: the same class's logit on the fully perturbed image
    with torch.no_grad():
        blank = run["head"](adapter.pooled(torch.zeros_like(run["pixels"][[0]])))[0, logits[0].argmax()]
    end = curves[(curves["curve"] == "deletion") & (curves["image_id"] == "a")]
    np.testing.assert_allclose(end.loc[end["step"] == end["step"].max(), "value"], float(blank), rtol=1e-5)
    frozen, frozen_curves = faithfulness_file(root / "frozen" / "attention.h5", variant="frozen", **common)
    assert set(frozen["target"]) == {"self_similarity"}
    np.testing.assert_allclose(frozen_curves.loc[(frozen_curves["curve"] == "deletion")
                                                 & (frozen_curves["step"] == 0), "value"], 1.0, rtol=1e-5)
