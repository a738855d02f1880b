"""The config is validated against the schema before any job runs, and errors name the key."""

import yaml

from conftest import snakemake


def write_config(workdir, change):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    change(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def dry_run(workdir):
    result = snakemake(workdir, "--cores", "1", "--dry-run", timeout=120)
    assert not (workdir / "results").exists()
    result.output = result.stdout + result.stderr
    return result


def test_the_demo_config_plans_every_dataset_and_model(workflow_copy):
    result = dry_run(workflow_copy)
    assert result.returncode == 0, result.output
    plan = result.stdout
    # frozen: 6 models on churches, 2 on streets, 1 on captions; tuned: 3 fine-tuning strategies for 2
    # models on churches, the distance-calibrated CLIP on streets
    assert plan.count("rule extract:") == 9 + 6 + 1
    assert plan.count("rule tiny_model:") == 6
    assert plan.count("rule synthetic_dataset:") == 3
    assert plan.count("rule alignment:") == 6 + 6  # every model on the annotated churches, and the tuned variants
    assert plan.count("rule finetune_linear:") == plan.count("rule finetune_lora:") == 2
    assert plan.count("rule finetune_full:") == plan.count("rule delta_iou:") == 2
    assert plan.count("rule style_probe:") == 6
    assert plan.count("rule baselines:") == 1
    assert plan.count("rule probes:") == 2  # both models on streets
    assert plan.count("rule retrieval:") == 2 + 1  # and the distance-calibrated CLIP
    assert plan.count("rule distance_calibration:") == plan.count("rule calibration_summary:") == 1
    assert plan.count("rule attention_stats:") == 2


def test_an_unknown_key_fails_naming_it(workflow_copy):
    write_config(workflow_copy, lambda c: c["models"]["tiny_clip"].update(batchsize=4))
    result = dry_run(workflow_copy)
    assert result.returncode != 0
    assert "models.tiny_clip.batchsize: unknown key; did you mean 'batch_size'?" in result.output


def test_a_wrong_type_fails_naming_the_key(workflow_copy):
    write_config(workflow_copy, lambda c: c["models"]["tiny_mae"].update(batch_size="eight"))
    result = dry_run(workflow_copy)
    assert result.returncode != 0
    assert "batch_size" in result.output and "'eight' is not of type 'integer'" in result.output


def test_an_unknown_family_fails_naming_it(workflow_copy):
    write_config(workflow_copy, lambda c: c["models"]["tiny_mae"].update(family="vit_unknown"))
    result = dry_run(workflow_copy)
    assert result.returncode != 0
    assert "vit_unknown" in result.output and "family" in result.output


def test_a_dataset_naming_an_unknown_model_fails(workflow_copy):
    write_config(workflow_copy, lambda c: c["datasets"]["demo_captions"].update(models=["nope"]))
    result = dry_run(workflow_copy)
    assert result.returncode != 0
    assert "datasets.demo_captions.models" in result.output and "nope" in result.output


def test_a_hub_model_needs_a_hub_id(workflow_copy):
    write_config(workflow_copy, lambda c: c["models"]["tiny_clip"].update(source="hub"))
    result = dry_run(workflow_copy)
    assert result.returncode != 0
    assert "hub_id" in result.output


def test_snakemake_lint_is_clean(workflow_copy):
    result = snakemake(workflow_copy, "--lint", timeout=120)
    assert result.returncode == 0
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr
