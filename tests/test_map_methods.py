"""The map-method registry and the family traits table: one entry per method, one row per family,
read by extraction, scoring, the adapters, the hub snapshot and the rules alike."""

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import encoderlens.attention.methods as registry
from encoderlens.alignment.job import score_attention_file
from encoderlens.attention.methods import (METHOD_NAMES, METHODS, MapMethod, method_class, methods_for,
                                           read_method)
from encoderlens.extract.run import ExtractionSettings, extract
from encoderlens.models import hub
from encoderlens.models.families import FAMILIES
from encoderlens.models.registry import FAMILIES as ADAPTERS
from encoderlens.models.registry import build_tiny, load_adapter

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())


def test_the_schema_names_the_registered_methods_and_families_once():
    assert SCHEMA["$defs"]["map_method"]["enum"] == list(METHOD_NAMES)
    assert SCHEMA["$defs"]["model"]["properties"]["family"]["enum"] == list(FAMILIES)
    # every other mention of a method name in the schema goes through the one $defs entry
    text = (REPO / "schemas" / "config.schema.yaml").read_text()
    assert text.count("[cls, rollout, mean, map_probe, gradcam, chefer, ig]") == 1
    assert text.count('$ref: "#/$defs/map_method"') == 6  # alignment, faithfulness, statistics (2), figures, models


def test_which_maps_each_family_gets():
    names = {family: [m.name for m in methods_for(family)] for family in FAMILIES}
    assert names == {"dinov2": ["cls", "rollout"], "dinov3": ["cls", "rollout"], "mae": ["cls", "rollout"],
                     "clip": ["cls", "rollout"], "siglip": ["mean", "map_probe"], "resnet": ["gradcam"],
                     "vit": ["cls", "rollout"], "timm": ["cls", "rollout"]}
    assert [method_class(name).dataset for name in METHOD_NAMES] == list(METHOD_NAMES)
    with pytest.raises(ValueError, match="unknown attention method 'attention'"):
        method_class("attention")
    with pytest.raises(ValueError, match="unknown model family 'vgg'"):
        methods_for("vgg")


def test_adapters_and_the_hub_take_their_traits_from_the_table():
    assert set(ADAPTERS) == set(FAMILIES)
    for family, traits in FAMILIES.items():
        adapter = ADAPTERS[family]
        assert adapter.family == family and adapter.traits is traits
        assert (adapter.hub_ids, adapter.has_cls, adapter.lora_target_modules) == (
            traits.hub_ids, traits.has_cls, traits.lora_targets)
        assert hub.FAMILY_CONFIG_FILES[family] == traits.hub_files
    assert FAMILIES["resnet"].hub_files == ("config.json",) and FAMILIES["resnet"].lora_targets == ()
    assert FAMILIES["clip"].default_hub_id == "openai/clip-vit-base-patch16"
    with pytest.raises(TypeError, match="traits table"):
        class Writing(ADAPTERS["clip"]):  # noqa: F841 - a family's traits are written once
            family = "clip"
            has_cls = False


def test_the_tables_the_rules_read_do_not_import_torch():
    code = ("import sys; import encoderlens.models.families, encoderlens.attention.methods, "
            "encoderlens.models.hub, encoderlens.alignment.job; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_rules_name_no_family():
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(FAMILIES))
    for path in sorted((REPO / "rules").glob("*.smk")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            assert not pattern.search(code), f"{path.name}:{number}: {line.strip()}"


class Brightness(MapMethod):
    """A method defined outside the registry module: the mean input intensity of each patch."""

    name = dataset = "brightness"
    dtype = np.float16

    @classmethod
    def applies(cls, traits):
        return traits.has_cls

    def shape(self):
        return self.grid

    def compute(self, forward):
        pixels = forward.pixels.mean(dim=1)                                  # (B, S, S)
        gh, gw = self.grid
        b, s, _ = pixels.shape
        return pixels.reshape(b, gh, s // gh, gw, s // gw).mean(dim=(2, 4)).cpu().numpy()


def test_a_new_method_flows_from_extraction_to_the_alignment_table(tmp_path, monkeypatch):
    """A registry entry is all a method needs: extraction stores it under its dataset, shape and dtype,
    and scoring reads and scores it like the others, with no per-method code anywhere else."""
    monkeypatch.setattr(registry, "METHODS", METHODS + (Brightness,))
    monkeypatch.setattr(registry, "METHOD_NAMES", METHOD_NAMES + ("brightness",))
    build_tiny("clip", tmp_path / "clip", seed=0)
    adapter = load_adapter("clip", tmp_path / "clip")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        path = tmp_path / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, size=(48, 80, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    out = tmp_path / "out"
    extract(["a", "b", "c"], paths, adapter, out / "embeddings.h5", out / "attention.h5",
            ExtractionSettings(batch_size=2), {"model": "tiny_clip"})
    info = adapter.info
    with h5py.File(out / "attention.h5", "r") as store:
        assert sorted(store) == ["brightness", "cls", "ids", "layers", "rollout"]
        assert store["brightness"].dtype == np.float16
        assert store["brightness"].shape == (3, info.grid_h, info.grid_w)
        import torch
        pixels = torch.stack([adapter.preprocess(Image.open(p)) for p in paths])
        want = Brightness(adapter, None, []).compute(registry.ForwardPass(pixels, None))
        np.testing.assert_allclose(store["brightness"][()].astype(np.float32), want, atol=2e-3)
        read = read_method("brightness", store, slice(1, 3))
        assert read.maps.shape == (2, 1, info.grid_h, info.grid_w) and read.layer.tolist() == [-1]
    boxes = pd.DataFrame({"image_id": ["a", "b"], "box_id": [0, 1], "feature": ["door", "tower"],
                          "left": [0.1, 0.5], "top": [0.2, 0.0], "width": [0.3, 0.4], "height": [0.5, 0.6],
                          "clamped": [False, False]})
    table, _ = score_attention_file(out / "attention.h5", boxes, "tiny_clip", "frozen", [25.0], 2.0)
    assert table["method"].unique().tolist() == ["cls", "rollout", "brightness"]
    assert sorted(table.loc[table["method"] == "brightness", "image_id"]) == ["a", "b"]


def test_a_method_whose_maps_do_not_match_its_shape_is_refused(tmp_path, monkeypatch):
    class Wrong(Brightness):
        def shape(self):
            return (1, *self.grid)

    monkeypatch.setattr(registry, "METHODS", METHODS + (Wrong,))
    build_tiny("clip", tmp_path / "clip", seed=0)
    adapter = load_adapter("clip", tmp_path / "clip")
    path = tmp_path / "0.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(path)
    with pytest.raises(RuntimeError, match=r"brightness maps have shape \(1, 8, 8\), expected \(1, 1, 8, 8\)"):
        extract(["a"], [str(path)], adapter, tmp_path / "e.h5", tmp_path / "a.h5", ExtractionSettings(), {})
