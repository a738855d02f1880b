"""Rerun semantics on the finished demo: after a change, a dry run plans exactly the stale jobs.

Snakemake 9's rerun triggers are used as they are (mtime, params, input, code, software-env); these
tests hold because every config value a job uses reaches it through params built from its wildcards.
Jobs are read from the dry run's job list (rule, wildcards, outputs); which rules lie downstream of
which is read from `snakemake --rulegraph`, so rules other stages add are covered without listing them.
"""

import re
import shutil

import pytest
import yaml

from conftest import clone_run, copy_workflow, snakemake

pytestmark = pytest.mark.e2e

JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")


def planned_jobs(workdir, *targets):
    """The jobs a dry run plans: one dict per job with its rule, wildcards, outputs and reason."""
    result = snakemake(workdir, "--dry-run", "--cores", "2", *targets, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    jobs = []
    for line in result.stdout.splitlines():
        header = JOB_HEADER.match(line.strip())
        if header and not line.startswith(" "):
            jobs.append({"rule": header.group(1), "wildcards": {}, "output": [], "reason": ""})
            continue
        if not jobs or not line.startswith("    "):
            continue
        key, _, value = line.strip().partition(": ")
        if key == "wildcards":
            jobs[-1]["wildcards"] = dict(item.split("=", 1) for item in value.split(", "))
        elif key == "output":
            jobs[-1]["output"] = value.split(", ")
        elif key == "reason":
            jobs[-1]["reason"] = value
    if not jobs:
        assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-4000:]
    return jobs


def rule_graph(workdir):
    """rule -> the rules that consume its outputs, from `snakemake --rulegraph` (dot)."""
    result = snakemake(workdir, "--rulegraph", "--cores", "1", "--forceall", timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', result.stdout, flags=re.M))
    consumers = {name: set() for name in names.values()}
    for source, target in re.findall(r"^\s*(\d+) -> (\d+)", result.stdout, flags=re.M):
        consumers[names[source]].add(names[target])
    return consumers


def downstream(consumers, rules):
    found, frontier = set(rules), list(rules)
    while frontier:
        for consumer in consumers.get(frontier.pop(), ()):
            if consumer not in found:
                found.add(consumer)
                frontier.append(consumer)
    return found


def edit_config(workdir, change):
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def job_key(job):
    return job["rule"], tuple(sorted(job["wildcards"].items()))


@pytest.fixture(scope="module")
def consumers(demo_run):
    return rule_graph(demo_run)


def test_a_finished_run_plans_no_job(demo_run):
    assert planned_jobs(demo_run) == []


def test_one_models_image_size_reruns_that_models_extractions_and_what_follows_only(
        demo_run, consumers, tmp_path):
    changed = clone_run(demo_run, tmp_path / "changed")
    config = edit_config(changed, lambda c: c["models"]["tiny_dinov2"].update(image_size=48))
    jobs = planned_jobs(changed)

    extractions = {(job["wildcards"]["dataset"], job["wildcards"]["model"]) for job in jobs
                   if job["rule"] == "extract"}
    datasets_with_model = {name for name, entry in config["datasets"].items()
                           if "tiny_dinov2" in entry["models"]}
    assert extractions == {(dataset, "tiny_dinov2") for dataset in datasets_with_model}
    # frozen extractions read the setting; tuned ones rerun because their training (which reads it
    # too) reruns first
    for job in jobs:
        if job["rule"] == "extract":
            expected = "Params have changed" if job["wildcards"]["variant"] == "frozen" else "updated by another job"
            assert expected in job["reason"], job
    # nothing for any other model; upstream of the extraction only this model's own trainings, which
    # take the image size as a parameter
    other_models = [job for job in jobs if job["wildcards"].get("model", "tiny_dinov2") != "tiny_dinov2"]
    assert other_models == []
    after_extraction = downstream(consumers, {"extract"})
    for job in jobs:
        if job["rule"] not in after_extraction:
            assert job["rule"].startswith("finetune_") and "Params have changed" in job["reason"], job

    # the jobs that deleting those extractions' outputs would plan (the extractions and everything
    # downstream of them), plus only jobs of this model that read the changed setting themselves or
    # follow such a job (a tuned variant's extraction after its training)
    deleted = clone_run(demo_run, tmp_path / "deleted")
    for dataset in datasets_with_model:
        for name in ("embeddings.h5", "attention.h5"):
            (deleted / "results" / dataset / "tiny_dinov2" / "frozen" / name).unlink()
    after_deletion = {job_key(job) for job in planned_jobs(deleted)}
    assert after_deletion <= {job_key(job) for job in jobs}
    for job in jobs:
        if job_key(job) not in after_deletion:
            assert job["wildcards"].get("model", "tiny_dinov2") == "tiny_dinov2", job
            assert "Params have changed" in job["reason"] or "updated by another job" in job["reason"], job


def test_deleting_one_attention_file_plans_that_file_and_its_descendants_only(demo_run, consumers, tmp_path):
    run = clone_run(demo_run, tmp_path / "run")
    attention = "results/demo_churches/tiny_mae/frozen/attention.h5"
    (run / attention).unlink()
    jobs = planned_jobs(run)
    producers = [job for job in jobs if attention in job["output"]]
    assert [job["rule"] for job in producers] == ["extract"]
    for job in jobs:
        assert job["wildcards"].get("model", "tiny_mae") == "tiny_mae", job
        assert job["wildcards"].get("dataset", "demo_churches") == "demo_churches", job
    assert {job["rule"] for job in jobs} <= downstream(consumers, {"extract"})
    # the alignment of that model's maps is among the descendants; the other models' are not
    aligned = [job for job in jobs if job["rule"] == "alignment"]
    assert [job["wildcards"]["model"] for job in aligned] == ["tiny_mae"]


def test_a_statistics_setting_reruns_statistics_and_what_follows_only(demo_run, consumers, tmp_path):
    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    stats_rules = set(re.findall(r"^rule (\w+):", (demo_run / "rules/stats.smk").read_text(), flags=re.M)) \
        if (demo_run / "rules/stats.smk").exists() else set()
    # the faithfulness statistics read the same settings (bootstrap, alpha, seed)
    stats_rules |= set(re.findall(r"^rule (\w+_statistics):", (demo_run / "rules/faithfulness.smk").read_text(),
                                  flags=re.M)) if (demo_run / "rules/faithfulness.smk").exists() else set()
    schema = yaml.safe_load((demo_run / "schemas/config.schema.yaml").read_text())
    stats_schema = schema["properties"].get("stats")
    if not stats_rules or stats_schema is None:
        pytest.skip("the workflow has no statistics stage yet (no rules/stats.smk or no stats: block)")
    key, value = _a_changed_setting(stats_schema, config.get("stats", {}))
    run = clone_run(demo_run, tmp_path / "run")
    edit_config(run, lambda c: c.setdefault("stats", {}).update({key: value}))
    jobs = planned_jobs(run)
    assert jobs, f"changing stats.{key} planned nothing"
    assert {job["rule"] for job in jobs} <= downstream(consumers, stats_rules), \
        sorted({job["rule"] for job in jobs})
    assert {job["rule"] for job in jobs} & stats_rules


def _a_changed_setting(stats_schema, current):
    """A statistics setting and a valid new value for it: the first integer or number setting."""
    for key, spec in stats_schema.get("properties", {}).items():
        if spec.get("type") in ("integer", "number") and "default" in spec:
            old = current.get(key, spec["default"])
            maximum = spec.get("maximum", spec.get("exclusiveMaximum"))
            new = old + 1 if spec["type"] == "integer" else old / 2
            if maximum is not None and new >= maximum:
                new = old - 1 if spec["type"] == "integer" else old / 2
            return key, new
    pytest.skip("the stats: block has no integer or number setting to change")


def test_one_target_plans_just_its_ancestors(tmp_path):
    workflow = copy_workflow(tmp_path / "fresh")
    jobs = planned_jobs(workflow, "results/demo_churches/tiny_mae/frozen/alignment.parquet")
    assert sorted(job_key(job) for job in jobs) == sorted([
        ("synthetic_dataset", (("dataset", "demo_churches"),)),
        ("manifest", (("dataset", "demo_churches"),)),
        ("tiny_model", (("model", "tiny_mae"),)),
        ("extract", (("dataset", "demo_churches"), ("model", "tiny_mae"), ("variant", "frozen"))),
        ("alignment", (("dataset", "demo_churches"), ("model", "tiny_mae"), ("variant", "frozen"))),
    ])


def test_one_target_builds_just_its_ancestors(tmp_path):
    workflow = copy_workflow(tmp_path / "fresh")
    result = snakemake(workflow, "--cores", "2", "results/demo_streets/manifest.parquet")
    assert result.returncode == 0, result.stderr[-4000:]
    built = sorted(str(path.relative_to(workflow)) for folder in ("results", "resources")
                   for path in (workflow / folder).rglob("*") if path.is_file())
    assert "results/demo_streets/manifest.parquet" in built
    assert all(path.startswith(("results/demo_streets/", "resources/datasets/demo_streets/"))
               for path in built), built


def test_after_a_config_change_one_target_reruns_only_its_stale_ancestors(demo_run, tmp_path):
    run = clone_run(demo_run, tmp_path / "run")
    edit_config(run, lambda c: c["models"]["tiny_dinov2"].update(image_size=48))
    target = "results/demo_streets/tiny_dinov2/frozen/attention.h5"
    jobs = planned_jobs(run, target)
    assert [job_key(job) for job in jobs] == [
        ("extract", (("dataset", "demo_streets"), ("model", "tiny_dinov2"), ("variant", "frozen")))]
    shutil.rmtree(run)
