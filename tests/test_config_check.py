"""A config error is one short line naming the key (with 'did you mean'), and image sizes that the
patch grid cannot tile fail the dry run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake
from encoderlens.config_check import check_config, config_errors, hub_patch_size, patch_size_errors

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def load(name):
    return yaml.safe_load((REPO / name).read_text())


def test_the_shipped_configs_pass():
    for name in ["config.yaml", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "presets").glob("*.yaml"))]:
        config = load(name)
        assert config_errors(config, SCHEMA) == [], name
        assert patch_size_errors(config["models"]) == [], name


def test_typos_name_the_key_and_the_near_miss():
    config = load("config.yaml")
    config["aligment"] = config.pop("alignment", {})
    model = next(iter(config["models"]))
    config["models"][model]["devce"] = "cpu"
    config["models"][model]["precision"] = "fp33"
    config["models"][model]["batch_size"] = 0
    assert config_errors(config, SCHEMA) == [
        "aligment: unknown key; did you mean 'alignment'?",
        f"models.{model}.batch_size: 0 is less than the minimum of 1",
        f"models.{model}.devce: unknown key; did you mean 'device'?",
        f"models.{model}.precision: 'fp33' is not one of ['fp32', 'bf16', 'fp16']; did you mean 'fp32'?",
    ]
    config = load("config.yaml")
    config["models"][model]["family"] = "eva"
    (line,) = config_errors(config, SCHEMA)
    assert line == (f"models.{model}.family: 'eva' is not one of ['dinov2', 'dinov3', 'mae', 'clip', 'siglip', "
                    "'resnet', 'vit', 'timm']; see the README section 'Your own model: a hub or timm checkpoint'")
    config = load("config.yaml")
    config["zzz"] = 1
    (line,) = config_errors(config, SCHEMA)
    assert line.startswith("zzz: unknown key (allowed: ") and "datasets" in line


def test_patch_sizes_from_hub_ids_and_tiny_builds():
    assert [hub_patch_size(h) for h in ("facebook/dinov2-with-registers-base", "openai/clip-vit-large-patch14-336",
                                        "google/siglip2-base-patch16-224", "facebook/dinov3-vitb16-pretrain-lvd1689m",
                                        "facebook/vit-mae-base", "geolocal/StreetCLIP", "timm/resnet50.a1_in1k",
                                        "facebook/dino-vitb16", "facebook/dino-vits8",
                                        "timm/eva02_small_patch14_224.mim_in22k",
                                        "someone/unknown")] == [14, 14, 16, 16, 16, 14, 32, 16, 8, 14, None]
    paper = load("presets/paper.yaml")
    paper["models"]["dinov2"]["image_size"] = 225
    paper["models"]["resnet50"]["image_size"] = 200
    assert patch_size_errors(paper["models"]) == [
        "models.dinov2.image_size: 225 is not a multiple of the patch size 14 "
        "(facebook/dinov2-with-registers-base); try 224, 238",
        "models.resnet50.image_size: 200 is not a multiple of the total stride 32 (timm/resnet50.a1_in1k); try 192, 224",
    ]
    tiny = {"m": {"family": "dinov2", "source": "tiny", "image_size": 60, "tiny": {"patch_size": 8, "image_size": 64}},
            "n": {"family": "dinov2", "source": "tiny", "image_size": 60}}  # patch size not fixed: no check
    assert patch_size_errors(tiny) == ["models.m.image_size: 60 is not a multiple of the patch size 8 "
                                       "(tiny.patch_size); try 56, 64"]
    with pytest.raises(ValueError, match=r"^config: \n  models.dinov2.image_size: 225 .*\n  models.resnet50"):
        check_config(paper, SCHEMA)


def test_dry_run_reports_a_top_level_typo_in_a_few_lines(workflow_copy):
    config = workflow_copy / "config.yaml"
    config.write_text(config.read_text().replace("\nalignment:", "\naligment:", 1))
    result = snakemake(workflow_copy, "--dry-run", "--cores", "1", timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "aligment: unknown key; did you mean 'alignment'?" in output
    assert len(output.splitlines()) < 15, output  # Snakemake's own message printed the schema: ~1,900 lines


def test_dry_run_refuses_an_image_size_off_the_patch_grid(workflow_copy):
    preset = copy.deepcopy(load("presets/wikichurches.yaml"))
    preset["models"]["clip"]["image_size"] = 230
    path = workflow_copy / "bad.yaml"
    path.write_text(yaml.safe_dump(preset))
    result = snakemake(workflow_copy, "--dry-run", "--cores", "1", "--configfile", str(path), timeout=120)
    assert result.returncode != 0
    assert ("models.clip.image_size: 230 is not a multiple of the patch size 16 (openai/clip-vit-base-patch16); "
            "try 224, 240") in result.stdout + result.stderr
