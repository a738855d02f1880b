"""The demo DAG on a real single-node SLURM cluster through the executor plugin and profiles/slurm.

scripts/local_slurm.py installs Debian's slurm-wlm and munge when missing, starts munged, slurmctld and
slurmd as children of this process, and stops exactly those. The cluster's only partition is not its
default, so every job must name it: the run passes it through the config (cluster.partition), the
override a user makes for their own cluster. Outputs are compared with the shared local demo run.

The cluster runs a slice of the demo DAG, not all of it (CI time: the whole DAG through sbatch took
about 9 minutes of the suite's 20, the slice under half of that): one model's chain through every rule
that may hold a GPU and through each kind of group job. Every file it makes must equal the local run's.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow

pytestmark = pytest.mark.e2e

PARTITION = "encoderlens_test"

# the slice: every GPU rule (extraction, the three fine-tunings, faithfulness curves, probes, distance
# calibration, the caption models) and the datasets, alignment, embedding_analyses, geo, statistics and caption_analyses groups
TARGETS = (
    "results/demo_churches/tiny_clip/finetune/delta_iou.parquet",
    "results/demo_churches/tiny_clip/style_probe.parquet",
    "results/demo_churches/tiny_clip/frozen/faithfulness.parquet",
    "results/demo_streets/tiny_clip/probes.parquet",
    "results/demo_streets/tiny_clip/frozen/attention_stats.parquet",
    "results/demo_streets/tiny_clip/distcal/knn.parquet",
    "results/demo_captions/captions/evaluation.parquet",
    "results/demo_captions/captions/diversity.parquet",
    "results/demo_captions/captions/tiny_clip/entity_presence.parquet",
)


def _load_local_slurm():
    spec = importlib.util.spec_from_file_location("local_slurm", REPO / "scripts" / "local_slurm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_slurm"] = module
    spec.loader.exec_module(module)
    return module


local_slurm = _load_local_slurm()


class BackgroundRun:
    """The local cluster and the Snakemake run on it, started in a thread as the session starts
    (conftest's `_slurm_run_in_background`, only when a test of this module is selected): the run
    mostly waits on sbatch and status checks, so it overlaps the rest of the suite instead of adding
    its wall time. `wait()` joins it; `stop()` ends the run (if still going) and the cluster."""

    def __init__(self, tmp_path_factory):
        self.folder = tmp_path_factory.mktemp("slurm")
        self.workdir = copy_workflow(tmp_path_factory.mktemp("slurm_demo") / "workflow")
        self.log = self.workdir / "slurm_run.log"
        self.skip_reason = local_slurm.unavailable_reason()
        self.state = self.process = self.error = None
        self.stopped = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="slurm-run", daemon=True)
        if not self.skip_reason:
            self._thread.start()

    def _run(self):
        try:
            state = local_slurm.start(self.folder, partition=PARTITION, default=False)
        except local_slurm.ClusterUnavailable as error:
            self.skip_reason = str(error)
            return
        except BaseException as error:  # reported by wait(), in the test that needs the run
            self.error = error
            return
        with self._lock:
            self.state = state
            if self.stopped is not None:
                return
            with self.log.open("w") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "snakemake", *TARGETS, "--workflow-profile", "profiles/slurm",
                     # no accounting database on the local cluster: ask squeue; and ask a second after
                     # submitting and after each check that saw a job finish (the plugin adds 10 s per
                     # check that saw none)
                     "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                     "--config", f"cluster={{partition: {PARTITION}}}"],
                    cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, text=True,
                    start_new_session=True)
        self.process.wait()

    def wait(self, timeout: float = 2400):
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        assert self.process is not None and self.process.returncode is not None, "the SLURM run did not end"
        return self.process.returncode, self.log.read_text()

    def stop(self) -> list[int]:
        with self._lock:
            if self.stopped is not None:
                return self.stopped
            self.stopped = []
            if self.process is not None and self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(60)
        if self._thread.ident is not None:
            self._thread.join(120)
        if self.state is not None:
            self.stopped = local_slurm.stop(self.folder)
        return self.stopped


@pytest.fixture(scope="module")
def slurm_run(_slurm_run_in_background):
    run = _slurm_run_in_background
    returncode, output = run.wait()
    assert returncode == 0, output[-12000:]
    yield run.workdir, output, run.state
    stopped = run.stop()
    assert sorted(stopped) == sorted(run.state["pids"].values())
    assert not any(local_slurm._alive(pid) for pid in stopped)
    assert not local_slurm.SLURM_CONF_LINK.is_symlink()


def submissions(output):
    """What Snakemake logged it would run, in order: ("localrule", rule, []) and ("rule", rule, []) for a
    step on its own, ("group", group name, [member rules]) for a group job (its members are logged
    indented under its header). A retried job is logged, and submitted, again."""
    units = []
    group = None
    for line in output.splitlines():
        header = re.match(r"^\[[^\]]+\] Group job (\S+) \(jobs in lexicogr\. order\):$", line)
        single = re.match(r"^(localrule|rule) (\w+):$", line)
        member = re.match(r"^    (localrule|rule) (\w+):$", line)
        if header:
            group = ("group", header.group(1), [])
            units.append(group)
        elif single:
            group = None
            units.append((single.group(1), single.group(2), []))
        elif member:
            assert group is not None, f"a job logged as a group member outside a group: {line!r}"
            assert member.group(1) == "rule", f"a local rule in group {group[1]}: it would run locally"
            group[2].append(member.group(2))
    return units


def group_job_name(group, members):
    """The plugin's name for a group job (its SLURM log folder is group_<name>): Snakemake's
    GroupJob.name, the group and its rules in order, the first five."""
    rules = sorted(set(members))
    return "_".join([group, *(rules[:5] + ["..."] if len(rules) > 5 else rules)])


# rules that may hold a GPU (resources: gpu): the SLURM profile never groups them
GPU_RULES = {"extract", "finetune_linear", "finetune_lora", "finetune_full", "faithfulness", "probes",
             "distance_calibration", "caption_translate", "place_name_index", "caption_retrieve",
             "caption_embeddings"}


def test_every_job_but_the_local_rules_went_through_sbatch(slurm_run):
    workdir, output, cluster = slurm_run
    units = submissions(output)
    remote = [name for kind, name, _ in units if kind == "rule"]
    local = {name for kind, name, _ in units if kind == "localrule"}
    groups = [(name, members) for kind, name, members in units if kind == "group"]
    grouped = [rule for _, members in groups for rule in members]
    assert "extract" in remote and "probes" in remote
    assert "extract" not in local and "synthetic_dataset" in local  # declared localrule: True
    # the profile's groups bundled the short CPU steps: every job of a grouped rule went out in a
    # group job, under its rule's group; the rules that may hold a GPU went out on their own
    profile_groups = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())["groups"]
    assert groups and all(members for _, members in groups)
    assert {"alignment", "style_probe", "retrieval", "caption_predict", "delta_iou"} <= set(grouped)
    assert not set(remote) & set(profile_groups)
    assert all(profile_groups[rule] == name for name, members in groups for rule in members)
    assert GPU_RULES & set(remote) == GPU_RULES and not GPU_RULES & set(grouped)
    # one sbatch job per step on its own and one per group job
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(submitted) == len(set(submitted)) == len(remote) + len(groups)
    assert len(submitted) < len(remote) + len(grouped)
    # the controller saw each of them, in the partition the config named
    controller_log = (cluster["folder"] + "/log/slurmctld.log")
    controller = open(controller_log).read()
    accepted = set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", controller))
    assert accepted == set(submitted)
    # (the main scheduler logs "Allocate ... Partition=", the backfill scheduler "Started ... in")
    partitions = dict(re.findall(r"sched: Allocate JobId=(\d+) .*Partition=(\S+)", controller))
    partitions.update(re.findall(r"sched/backfill: _start_job: Started JobId=(\d+) in (\S+)", controller))
    assert {partitions.get(job) for job in submitted} == {PARTITION}
    # each submission names its job's rule, or its group and the group's rules, in its SLURM log
    # path (the plugin removes the logs of jobs that succeeded)
    rule_of = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", output))
    group_of = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/group_([^/\s]+)/", output))
    assert set(rule_of) | set(group_of) == set(submitted) and not set(rule_of) & set(group_of)
    assert sorted(rule_of.values()) == sorted(remote)
    assert sorted(group_of.values()) == sorted(group_job_name(name, members) for name, members in groups)
    # each job was given its rule's threads as CPUs: probes run on two, extraction on the model's one;
    # a group job runs its members one after another and asks for its largest member, here one CPU
    # (a caption dataset's four analyses included), never for the sum of members that could run side by side
    cpus = dict(re.findall(r"sched: Allocate JobId=(\d+) .*#CPUs=(\d+)", controller))
    for job, rule in rule_of.items():
        if rule in ("probes", "extract") and job in cpus:
            assert int(cpus[job]) == (2 if rule == "probes" else 1), (rule, job)
    assert any(rule == "probes" and job in cpus for job, rule in rule_of.items())
    assert any(job in cpus for job in group_of)
    assert {cpus[job] for job in group_of if job in cpus} == {"1"}
    assert max(len(members) for _, members in groups) >= 4


def _result_files(workdir, suffixes):
    return {str(path.relative_to(workdir)) for path in (workdir / "results").rglob("*")
            if path.is_file() and path.suffix in suffixes}


def test_slurm_outputs_match_the_local_run(slurm_run, demo_run):
    workdir, _, _ = slurm_run
    tables = _result_files(workdir, {".parquet"})
    arrays = _result_files(workdir, {".h5"})
    assert set(TARGETS) <= tables and len(arrays) >= 8
    # everything the cluster made, the local run made too (same names, same bits)
    assert tables <= _result_files(demo_run, {".parquet"})
    assert arrays <= _result_files(demo_run, {".h5"})
    for name in sorted(tables):
        pd.testing.assert_frame_equal(pd.read_parquet(workdir / name), pd.read_parquet(demo_run / name),
                                      check_exact=True, obj=name)
    for name in sorted(arrays):
        with h5py.File(workdir / name) as ours, h5py.File(demo_run / name) as local:
            datasets = []
            local.visititems(lambda key, item: datasets.append(key) if isinstance(item, h5py.Dataset) else None)
            assert datasets, name
            for key in datasets:
                assert key in ours, f"{name}: /{key} missing"
                # same code, same thread counts, same machine: the same bits
                np.testing.assert_array_equal(ours[key][()], local[key][()], err_msg=f"{name}:/{key}")
            assert dict(ours.attrs).keys() == dict(local.attrs).keys(), name
