"""Each study preset validates and plans its whole DAG without touching the network."""

import os

import pytest
import yaml

from conftest import REPO, snakemake
from encoderlens.data.listing import metadata_files

PRESETS = sorted(path.name for path in (REPO / "presets").glob("*.yaml"))


def test_the_four_presets_exist():
    assert PRESETS == ["captions.yaml", "osv5m.yaml", "paper.yaml", "wikichurches.yaml"]


def planned_extractions(config) -> int:
    """Frozen for every dataset and model, plus each tuned variant: style fine-tuning strategies on
    annotated datasets (LoRA skipped for ResNets) and the distance-calibrated one on street views."""
    finetune = config.get("finetune", {})
    strategies, chosen = finetune.get("strategies", []), finetune.get("models")
    calibrated = config.get("geo", {}).get("calibration", {}).get("models", [])
    count = 0
    for entry in config["datasets"].values():
        for model in entry["models"]:
            family = config["models"][model]["family"]
            count += 1
            if entry["format"] == "wikichurches" and (chosen is None or model in chosen):
                count += sum(not (strategy == "lora" and family == "resnet") for strategy in strategies)
            if entry["format"] == "osv5m" and model in calibrated:
                count += 1
    return count


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_plans_its_whole_dag_offline(workflow_copy, preset, monkeypatch):
    # anything that tried the network would fail fast on these
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    config = yaml.safe_load((REPO / "presets" / preset).read_text())
    for entry in config["datasets"].values():
        if entry["source"] == "local":  # the user's own data, e.g. a caption table: its metadata
            (workflow_copy / entry["path"]).mkdir(parents=True)  # files are the manifest's inputs
            for path in metadata_files(entry["format"], workflow_copy / entry["path"]):
                open(path, "w").close()
    result = snakemake(workflow_copy, "--dry-run", "--cores", "8", "--configfile",
                       f"presets/{preset}", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "demo_" not in output  # the preset replaces the demo config, it is not merged into it
    planned = [line.split()[1].rstrip(":") for line in result.stdout.splitlines()
               if line.startswith(("rule ", "localrule "))]
    assert planned.count("extract") == planned_extractions(config)
    assert planned.count("hub_snapshot") == len(config["models"])
    downloads = sum(entry["source"] == "download" for entry in config["datasets"].values())
    assert planned.count("download_osv5m") + planned.count("download_wikichurches") == downloads
    assert not (workflow_copy / "results").exists()


def test_hub_models_in_presets_name_real_families_and_ids():
    config = yaml.safe_load((REPO / "presets" / "paper.yaml").read_text())
    ids = {name: (entry["family"], entry["hub_id"]) for name, entry in config["models"].items()}
    assert ids["streetclip"] == ("clip", "geolocal/StreetCLIP")
    assert ids["dinov2"] == ("dinov2", "facebook/dinov2-with-registers-base")
    assert ids["dinov3"] == ("dinov3", "facebook/dinov3-vitb16-pretrain-lvd1689m")
    assert ids["siglip2"] == ("siglip", "google/siglip2-base-patch16-224")
    assert all(entry["source"] == "hub" and entry["revision"] for entry in config["models"].values())


def test_the_paper_preset_is_the_union_of_the_study_presets():
    def load(name):
        return yaml.safe_load((REPO / "presets" / name).read_text())

    paper = load("paper.yaml")
    studies = [load(name) for name in ("osv5m.yaml", "wikichurches.yaml", "captions.yaml")]
    for section in ("datasets", "models"):
        union = {}
        for study in studies:
            for key, entry in study[section].items():
                assert union.setdefault(key, entry) == entry, f"{section}.{key} differs between presets"
        assert paper[section] == union
