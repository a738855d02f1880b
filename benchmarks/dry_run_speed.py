"""How long planning the paper preset's DAG takes: `snakemake --dry-run --configfile presets/paper.yaml`.

    python benchmarks/dry_run_speed.py [--copies 1 16] [--repeats 3]
    python benchmarks/dry_run_speed.py --preset osv5m_train.yaml --copies 1   # the chunked train split

Runs in a fresh copy of the workflow with no data and no checkpoints: hub models have no snapshots
and downloads have not run, yet the dry run must plan every job. The captions dataset of the preset is
a local folder; a placeholder with an empty caption table stands in for it (a dry run reads no file
but lists the folder). `--copies N` also
times the preset with every model entered N times under new names (same hub ids), so the DAG reaches
the thousand jobs a full study with more encoders has. Reports wall time and CPU time (user + system
of the snakemake process): on a loaded machine the wall time mostly measures waiting for a core.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import copy_workflow  # noqa: E402

sys.path.insert(0, str(REPO / "src"))
from encoderlens.data.listing import metadata_files  # noqa: E402


def multiplied(config, copies):
    """The preset with every model entered `copies` times (name, name_2, ...), on every dataset."""
    if copies == 1:
        return config
    models = {}
    renamed = {}
    for name, entry in config["models"].items():
        names = [name] + [f"{name}_{index}" for index in range(2, copies + 1)]
        renamed[name] = names
        models.update({copy: entry for copy in names})
    datasets = {key: {**entry, "models": [copy for model in entry["models"] for copy in renamed[model]]}
                for key, entry in config["datasets"].items()}
    return {**config, "models": models, "datasets": datasets}


def dry_run(workdir, configfile):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--quiet", "rules",
                             "--configfile", str(configfile)], cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    total = re.findall(r"^total\s+(\d+)", result.stdout, flags=re.M)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return int(total[-1]), wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="paper.yaml", help="a file of presets/")
    args = parser.parse_args()
    workdir = copy_workflow(Path(tempfile.mkdtemp(prefix="dry_run_")) / "workflow")
    preset = yaml.safe_load((workdir / "presets" / args.preset).read_text())
    if "captions" in preset["datasets"]:
        (workdir / preset["datasets"]["captions"]["path"]).mkdir(parents=True, exist_ok=True)
        for path in metadata_files("captions", workdir / preset["datasets"]["captions"]["path"]):
            open(path, "w").close()
    rows = []
    for copies in args.copies:
        configfile = workdir / f"{Path(args.preset).stem}_x{copies}.yaml"
        configfile.write_text(yaml.safe_dump(multiplied(preset, copies), sort_keys=False))
        runs = [dry_run(workdir, configfile) for _ in range(args.repeats)]
        rows.append({"models_per_preset_model": copies, "jobs": runs[0][0],
                     "wall_s_median": round(sorted(r[1] for r in runs)[len(runs) // 2], 2),
                     "cpu_s_median": round(sorted(r[2] for r in runs)[len(runs) // 2], 2)})
    print(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count(), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
