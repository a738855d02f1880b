"""What the README tells a user after a killed run, and about configs that run code (issue #21 items 5
and 11), checked against a real Snakemake on a one-rule workflow: the commands in the README's
robustness section recover a run killed with SIGKILL, and a YTE config runs Python even with -n."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

SNAKEFILE = """
rule slow:
    output: "out.txt"
    shell: "echo start > {output}; if [ -e slow ]; then sleep 120; fi; echo done >> {output}"
"""


def readme_section(title):
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def snakemake(workdir, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("profile", [True, False])
def test_the_readme_commands_recover_a_killed_run(tmp_path, profile):
    commands = [line.split("#")[0].split() for line in readme_section("Robustness").splitlines()
                if line.strip().startswith("snakemake ")]
    assert [command[1] for command in commands] == ["--unlock", "--cores"], commands
    assert "--rerun-incomplete" in commands[1]

    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    if profile:  # the workflow's own, loaded automatically (it sets rerun-incomplete)
        shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    (tmp_path / "slow").touch()
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1"], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "out.txt").exists():
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # snakemake and its job: the group this test started
    run.wait()
    (tmp_path / "slow").unlink()

    stuck = snakemake(tmp_path, "--cores", "1")
    assert stuck.returncode != 0
    if profile:
        assert "Directory cannot be locked" in stuck.stderr and "--unlock" in stuck.stderr
    else:
        assert "IncompleteFilesException" in stuck.stderr and "--rerun-incomplete" in stuck.stderr
    for command in commands:
        result = snakemake(tmp_path, *command[1:])
        assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out.txt").read_text() == "start\ndone\n"
    assert "Nothing to be done" in snakemake(tmp_path, "--cores", "1", "-n").stdout


def test_a_yte_config_runs_python_at_load_even_in_a_dry_run_and_the_readme_says_so(tmp_path):
    assert "__use_yte__" in readme_section("Security")
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "config.yaml").write_text(
        '__use_yte__: true\nx: ?open("ran.txt", "w").write("python ran") and 1\n')
    result = snakemake(tmp_path, "--cores", "1", "-n", "--configfile", "config.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ran.txt").read_text() == "python ran"
    assert not (tmp_path / "out.txt").exists()
