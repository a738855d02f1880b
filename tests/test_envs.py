"""The conda environments rules name (`--software-deployment-method conda`) agree with pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
# conda-forge names that differ from the PyPI name
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pyproject_specs():
    return {canonicalize_name(req.name): req.specifier
            for req in map(Requirement, pyproject()["dependencies"])}


def conda_specs(env_file):
    """name -> SpecifierSet for the conda packages of an env file (conda's `=1.2` means 1.2.*)."""
    specs = {}
    for entry in yaml.safe_load(env_file.read_text())["dependencies"]:
        if not isinstance(entry, str):
            continue
        name, spec = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", entry.strip()).groups()
        if re.fullmatch(r"=[^=<>!].*", spec):
            spec = f"=={spec[1:]}.*"
        specs[canonicalize_name(CONDA_TO_PYPI.get(name, name))] = SpecifierSet(spec)
    return specs


def pip_lines(env_file):
    for entry in yaml.safe_load(env_file.read_text())["dependencies"]:
        if isinstance(entry, dict) and "pip" in entry:
            return entry["pip"]
    return []


def test_there_is_a_cpu_and_a_torch_environment():
    assert {path.name for path in ENVS} >= {"analysis.yaml", "torch.yaml"}


@pytest.mark.parametrize("env_file", ENVS, ids=lambda path: path.name)
def test_conda_pins_match_pyproject(env_file):
    declared = pyproject_specs()
    specs = conda_specs(env_file)
    unknown = sorted(set(specs) - NOT_PACKAGES - set(declared))
    assert unknown == [], f"{env_file.name} installs packages pyproject.toml does not declare: {unknown}"
    mismatched = {name: (str(spec), str(declared[name])) for name, spec in specs.items()
                  if name not in NOT_PACKAGES and spec != declared[name]}
    assert mismatched == {}, f"{env_file.name}: conda spec vs pyproject.toml spec"


@pytest.mark.parametrize("env_file", ENVS, ids=lambda path: path.name)
def test_environment_python_and_library_come_from_this_checkout(env_file):
    python = conda_specs(env_file)["python"]
    requires = SpecifierSet(pyproject()["requires-python"])
    version = str(python).removeprefix("==").removesuffix(".*")
    assert requires.contains(version), f"{env_file.name}: python {version} outside {requires}"
    # the env file lives in envs/, so ".." is the repository root holding pyproject.toml
    assert "-e .." in pip_lines(env_file)
    assert (env_file.parent / ".." / "pyproject.toml").resolve() == REPO / "pyproject.toml"


def test_exact_pins_of_the_torch_stack_are_in_the_torch_environment():
    exact = {name: spec for name, spec in pyproject_specs().items()
             if any(s.operator == "==" for s in spec)}
    assert {"torch", "torchvision"} <= set(exact)
    torch_env = conda_specs(REPO / "envs" / "torch.yaml")
    for name, spec in exact.items():
        assert torch_env.get(name) == spec, name


def test_every_rule_names_an_environment_that_exists():
    for rule_file in sorted((REPO / "rules").glob("*.smk")):
        text = rule_file.read_text()
        rules = re.findall(r"^rule (\w+):", text, flags=re.M)
        envs = re.findall(r'^    conda:\n        "([^"]+)"', text, flags=re.M)
        for env in envs:
            assert (rule_file.parent / env).resolve().is_file(), f"{rule_file.name}: {env}"
        assert len(envs) >= len(rules) - text.count("rule all:"), f"{rule_file.name}: a rule without conda:"
