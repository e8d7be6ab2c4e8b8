"""The conda environments of the rules (envs/*.yaml) against requirements.lock: every
version pinned, the same PyPI pins, nothing a pinned package needs left out, and every
rule naming one; pyproject.toml's bounds against the machines the project runs on."""

import platform
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from dqn import wheels

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
# What each family's commands import (besides the standard library and dqn itself).
NEEDS = {
    # Every `dqn` command imports dqn.presets, hence pydantic.
    "training": {
        "torch",
        "numpy",
        "gymnasium",
        "ale-py",
        "h5py",
        "opencv-python-headless",
        "pydantic",
        "imageio",
        "imageio-ffmpeg",
        "pillow",
        "tensorboard",
    },
    "plotting": {"numpy", "h5py", "matplotlib", "pydantic", "rliable", "scipy"},
}


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def env_pins(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(conda pins, pip pins) of an environment file, as {name: version}."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dependency in env["dependencies"]:
        if isinstance(dependency, dict):
            for line in dependency["pip"]:
                name, _, version = line.partition("==")
                assert version, f"{path}: pip dependency {line!r} is not pinned with =="
                pip[canonicalize_name(name)] = version
        else:
            name, _, version = dependency.partition("=")
            assert re.fullmatch(r"\d+(\.\d+)+", version), (
                f"{path}: conda dependency {dependency!r} is not pinned to one release"
            )
            conda[name] = version
    return conda, pip


def test_there_is_an_env_per_rule_family():
    assert {path.stem for path in ENVS} == set(NEEDS)


@pytest.mark.parametrize("path", ENVS, ids=lambda path: path.stem)
def test_env_pins_every_version_from_conda_forge_and_the_lock(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"], path
    conda, pip = env_pins(path)
    assert set(conda) == {"python", "pip"}, f"{path}: conda installs only python and pip"
    python = tuple(int(part) for part in conda["python"].split(".")[:2])
    assert python == sys.version_info[:2], (
        f"{path}: python={conda['python']}, the lock's is "
        f"{sys.version_info.major}.{sys.version_info.minor}"
    )
    pins = lock()
    differ = {
        name: (version, pins.get(name))
        for name, version in pip.items()
        if pins.get(name) != version
    }
    assert not differ, f"{path}: pins that differ from requirements.lock (env, lock): {differ}"
    assert NEEDS[path.stem] <= set(pip), f"{path}: lacks {NEEDS[path.stem] - set(pip)}"


def unpinned(pins) -> set[str]:
    """Requirements of the packages `pins` (as installed here, from the lock) that are
    not among `pins` themselves, skipping optional extras and other platforms'."""
    missing = set()
    for name in pins:
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(requirement.name) not in pins:
                missing.add(f"{requirement.name} (needed by {name})")
    return missing


@pytest.mark.parametrize("path", ENVS, ids=lambda path: path.stem)
def test_env_pins_what_its_packages_need(path):
    # so pip in the env resolves nothing on its own
    missing = unpinned(env_pins(path)[1])
    assert not missing, f"{path}: not pinned: {', '.join(sorted(missing))}"


def test_the_lock_pins_what_its_packages_need():
    missing = unpinned(lock())
    assert not missing, f"requirements.lock: not pinned: {', '.join(sorted(missing))}"


def test_every_rule_that_runs_a_command_names_a_conda_env_that_exists():
    rules = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            # A rule that runs a command (not one that only gathers inputs).
            if (m := re.match(r"rule (\w+):", block)) and "\n    shell:" in block:
                env = re.search(r"\n    conda:\n        \"([^\"]+)\"", block)
                rules[m.group(1)] = env and (smk.parent / env.group(1)).resolve()
    assert rules and all(rules.values()), (
        f"rules without a conda env: {[name for name, env in rules.items() if not env]}"
    )
    assert set(rules.values()) == {path.resolve() for path in ENVS}


def test_the_plotting_env_needs_neither_torch_nor_the_emulator():
    """envs/plotting.yaml has no torch, ALE, gymnasium or OpenCV: `dqn plot` must import
    without them (a module of the figure stage that pulls in the emulator breaks it)."""
    script = (
        "import sys\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'ale_py', 'gymnasium', 'cv2'):\n"
        "            raise ImportError(f'{name} is not in the plotting env')\n"
        "sys.meta_path.insert(0, Absent())\n"
        "from dqn import cli, plots\n"
        "cli.main(['plot', 'table1', '--help'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "Table 1" in result.stdout, result.stderr


def test_pyproject_admits_the_python_and_torch_of_both_machines_the_project_runs_on():
    # Here: Python 3.11 and requirements.lock's torch 2.13. The lent GPU machine, which
    # runs scripts/device-check with its own packages: Python 3.12 and torch 2.11.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {
        Requirement(text).name: Requirement(text).specifier for text in project["dependencies"]
    }
    bounds["python"] = SpecifierSet(project["requires-python"])
    here = {"python": platform.python_version(), "torch": lock()["torch"], "numpy": lock()["numpy"]}
    for machine, versions in (("here", here), ("the GPU machine", wheels.GPU_MACHINE)):
        for name, version in versions.items():
            assert bounds[name].contains(version), (
                f"{machine}: {name} {version} is outside pyproject.toml's {bounds[name]}"
            )
    assert sys.version_info[:2] == (3, 11) and wheels.GPU_MACHINE["python"].startswith("3.12")


def test_a_venv_and_the_image_install_the_lock_under_the_same_cuda_pins():
    # PyPI's CUDA torch leaves some of its CUDA wheels' versions open: a GPU venv that
    # `make` builds takes them at container/cuda-constraints.txt's pins, as the image does.
    # (The Makefile read, not run: the image has no make.)
    makefile = (ROOT / "Makefile").read_text()
    pins = re.search(r"^CUDA_PINS := (\S+)$", makefile, re.MULTILINE)
    assert pins and pins.group(1) == "container/cuda-constraints.txt", makefile
    assert re.search(r"pip install .*-r requirements\.lock -c \$\(CUDA_PINS\)$", makefile, re.M)
    dockerfile = (ROOT / "container" / "Dockerfile").read_text()
    assert "-r /tmp/build/requirements.lock -c /tmp/build/cuda-constraints.txt" in dockerfile
