"""Fine-tuning: what each strategy trains, the held-out split, weights on disk, resume after a kill,
the ΔIoU table, the style probe, and the known answer on synthetic churches."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from encoderlens.data.manifest import write_manifest_outputs
from encoderlens.data.synthetic_churches import write_synthetic_churches
from encoderlens.data.wikichurches import read_wikichurches
from encoderlens.finetune.delta import DELTA_COLUMNS, delta_iou, retention_summary
from encoderlens.finetune.job import run_finetune
from encoderlens.finetune.lora import LoraSettings, load_lora_adapter, save_lora_adapter, wrap_with_lora
from encoderlens.finetune.strategies import count_parameters, prepare
from encoderlens.finetune.style_probe import cross_validated_probe, style_probe
from encoderlens.finetune.task import style_task
from encoderlens.finetune.training import warmup_cosine
from encoderlens.models.registry import FAMILIES, build_tiny, load_adapter
from encoderlens.models.tuned import apply_tuned_weights

CLASSES = {"Q46261": "Romanesque", "Q176483": "Gothic", "Q236122": "Renaissance", "Q840829": "Baroque"}


def settings(**overrides) -> dict:
    base = dict(classes=CLASSES, val_fraction=0.2, seed=0, epochs=3, batch_size=16, weight_decay=0.01,
                warmup_fraction=0.1, grad_clip=1.0, patience=5, head_lr=1e-3, lora_lr=1e-3,
                backbone_lr=1e-4, last_blocks=2, lora=dict(rank=8, alpha=32, dropout=0.1))
    return base | overrides


@pytest.fixture(scope="module")
def churches(tmp_path_factory):
    """A synthetic WikiChurches folder: 16 annotated images and a pool of 64, with its manifest."""
    root = tmp_path_factory.mktemp("churches")
    write_synthetic_churches(root / "dataset", n_images=80, seed=3, n_annotated=16)
    result = read_wikichurches(root / "dataset")
    write_manifest_outputs(result, root / "manifest.parquet", root / "annotations.parquet")
    return root


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for family in ("dinov2", "clip", "resnet"):
        build_tiny(family, root / family, seed=0)
    return root


# ---- what each strategy trains -------------------------------------------------------------------
def test_trainable_parameter_counts_per_strategy(tiny_models):
    hidden, layers, rank, classes = 32, 3, 8, 4  # TINY_DEFAULTS of the ViT families
    head = hidden * classes + classes

    linear = prepare(load_adapter("dinov2", tiny_models / "dinov2"), "linear", classes)
    assert count_parameters(linear.trainable_parameters()) == head
    assert not any(p.requires_grad for p in linear.adapter.model.parameters())

    lora = prepare(load_adapter("dinov2", tiny_models / "dinov2"), "lora", classes, lora=LoraSettings(rank=rank))
    # A (r x in) and B (out x r) on q_proj and v_proj of every layer
    assert count_parameters(lora.trainable_parameters()) == head + layers * 2 * rank * (hidden + hidden)
    trainable = [n for n, p in lora.adapter.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in trainable)

    adapter = load_adapter("dinov2", tiny_models / "dinov2")
    expected = head + sum(p.numel() for block in adapter.blocks()[-2:] for p in block.parameters())
    expected += sum(p.numel() for p in adapter.model.layernorm.parameters())
    full = prepare(adapter, "full", classes, last_blocks=2)
    assert count_parameters(full.trainable_parameters()) == expected
    frozen_names = [n for n, p in adapter.model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("encoder.layer.0.") for n in frozen_names)
    assert not any(n.startswith(("encoder.layer.1.", "encoder.layer.2.")) for n in frozen_names)
    assert all(key.startswith(("encoder.layer.1.", "encoder.layer.2.", "layernorm.")) for key in full.state_keys)


def test_lora_target_modules_exist_in_every_vit_family(tmp_path):
    for family, adapter_class in FAMILIES.items():
        if family == "resnet":
            assert adapter_class.lora_target_modules == ()
            continue
        build_tiny(family, tmp_path / family, seed=0)
        adapter = wrap_with_lora(load_adapter(family, tmp_path / family))
        wrapped = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in adapter.model.named_parameters()
                   if ".lora_A." in n}
        assert wrapped == set(adapter_class.lora_target_modules), family


def test_lora_does_not_apply_to_a_cnn_but_linear_and_full_do(tiny_models):
    with pytest.raises(ValueError, match="no attention projections"):
        prepare(load_adapter("resnet", tiny_models / "resnet"), "lora", 4)
    full = prepare(load_adapter("resnet", tiny_models / "resnet"), "full", 4, last_blocks=1)
    assert all(key.startswith("timm_model.layer4.0.") for key in full.state_keys)
    assert any(key.endswith("running_mean") for key in full.state_keys)  # BatchNorm statistics travel


def test_linear_leaves_the_backbone_bit_identical(churches, tiny_models, tmp_path):
    before = load_adapter("dinov2", tiny_models / "dinov2").model.state_dict()
    out = tmp_path / "linear"
    metrics = run_finetune(churches / "manifest.parquet", tiny_models / "dinov2", "dinov2", "linear",
                           settings(epochs=2), out)
    assert sorted(p.name for p in out.iterdir()) == ["head.safetensors", "history.csv", "metrics.json", "split.csv"]
    assert metrics["trainable_parameters"] == 32 * 4 + 4
    # the training run's own model: the job returns nothing but the files, so retrain in-process
    from encoderlens.finetune.job import image_loader
    from encoderlens.finetune.training import TrainingSettings, train

    adapter = load_adapter("dinov2", tiny_models / "dinov2")
    prepared = prepare(adapter, "linear", 4)
    load = image_loader(pd.read_parquet(churches / "manifest.parquet")["path"].tolist()[:32], adapter.preprocess)
    labels = np.arange(32) % 4
    head_before = prepared.head.weight.detach().clone()
    train(prepared, load, labels, load, labels, TrainingSettings(epochs=2, batch_size=8), tmp_path / "work")
    assert not torch.equal(prepared.head.weight, head_before)
    after = adapter.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- the task split ------------------------------------------------------------------------------
def test_heldout_images_never_train_or_validate(churches, tiny_models, tmp_path):
    manifest = pd.read_parquet(churches / "manifest.parquet")
    task = style_task(manifest, CLASSES, val_fraction=0.25, seed=1)
    annotated = set(manifest.loc[manifest["split"] == "annotated", "image_id"])
    assert set(task.loc[task["role"] == "heldout", "image_id"]) == annotated
    assert not annotated & set(task.loc[task["role"].isin(["train", "val"]), "image_id"])
    val = task[task["role"] == "val"]
    assert 0.15 < len(val) / task["role"].isin(["train", "val"]).sum() < 0.35
    assert set(val["class_name"]) == set(CLASSES.values())  # stratified: every class validates
    churches_by_role = task[task["role"].isin(["train", "val"])].groupby("church_id")["role"].nunique()
    assert (churches_by_role == 1).all()  # two photos of one church stay on one side

    # a pool photo of an annotated church would leak the held-out facade: it is excluded
    leaky = manifest.copy()
    first_annotated = leaky.index[leaky["split"] == "annotated"][0]
    pool_row = leaky.index[leaky["split"] == "pool"][0]
    leaky.loc[pool_row, "church_id"] = leaky.loc[first_annotated, "church_id"]
    leaky_task = style_task(leaky, CLASSES)
    assert leaky_task.set_index("image_id").loc[leaky.loc[pool_row, "image_id"], "role"] == "excluded"

    # and the images the training job actually decoded for train/val are the pool images only
    out = tmp_path / "lora"
    run_finetune(churches / "manifest.parquet", tiny_models / "dinov2", "dinov2", "lora", settings(epochs=1), out)
    split = pd.read_csv(out / "split.csv", keep_default_na=False)
    assert set(split.loc[split["role"] == "heldout", "image_id"]) == annotated
    assert not annotated & set(split.loc[split["role"].isin(["train", "val"]), "image_id"])
    assert style_task(manifest, CLASSES, 0.25, 1).equals(task)  # seeded


# ---- weights on disk -----------------------------------------------------------------------------
def test_tuned_weights_reload_for_extraction(churches, tiny_models, tmp_path):
    pixels = torch.randn(2, 3, 64, 64)
    for strategy in ("lora", "full"):
        out = tmp_path / strategy
        run_finetune(churches / "manifest.parquet", tiny_models / "clip", "clip", strategy, settings(epochs=1), out)
        head = load_file(out / "head.safetensors")
        assert set(head) == {"weight", "bias"} and head["weight"].shape == (4, 32)
        tuned, applied = apply_tuned_weights(load_adapter("clip", tiny_models / "clip").model, out)
        assert applied == {"lora": "lora", "full": "partial"}[strategy]
        frozen = load_adapter("clip", tiny_models / "clip")
        adapter = load_adapter("clip", tiny_models / "clip")
        adapter.model = tuned.eval()
        moved = adapter.encode(pixels).attentions[-1]
        assert not torch.allclose(moved, frozen.encode(pixels).attentions[-1])
        if strategy == "lora":
            adapter_only = load_file(out / "adapter" / "adapter_model.safetensors")
            assert adapter_only and all("lora_" in key for key in adapter_only)
        else:
            saved = load_file(out / "backbone.safetensors")
            assert saved and all(k.startswith(("encoder.layers.1.", "encoder.layers.2.", "post_layernorm."))
                                 for k in saved)


def test_lora_adapter_roundtrip(tiny_models, tmp_path):
    adapter = wrap_with_lora(load_adapter("dinov2", tiny_models / "dinov2"), LoraSettings(dropout=0.0))
    with torch.no_grad():
        for name, parameter in adapter.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # B starts at zero; make the adapter do something
    pixels = torch.randn(2, 3, 64, 64)
    expected = adapter.model.eval()(pixels).last_hidden_state
    save_lora_adapter(adapter.model, tmp_path / "adapter")
    merged = load_lora_adapter(load_adapter("dinov2", tiny_models / "dinov2").model, tmp_path / "adapter")
    assert type(merged).__name__ == "Dinov2WithRegistersModel"
    torch.testing.assert_close(merged.eval()(pixels).last_hidden_state, expected, rtol=1e-4, atol=1e-5)


# ---- resume after a kill -------------------------------------------------------------------------
KILLABLE_TRAINING = """
import json, sys, time
from encoderlens.finetune.job import run_finetune

job = json.load(open(sys.argv[1]))
run_finetune(job["manifest"], job["model"], "dinov2", "lora", job["settings"], job["out"],
             on_epoch_end=lambda epoch: time.sleep(3))  # time to be killed after an epoch
"""


def test_a_killed_training_resumes_to_the_same_weights(churches, tiny_models, tmp_path):
    job_settings = settings(epochs=4, lora=dict(rank=8, alpha=32, dropout=0.3))  # dropout draws RNG
    reference = tmp_path / "reference"
    run_finetune(churches / "manifest.parquet", tiny_models / "dinov2", "dinov2", "lora", job_settings, reference)

    out = tmp_path / "killed" / "lora"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"manifest": str(churches / "manifest.parquet"), "model": str(tiny_models / "dinov2"),
                               "settings": job_settings, "out": str(out)}))
    process = subprocess.Popen([sys.executable, "-c", KILLABLE_TRAINING, str(job)])
    checkpoint = out.with_name("lora.work") / "checkpoint.pt"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, "the training ended before it could be killed"
        assert time.monotonic() < deadline
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["epoch"] >= 2:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    assert 2 <= torch.load(checkpoint, weights_only=False)["epoch"] < 4  # killed mid-training

    run_finetune(churches / "manifest.parquet", tiny_models / "dinov2", "dinov2", "lora", job_settings, out)
    for name in ("adapter/adapter_model.safetensors", "head.safetensors"):
        a, b = load_file(reference / name), load_file(out / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    history = pd.read_csv(out / "history.csv")
    pd.testing.assert_frame_equal(history, pd.read_csv(reference / "history.csv"))
    assert not checkpoint.parent.exists()  # checkpoints go once the variant is written


def test_checkpoints_from_other_settings_are_discarded(churches, tiny_models, tmp_path):
    out = tmp_path / "linear"
    work = tmp_path / "linear.work"
    work.mkdir()
    (work / "settings.json").write_text(json.dumps({"sha256": "other"}))
    torch.save({"epoch": 99}, work / "checkpoint.pt")
    metrics = run_finetune(churches / "manifest.parquet", tiny_models / "dinov2", "dinov2", "linear",
                           settings(epochs=1), out)
    assert metrics["epochs_run"] == 1


def test_warmup_then_cosine():
    factor = warmup_cosine(total_steps=100, warmup_fraction=0.1)
    assert [factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(99) == pytest.approx(0.5 * (1 + np.cos(np.pi * 89 / 90)))


# ---- ΔIoU ----------------------------------------------------------------------------------------
def _alignment(variant, ious, scorable=None):
    n = len(ious)
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "model": "m", "variant": variant,
                         "method": "cls", "layer": 2, "head": -1, "threshold": 30.0, "iou": ious,
                         "coverage": 0.5, "pointing_hit": 1.0,
                         "scorable": scorable if scorable is not None else [True] * n})


def test_delta_iou_pairs_images_and_drops_unscorable():
    frozen = _alignment("frozen", [0.2, 0.0, 0.4, np.nan], [True, True, True, False])
    tuned = _alignment("full", [0.3, 0.1, 0.2, 0.5])
    delta, dropped = delta_iou(frozen, tuned.iloc[::-1])
    assert list(delta.columns) == DELTA_COLUMNS and dropped == 1
    assert delta["image_id"].tolist() == ["i0", "i1", "i2"]
    np.testing.assert_allclose(delta["delta_iou"], [0.1, 0.1, -0.2])
    np.testing.assert_allclose(delta["retention"], [1.5, np.nan, 0.5])
    summary = retention_summary(delta)
    assert summary["n"].tolist() == [3]
    assert summary["retention"].iloc[0] == pytest.approx((0.6 / 3) / (0.6 / 3))
    with pytest.raises(ValueError, match="duplicate"):
        delta_iou(pd.concat([frozen, frozen]), tuned)


# ---- the pool a study needs ----------------------------------------------------------------------
@pytest.mark.parametrize("pool_kept, count", [(0, 0), (5, 5)])
def test_studies_stop_before_training_on_an_empty_or_tiny_pool(churches, tmp_path, pool_kept, count):
    """A WikiChurches folder whose image_meta.json lists only the annotated images (what the old
    reader made of the real files: no pool) stops fine-tuning before any model is read, and makes the
    style probe's rows not computable, each naming the manifest and the count."""
    root = tmp_path / "dataset"
    shutil.copytree(churches / "dataset", root)
    parts = json.loads((root / "building_parts.json").read_text())["annotations"]
    image_meta = json.loads((root / "image_meta.json").read_text())
    pool = [name for name in image_meta if name not in parts][:pool_kept]
    (root / "image_meta.json").write_text(json.dumps({n: image_meta[n] for n in [*parts, *pool]}))
    manifest_path = tmp_path / "manifest.parquet"
    write_manifest_outputs(read_wikichurches(root), manifest_path)
    manifest = pd.read_parquet(manifest_path)
    assert (manifest["split"] == "pool").sum() == count and (manifest["split"] == "annotated").sum() == 16

    message = rf"{tmp_path}/manifest\.parquet: .* holds {count} images .* at least 20 are needed"
    with pytest.raises(ValueError, match=message):
        run_finetune(manifest_path, tmp_path / "no_model", "dinov2", "linear", settings(), tmp_path / "out")
    # the style probe, a default target, records the shortfall instead of stopping the run
    with h5py.File(tmp_path / "embeddings.h5", "w") as store:
        store["ids"] = np.array(manifest["image_id"].tolist(), dtype=h5py.string_dtype())
        store["cls"] = np.random.default_rng(0).normal(size=(len(manifest), 8)).astype(np.float32)
    table = style_probe(tmp_path / "embeddings.h5", manifest, CLASSES, model="m", features=("cls",),
                        source=manifest_path)
    assert not table["computable"].any() and table["accuracy"].isna().all()
    assert table["note"].str.match("not computable: " + message).all()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()
    # a configured minimum the pool meets passes this check; too few churches to validate on still
    # stop the job before training, naming the manifest
    if count:
        with pytest.raises(ValueError, match=rf"{tmp_path}/manifest\.parquet: style task: \d churches"):
            run_finetune(manifest_path, tmp_path / "no_model", "dinov2", "linear",
                         settings(min_pool_images=count), tmp_path / "out")


# ---- style probe ---------------------------------------------------------------------------------
def test_style_probe_recovers_a_planted_style_signal(tmp_path):
    rng = np.random.default_rng(0)
    n = 160
    styles = np.array(list(CLASSES))[np.arange(n) % 4]
    signal_ = np.eye(4)[np.arange(n) % 4] * 3.0
    cls = np.hstack([signal_, rng.normal(size=(n, 12))]).astype(np.float32)
    noise = rng.normal(size=(n, 16)).astype(np.float32)
    ids = [f"img{k}" for k in range(n)]
    with h5py.File(tmp_path / "embeddings.h5", "w") as store:
        store["ids"] = np.array(ids, dtype=h5py.string_dtype())
        store["cls"], store["mean"] = cls, noise
    manifest = pd.DataFrame({"image_id": ids, "path": "", "split": "pool",
                             "church_id": [f"c{k // 2}" for k in range(n)], "styles": styles})
    table = style_probe(tmp_path / "embeddings.h5", manifest, CLASSES, model="m", folds=4)
    assert table["feature"].tolist() == ["cls", "mean"]
    cls_row, mean_row = table.iloc[0], table.iloc[1]
    assert cls_row["accuracy"] > 0.95 and cls_row["n_classes"] == 4 and cls_row["n_images"] == n
    assert abs(mean_row["accuracy"] - 0.25) < 0.15  # noise stays near chance
    assert cls_row["chance_accuracy"] == 0.25

    # the same folds through scikit-learn's own cross-validation give the same accuracy
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.arange(n) % 4
    groups = np.arange(n) // 2
    predicted = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), noise, y,
                                  groups=groups, cv=StratifiedGroupKFold(4, shuffle=True, random_state=0))
    assert cross_validated_probe(noise, y, groups, folds=4)["accuracy"] == pytest.approx((predicted == y).mean())


# ---- known answer --------------------------------------------------------------------------------
def _mean_last_layer_iou(family, model_folder, tuned_folder, manifest, annotations, threshold=30):
    from encoderlens.alignment.masks import box_masks
    from encoderlens.alignment.resize import upsample
    from encoderlens.alignment.scores import score_maps
    from encoderlens.attention.maps import cls_attention
    from encoderlens.extract.run import ImageFiles

    adapter = load_adapter(family, model_folder)
    if tuned_folder is not None:
        model, _ = apply_tuned_weights(adapter.model, tuned_folder)
        adapter.model = model.eval()
    held = manifest[manifest["split"] == "annotated"]
    files = ImageFiles(held["path"].tolist(), adapter.preprocess)
    output = adapter.encode(torch.stack([files[i] for i in range(len(files))]))
    info = adapter.info
    maps = cls_attention(output.attentions, [info.num_layers - 1], info.n_prefix_tokens,
                         (info.grid_h, info.grid_w)).mean(dim=2)[:, 0].numpy()
    masks = box_masks(annotations, 64)
    return float(np.mean([score_maps(upsample(maps[i:i + 1], 64), masks[(image_id,)], [threshold], 4).iou[0, 0]
                          for i, image_id in enumerate(held["image_id"])]))


def test_known_answer_full_fine_tuning_moves_attention_to_the_style_parts(tmp_path):
    """The style lives only inside the annotated windows and portals, so learning it must move the
    last layer's CLS attention toward them. Measured (seed fixed, 1 thread): held-out accuracy 0.45
    (chance 0.25), mean IoU at 30% mass 0.124 frozen -> 0.193 tuned."""
    torch.set_num_threads(1)
    write_synthetic_churches(tmp_path / "dataset", n_images=400, seed=1, n_annotated=40)
    result = read_wikichurches(tmp_path / "dataset")
    write_manifest_outputs(result, tmp_path / "manifest.parquet", tmp_path / "annotations.parquet")
    build_tiny("dinov2", tmp_path / "model", seed=0, hidden_size=64, num_layers=4, num_heads=4, image_size=64,
               patch_size=8)
    out = tmp_path / "full"
    metrics = run_finetune(tmp_path / "manifest.parquet", tmp_path / "model", "dinov2", "full",
                           settings(epochs=15, batch_size=32, backbone_lr=1e-3, last_blocks=4, patience=15), out)
    assert metrics["heldout_accuracy"] >= 0.375  # chance is 0.25 on 40 balanced held-out images

    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    annotations = pd.read_parquet(tmp_path / "annotations.parquet")
    frozen = _mean_last_layer_iou("dinov2", tmp_path / "model", None, manifest, annotations)
    tuned = _mean_last_layer_iou("dinov2", tmp_path / "model", out, manifest, annotations)
    assert tuned - frozen >= 0.04, (frozen, tuned)


def test_style_probe_on_a_tiny_dataset_reports_not_computable(tmp_path):
    # issue 21 item 6: 4 images, each style from one church, used to fail the whole job
    rng = np.random.default_rng(0)
    styles = list(CLASSES)[:2]
    ids = [f"img{k}" for k in range(4)]
    with h5py.File(tmp_path / "embeddings.h5", "w") as store:
        store["ids"] = np.array(ids, dtype=h5py.string_dtype())
        store["cls"], store["mean"] = rng.normal(size=(2, 4, 8)).astype(np.float32)
    manifest = pd.DataFrame({"image_id": ids, "path": "", "split": "pool",
                             "church_id": ["c0", "c0", "c1", "c2"],
                             "styles": [styles[0], styles[0], styles[1], styles[1]]})
    table = style_probe(tmp_path / "embeddings.h5", manifest, CLASSES, model="m", folds=4)
    assert table["feature"].tolist() == ["cls", "mean"]
    assert not table["computable"].any() and (table["folds"] == 0).all()
    assert table[["accuracy", "macro_f1", "chance_accuracy"]].isna().all().all()
    assert (table["n_images"] == 4).all() and (table["n_classes"] == 2).all()
    first = CLASSES[styles[0]]
    assert table["note"].tolist() == [f"not computable: every class needs images of at least 2 churches for "
                                      f"cross-validation; churches per class: {first} (1)"] * 2
    # one class only: no probe either
    one = manifest.assign(styles=styles[0], church_id=["c0", "c1", "c2", "c3"])
    table = style_probe(tmp_path / "embeddings.h5", one, CLASSES, model="m")
    assert table["note"].str.contains("needs at least 2 classes").all() and not table["computable"].any()
