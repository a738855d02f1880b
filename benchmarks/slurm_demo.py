"""Wall time of the demo DAG run locally and on a local single-node SLURM cluster (root needed).

    python benchmarks/slurm_demo.py [--folder /tmp/slurm_bench] [--order local,slurm]
                                    [--init-seconds 1] [--without-groups]

Both runs start from a fresh copy of the workflow (no results, resources or .snakemake). The local run
is `snakemake --cores <CPUs>` with profiles/default; the SLURM run is `snakemake --workflow-profile
profiles/slurm` (with its job groups) against scripts/local_slurm.py's cluster (one node with the CPUs
of this machine, one partition that jobs must name), status by squeue, a status check `--init-seconds`
after submitting and after each check that saw a job finish. `--without-groups` drops the groups
from the copy's profile, to measure what they gain. Target: SLURM within 2x local.
"""

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import copy_workflow  # noqa: E402

import yaml  # noqa: E402

PARTITION = "encoderlens_bench"


def load_local_slurm():
    spec = importlib.util.spec_from_file_location("local_slurm", REPO / "scripts" / "local_slurm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed_snakemake(workdir, *args):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (workdir / "benchmark_run.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed in {workdir}; see {workdir / 'benchmark_run.log'}")
    steps = re.findall(r"(\d+) of (\d+) steps", result.stdout + result.stderr)
    return seconds, int(steps[-1][1]) if steps else 0, result.stdout + result.stderr


def run_local(workdir, cpus):
    seconds, jobs, _ = timed_snakemake(workdir, "--cores", str(cpus))
    return {"local_seconds": round(seconds, 1), "local_jobs": jobs}


def drop_groups(workdir):
    """The copy's SLURM profile without its job groups: one sbatch job per step."""
    profile = workdir / "profiles" / "slurm" / "config.yaml"
    settings = yaml.safe_load(profile.read_text())
    settings.pop("groups", None)
    settings.pop("group-components", None)
    profile.write_text(yaml.safe_dump(settings, sort_keys=False))


def run_slurm(workdir, cluster, local_slurm, cpus, init_seconds):
    local_slurm.start(cluster, partition=PARTITION, cpus=cpus, default=False)
    try:
        seconds, jobs, output = timed_snakemake(
            workdir, "--workflow-profile", "profiles/slurm", "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", str(init_seconds),
            "--config", f"cluster={{partition: {PARTITION}}}")
    finally:
        local_slurm.stop(cluster)
    return {"slurm_seconds": round(seconds, 1), "slurm_jobs": jobs,
            "sbatch_jobs": len(re.findall(r"submitted with SLURM jobid", output)),
            "group_jobs": len(re.findall(r"^\[.*\] Group job \S+ \(jobs in", output, flags=re.M)),
            "grouped_steps": len(re.findall(r"^    (?:local)?rule \w+:$", output, flags=re.M))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--order", default="local,slurm")
    parser.add_argument("--init-seconds", type=int, default=1,
                        help="--slurm-init-seconds-before-status-checks: seconds to the first status "
                             "check, and between checks after one that saw a job finish (default 1)")
    parser.add_argument("--without-groups", action="store_true",
                        help="submit every step as its own SLURM job (drop the profile's groups)")
    parser.add_argument("--concurrent", action="store_true",
                        help="run both at once (each then has half the machine; for a loaded machine, "
                             "where sequential runs would see different loads)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="slurm_bench_"))
    local_slurm = load_local_slurm()
    reason = local_slurm.unavailable_reason()
    if reason:
        raise SystemExit(reason)
    cpus = os.cpu_count()
    report = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": cpus,
              "concurrent": args.concurrent, "init_seconds": args.init_seconds,
              "groups": not args.without_groups, "load_average_before": os.getloadavg()}
    runs = {}
    for kind in args.order.split(","):
        workdir = folder / kind
        if workdir.exists():
            shutil.rmtree(workdir)
        copy_workflow(workdir)
        if kind == "slurm" and args.without_groups:
            drop_groups(workdir)
        if kind == "local":
            runs[kind] = lambda workdir=workdir: run_local(workdir, cpus)
        else:
            runs[kind] = lambda workdir=workdir: run_slurm(workdir, folder / "cluster", local_slurm, cpus,
                                                           args.init_seconds)
    if args.concurrent:
        with ThreadPoolExecutor(len(runs)) as pool:
            for result in list(pool.map(lambda run: run(), runs.values())):
                report.update(result)
    else:
        for run in runs.values():
            report.update(run())
    report["load_average_after"] = os.getloadavg()
    if "local_seconds" in report and "slurm_seconds" in report:
        report["ratio"] = round(report["slurm_seconds"] / report["local_seconds"], 2)
        report["target_met"] = report["ratio"] <= 2.0
    report["folder"] = str(folder)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
