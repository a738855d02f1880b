"""What every job asks a scheduler for: the rules' resources, evaluated by Snakemake itself on the
parsed workflow (demo config and the paper preset), and the two profiles."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

# Runs in a fresh interpreter in the workflow copy: parses the Snakefile with Snakemake's API (no DAG,
# so hub models need no snapshots) and evaluates each requested rule's resources as a job would.
PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.iocontainers import Wildcards
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    request = json.loads(sys.argv[1])
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(config=request.get("config", {}),
                                           configfiles=[Path(p) for p in request.get("configfiles", [])]),
            snakefile=Path("Snakefile"), workdir=Path("."),
        )._workflow
        rules = {
            rule.name: {
                "local": rule.name in workflow._localrules,
                "norun": rule.norun,
                "declared": sorted(key for key in rule.resources.keys() if not key.startswith("_")),
                "conda": str(rule.conda_env or ""),
            }
            for rule in workflow.rules
        }
        jobs = []
        for rule_name, wildcards, attempt in request.get("jobs", []):
            rule = workflow.get_rule(rule_name)
            resources = rule.expand_resources(Wildcards(fromdict=wildcards), [], attempt)
            jobs.append({key: value for key, value in resources.items()})
    print("PROBE" + json.dumps({"rules": rules, "jobs": jobs}))
""")


def probe(workdir, **request):
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(request)], cwd=workdir,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


def submitted(rules):
    """Rules whose jobs a cluster executor submits: not local rules, not target-only rules."""
    return {name: rule for name, rule in rules.items() if not rule["local"] and not rule["norun"]}


@pytest.fixture(scope="module")
def demo_rules(tmp_path_factory):
    from conftest import copy_workflow

    return probe(copy_workflow(tmp_path_factory.mktemp("resources") / "workflow"))["rules"]


def test_every_submitted_rule_declares_memory_and_runtime(demo_rules):
    missing = {name: sorted({"mem_mb", "runtime"} - set(rule["declared"]))
               for name, rule in submitted(demo_rules).items()}
    assert {name: keys for name, keys in missing.items() if keys} == {}
    # and local rules, which run beside Snakemake, still say how much memory and time they take
    for name, rule in demo_rules.items():
        if rule["local"] and not rule["norun"]:
            assert {"mem_mb", "runtime"} <= set(rule["declared"]), name


def test_every_model_rule_that_can_use_a_gpu_holds_the_gpu_resource(demo_rules):
    torch_rules = {name for name, rule in submitted(demo_rules).items() if rule["conda"].endswith("torch.yaml")}
    builds_on_cpu = {"tiny_model"}  # a random-initialised build: no forward pass on any device
    assert "extract" in torch_rules
    assert {name for name in torch_rules - builds_on_cpu if "gpu" not in demo_rules[name]["declared"]} == set()


def test_memory_and_runtime_scale_with_the_sample_size_and_the_attempt(workflow_copy):
    extract = {"dataset": "demo_streets", "model": "tiny_clip", "variant": "frozen"}
    alignment = {"dataset": "demo_churches", "model": "tiny_dinov2", "variant": "frozen"}
    jobs = [["extract", extract, 1], ["extract", extract, 2], ["alignment", alignment, 1],
            ["alignment", alignment, 3], ["probes", {"dataset": "demo_streets", "model": "tiny_clip"}, 1]]
    small = probe(workflow_copy, jobs=jobs)["jobs"]
    large = probe(workflow_copy, jobs=jobs, config={
        "datasets": {"demo_streets": {"synthetic": {"n_images": 120_000}},
                     "demo_churches": {"synthetic": {"n_images": 40_000}}}})["jobs"]
    for before, after in zip(small, large):
        assert after["mem_mb"] > before["mem_mb"] and after["runtime"] > before["runtime"]
    # 120,000 CPU images at 0.5 s each: 1,000 minutes on top of the fixed 10
    assert large[0]["runtime"] == 10 + 1000
    # each retry asks for proportionally more (rounded up once)
    for first, retry, factor in ((small[0], small[1], 2), (large[0], large[1], 2),
                                 (small[2], small[3], 3), (large[2], large[3], 3)):
        assert factor * first["mem_mb"] - factor <= retry["mem_mb"] <= factor * first["mem_mb"]
        assert factor * first["runtime"] - factor <= retry["runtime"] <= factor * first["runtime"]
    # the demo pins its tiny models to the CPU: no GPU held
    assert small[0]["gpu"] == 0 and small[0]["_cores"] == 1
    assert small[4]["_cores"] == 2  # probes run on two threads, submitted as --cpus-per-task=2


def test_the_paper_preset_asks_for_gpus_and_sizes_jobs_by_its_downloads(workflow_copy):
    osv5m = {"dataset": "osv5m", "model": "streetclip", "variant": "frozen"}
    churches = {"dataset": "wikichurches", "model": "dinov2", "variant": "frozen"}
    result = probe(workflow_copy, configfiles=["presets/paper.yaml"], jobs=[
        ["extract", osv5m, 1], ["extract", churches, 1], ["alignment", churches, 1],
        ["extract", osv5m, 2]])
    streets, churches_extract, churches_alignment, retry = result["jobs"]
    assert streets["gpu"] == churches_extract["gpu"] == 1
    assert streets["_cores"] == 8  # the preset's threads: --cpus-per-task=8
    # 50,000 sampled street images against about 4,790 church images (annotated + the pool in the four
    # studied styles, rules/resources.smk) at 0.05 s each
    assert streets["runtime"] == 10 + math.ceil(50_000 * 0.05 / 60)
    assert churches_extract["runtime"] == 10 + math.ceil(4_790 * 0.05 / 60)
    assert streets["mem_mb"] > churches_extract["mem_mb"] >= 8000
    assert retry["runtime"] == 2 * streets["runtime"] and retry["gpu"] == 1
    assert "slurm_partition" not in streets  # no partition configured: the profile or cluster decides
    annotated_only = probe(workflow_copy, configfiles=["presets/paper.yaml"], jobs=[["alignment", churches, 1]],
                           config={"datasets": {"wikichurches": {"download": {"images": "annotated"}}}})
    # alignment: 10 minutes + 0.3 s per image (rules/alignment.smk), for 139 annotated images (631
    # boxes) without the pool, for about 4,790 images with it
    assert annotated_only["jobs"][0]["runtime"] == math.ceil(10 + 0.3 * 139 / 60) == 11
    assert churches_alignment["runtime"] == math.ceil(10 + 0.3 * 4_790 / 60) == 34


def test_configured_partitions_split_gpu_and_cpu_jobs(workflow_copy):
    gpu_model = {"dataset": "demo_streets", "model": "tiny_clip", "variant": "frozen"}
    result = probe(workflow_copy, config={
        "cluster": {"partition": "cpu-short", "gpu_partition": "gpu-a100"},
        "models": {"tiny_clip": {"device": "cuda"}}}, jobs=[
        ["extract", gpu_model, 1], ["extract", {**gpu_model, "model": "tiny_dinov2"}, 1],
        ["retrieval", gpu_model, 1], ["manifest", {"dataset": "demo_streets"}, 1]])
    on_gpu, on_cpu, retrieval, manifest = result["jobs"]
    assert (on_gpu["gpu"], on_gpu["slurm_partition"]) == (1, "gpu-a100")
    assert (on_cpu["gpu"], on_cpu["slurm_partition"]) == (0, "cpu-short")
    assert retrieval["slurm_partition"] == manifest["slurm_partition"] == "cpu-short"
    # every submitted rule takes the configured partition (`**slurm_partition()` in its resources);
    # one that does not is submitted without -p and fails on a cluster with no default partition
    lacking = sorted(name for name, rule in submitted(result["rules"]).items()
                     if "slurm_partition" not in rule["declared"])
    assert lacking == []


def test_local_profile_caps_gpus_and_slurm_profile_submits_with_defaults(workflow_copy):
    local = yaml.safe_load((workflow_copy / "profiles/default/config.yaml").read_text())
    assert local["resources"] == {"gpu": 1} and local["show-failed-logs"] is True
    assert "executor" not in local
    slurm = yaml.safe_load((workflow_copy / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert {"mem_mb", "runtime"} <= set(slurm["default-resources"])
    # no default cpus_per_task, which would replace each rule's threads as --cpus-per-task
    assert "cpus_per_task" not in slurm["default-resources"]
    assert "gpu" not in slurm.get("resources", {})  # no cap on GPU jobs: the cluster hands out the cards


def test_slurm_profile_groups_only_submitted_cpu_rules(demo_rules, workflow_copy):
    slurm = yaml.safe_load((workflow_copy / "profiles/slurm/config.yaml").read_text())
    groups, components = slurm["groups"], slurm["group-components"]
    # every grouped rule exists (a renamed rule would silently leave its group) and is submitted: a
    # group holding a local rule would run on the submitting host
    assert sorted(set(groups) - set(demo_rules)) == []
    assert sorted(set(groups) - set(submitted(demo_rules))) == []
    # no rule that may hold a GPU: the card would idle through the group's CPU steps, a group could
    # mix the GPU and the CPU partition (Snakemake refuses that), and a failed group job reruns all
    # of its members
    assert sorted(rule for rule in groups if "gpu" in demo_rules[rule]["declared"]) == []
    assert set(components) <= set(groups.values())
    assert all(isinstance(count, int) and count >= 1 for count in components.values())


def test_slurm_group_jobs_ask_for_their_largest_member(demo_rules, workflow_copy):
    """The job step runs a group's members one at a time: every job holds one group slot, a group
    submission has one (scope local: not counted across the cluster), and the local rules hold none,
    so the submitting host still runs them side by side."""
    slurm = yaml.safe_load((workflow_copy / "profiles/slurm/config.yaml").read_text())
    assert slurm["default-resources"]["group_slots"] == 1
    assert slurm["resources"] == {"group_slots": 1}
    assert slurm["set-resource-scopes"] == {"group_slots": "local"}
    local = {name for name, rule in demo_rules.items() if rule["local"] and not rule["norun"]}
    assert {rule for rule, settings in slurm["set-resources"].items()
            if settings.get("group_slots") == 0} == local


def test_jobs_inherit_hdf5_file_locking_off(workflow_copy):
    script = workflow_copy / "workflow_scripts" / "_env_probe.py"
    script.write_text("import os\nopen(snakemake.output[0], 'w').write(os.environ.get('HDF5_USE_FILE_LOCKING', ''))\n")
    snakefile = workflow_copy / "Snakefile"
    snakefile.write_text(snakefile.read_text() + textwrap.dedent("""

        rule env_probe:
            output:
                "env_probe.txt",
            script:
                "workflow_scripts/_env_probe.py"
        """))
    env = {key: value for key, value in os.environ.items() if key != "HDF5_USE_FILE_LOCKING"}
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "env_probe"],
                            cwd=workflow_copy, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workflow_copy / "env_probe.txt").read_text() == "FALSE"
