import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "workflow_scripts", "schemas", "profiles",
                  "presets", "envs", "report")


def copy_workflow(destination: Path) -> Path:
    """A working copy of the workflow (not of resources/ or results/) to run snakemake in."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name)
        elif source.exists():
            shutil.copy2(source, destination / name)
    return destination


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workflow_copy(tmp_path):
    return copy_workflow(tmp_path / "workflow")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One full run of the demo DAG shared by every end-to-end test module. Read-only: a test that
    changes the config or deletes outputs works on `clone_run(demo_run, tmp_path)` instead."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo") / "workflow")
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir


def clone_run(workdir: Path, destination: Path) -> Path:
    """A copy of a finished run (outputs, logs and .snakemake metadata, modification times kept), so a
    test can change it without disturbing the shared run."""
    shutil.copytree(workdir, destination, symlinks=True)
    return destination


@pytest.fixture(scope="session", autouse=True)
def _slurm_run_in_background(request, tmp_path_factory):
    """test_slurm's run on the local SLURM cluster, started with the session when one of its tests is
    selected (see test_slurm.BackgroundRun), and stopped with it."""
    if not any(item.path.name == "test_slurm.py" for item in request.session.items):
        yield None
        return
    from test_slurm import BackgroundRun
    run = BackgroundRun(tmp_path_factory)
    yield run
    run.stop()
