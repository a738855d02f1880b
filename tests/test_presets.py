"""Each study preset validates and plans its whole DAG without touching the network."""

import json
import math
import os

import pytest
import yaml

from conftest import REPO, snakemake

# the study presets; custom_*.yaml are examples on your own data, run by tests/test_custom_formats_workflow.py
PRESETS = sorted(path.name for path in (REPO / "presets").glob("*.yaml") if not path.name.startswith("custom_"))


def test_the_presets_exist():
    assert PRESETS == ["captions.yaml", "osv5m.yaml", "osv5m_train.yaml", "paper.yaml", "wikichurches.yaml"]
    assert sorted(path.name for path in (REPO / "presets").glob("custom_*.yaml")) == ["custom_boxes.yaml"]


# What a SLURM cluster accepts of one job: memory of one node and a partition's time limit (generous
# values of common GPU clusters: 256 GB nodes, MaxTime 7 days), one GPU, the cores of one node.
SLURM_MAX_MEM_MB = 256_000
SLURM_MAX_RUNTIME_MIN = 7 * 24 * 60
SLURM_MAX_CPUS = 64
# extract_chunk jobs planned: osv5m_train's 98 shards x 49,950 declared images in chunks of 50,000,
# for each of its two models
CHUNK_JOBS = {"osv5m_train.yaml": 2 * 98}


def planned_requests(output) -> list[tuple[str, dict]]:
    """(rule, resources and threads) of every job a dry run prints."""
    jobs, rule = [], None
    for line in output.splitlines():
        words = line.split()
        if line.startswith(("rule ", "localrule ")):
            rule = (words[1].rstrip(":"), {"threads": 1, "local": line.startswith("localrule ")})
            jobs.append(rule)
        elif rule and words[:1] == ["threads:"]:
            rule[1]["threads"] = int(words[1])
        elif rule and words[:1] == ["resources:"]:
            for pair in line.split("resources:", 1)[1].split(","):
                key, value = pair.strip().split("=", 1)
                rule[1][key] = value
    return jobs


def check_slurm_requests(output):
    """Every job submitted (not a local rule, not the target rule `all`) asks for whole MB and minutes
    within what one node and a partition grant, at most one GPU and one node's cores."""
    jobs = [(name, request) for name, request in planned_requests(output)
            if not request["local"] and name != "all"]
    assert jobs
    for name, request in jobs:
        mem_mb, runtime = int(request["mem_mb"]), int(request["runtime"])
        assert 1 <= mem_mb <= SLURM_MAX_MEM_MB, (name, request)
        assert 1 <= runtime <= SLURM_MAX_RUNTIME_MIN, (name, request)
        assert int(request.get("gpu", 0)) in (0, 1) and 1 <= request["threads"] <= SLURM_MAX_CPUS, (name, request)
    return jobs


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


def offline(monkeypatch):
    # anything that tried the network would fail fast on these
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")


def dry_run(workflow_copy, preset):
    result = snakemake(workflow_copy, "--dry-run", "--cores", "8", "--configfile", f"presets/{preset}",
                       timeout=120)
    planned = [line.split()[1].rstrip(":") for line in result.stdout.splitlines()
               if line.startswith(("rule ", "localrule "))]
    return result, result.stdout + result.stderr, planned


def hub_checkpoints(config, datasets) -> int:
    """Distinct (family, repo, revision) among the models the datasets use: one snapshot each."""
    used = {model for name in datasets for model in config["datasets"][name]["models"]}
    return len({(config["models"][m]["family"], config["models"][m]["hub_id"], config["models"][m]["revision"])
                for m in used if config["models"][m]["source"] == "hub"})


def write_caption_table(workflow_copy, entry):
    folder = workflow_copy / entry["path"]
    folder.mkdir(parents=True)
    (folder / "captions.csv").write_text("id,caption\n1,a house in Lyon\n")


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_plans_its_whole_dag_offline(workflow_copy, preset, monkeypatch):
    """Each preset as a user runs it with their caption table in place (the captions study's input)."""
    offline(monkeypatch)
    config = yaml.safe_load((REPO / "presets" / preset).read_text())
    for entry in config["datasets"].values():
        if entry["source"] == "local":  # the user's own data: a caption table
            write_caption_table(workflow_copy, entry)
    result, output, planned = dry_run(workflow_copy, preset)
    assert result.returncode == 0, output
    assert "demo_" not in output  # the preset replaces the demo config, it is not merged into it
    # one extraction per dataset, model and variant: one job, or its chunks' gather
    assert planned.count("extract") + planned.count("gather_extraction") == planned_extractions(config)
    assert planned.count("extract_chunk") == CHUNK_JOBS.get(preset, 0)
    jobs = check_slurm_requests(output)
    if preset in CHUNK_JOBS:  # a chunk of 50,000 images: within an hour of GPU time at 0.05 s per image
        chunks = [request for name, request in jobs if name == "extract_chunk"]
        assert {int(request["runtime"]) for request in chunks} == {10 + math.ceil(50_000 * 0.05 / 60)}
        assert all(request["gpu"] == "1" for request in chunks)
    # one snapshot per checkpoint: in paper.yaml clip and clip_vitb16 are both openai/clip-vit-base-patch16
    assert planned.count("hub_snapshot") == hub_checkpoints(config, config["datasets"])
    downloads = sum(entry["source"] == "download" for entry in config["datasets"].values())
    assert planned.count("download_osv5m") + planned.count("download_wikichurches") == downloads
    assert "Leaving dataset" not in output
    assert not (workflow_copy / "results").exists()


def test_paper_plans_on_a_fresh_checkout_without_the_caption_table(workflow_copy, monkeypatch):
    offline(monkeypatch)
    config = yaml.safe_load((REPO / "presets" / "paper.yaml").read_text())
    result, output, planned = dry_run(workflow_copy, "paper.yaml")
    assert result.returncode == 0, output
    left_out = [line for line in output.splitlines() if "Leaving dataset" in line]
    assert len(left_out) == 1 and "'captions'" in left_out[0], output
    assert "resources/datasets/captions/captions.csv" in left_out[0]
    others = [name for name in config["datasets"] if name != "captions"]
    without = dict(config, datasets={name: config["datasets"][name] for name in others})
    assert planned.count("extract") == planned_extractions(without)
    assert not any(rule.startswith("caption") for rule in planned)
    assert planned.count("hub_snapshot") == hub_checkpoints(config, others) == 8


def test_captions_without_its_table_says_where_to_put_it(workflow_copy, monkeypatch):
    offline(monkeypatch)
    (workflow_copy / "resources" / "datasets" / "captions").mkdir(parents=True)  # a folder, no table
    result, output, _ = dry_run(workflow_copy, "captions.yaml")
    assert result.returncode != 0
    assert "MissingInputException" not in output
    assert "resources/datasets/captions/captions.csv" in output
    assert "columns id, caption (required)" in output and "entity, language, country" in output


def test_offline_snapshot_in_place_is_used_and_not_planned(workflow_copy, monkeypatch):
    """HF_HUB_OFFLINE with a complete snapshot in resources/models/<model>/: no rule makes it, so
    Snakemake neither plans a download nor would delete it to re-run one."""
    from encoderlens.models.snapshot import PROVENANCE, describe_files

    offline(monkeypatch)
    config = yaml.safe_load((REPO / "presets" / "wikichurches.yaml").read_text())
    entry = config["models"]["dinov2"]
    folder = workflow_copy / "resources" / "models" / "dinov2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    record = {"hub_id": entry["hub_id"], "revision": "main", "commit": "a" * 40, "family": "dinov2",
              "files": ["config.json", "model.safetensors"],
              **describe_files(folder, ["config.json", "model.safetensors"])}
    (folder / PROVENANCE).write_text(json.dumps(record))
    _, output, planned = dry_run(workflow_copy, "wikichurches.yaml")
    assert planned.count("hub_snapshot") == len(config["models"]) - 1, output

    # an incomplete snapshot cannot be mended offline: the plan stops, naming the file
    (folder / "model.safetensors").write_bytes(b"truncate")
    result, output, _ = dry_run(workflow_copy, "wikichurches.yaml")
    assert result.returncode != 0
    assert "model.safetensors has 8 bytes; the snapshot recorded 7" in output


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
    # the one difference: without its table, the caption study is left out of the paper run
    assert paper["datasets"]["captions"].pop("if_missing") == "skip"
    studies = [load(name) for name in ("osv5m.yaml", "wikichurches.yaml", "captions.yaml")]
    for section in ("datasets", "models"):
        union = {}
        for study in studies:
            for key, entry in study[section].items():
                assert union.setdefault(key, entry) == entry, f"{section}.{key} differs between presets"
        assert paper[section] == union
