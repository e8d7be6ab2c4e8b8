"""The project's container: container/Dockerfile copies every part of the checkout that
the code, tests and docs use; scripts/build-container builds it with podman, the test
suite passes inside the image, and the image holds exactly the versions of
requirements.lock.

The image's tests are opt-in (they need root, podman and network access to apt and PyPI,
and take minutes):
    DQN_CONTAINER_TEST=1 .venv/bin/python -m pytest -q tests/test_container.py
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build-container"
TAG = "localhost/dqn-atari:container-test"
# Not run inside the image: this test would build images in an image, and SLURM (no
# sbatch, no cluster) cannot run in a container.
NOT_IN_IMAGE = ("tests/test_container.py", "tests/test_slurm.py")
# Besides the lock's packages: the installers (pinned in container/Dockerfile, left out
# by pip freeze) and this project, installed from the image's own checkout.
NOT_IN_LOCK = {"pip", "setuptools", "dqn-atari"}
# Tracked top-level paths the image leaves out: CI's entry point and the files that only
# git and the image build read.
NOT_COPIED = {".ci", ".dockerignore", ".gitignore"}


def test_the_dockerfile_copies_every_tracked_top_level_path():
    if not (ROOT / ".git").exists():
        pytest.skip("no git checkout to list the tracked paths of")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    top = {path.split("/", 1)[0] for path in tracked}
    dockerfile = (ROOT / "container" / "Dockerfile").read_text()
    copied = set()
    for sources in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        copied |= {source.rstrip("/") for source in sources.split()}
    missing = top - copied - NOT_COPIED
    assert not missing, f"container/Dockerfile: no COPY for the tracked {sorted(missing)}"


def podman_env() -> dict[str, str]:
    """The environment that points podman at build-container's store."""
    exports = subprocess.run(
        [str(BUILD), "--podman-env"], check=True, capture_output=True, text=True
    ).stdout
    env = dict(os.environ)
    for name, value in re.findall(r"^export (\w+)=(.*)$", exports, re.MULTILINE):
        env[name] = value
    return env


@pytest.fixture(scope="module")
def image():
    if os.environ.get("DQN_CONTAINER_TEST") != "1":
        pytest.skip("builds the podman image (root, minutes, network): set DQN_CONTAINER_TEST=1")
    start = time.monotonic()
    result = subprocess.run(
        [str(BUILD), "--tag", TAG], check=False, capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    print(f"\nbuild-container: {time.monotonic() - start:.0f} s")
    return TAG


def podman_run(image, *command, timeout):
    return subprocess.run(
        ["podman", "run", "--rm", "--network", "none", image, *command],
        check=False,
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """{normalized name: version} of the `name==version` lines of a requirements file."""
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, separator, version = line.partition("==")
            assert separator, f"not an exact pin: {line!r}"
            found[normalize(name)] = version.strip()
    return found


def test_installed_versions_are_those_of_the_lock(image):
    result = podman_run(image, "python", "-m", "pip", "list", "--format", "freeze", timeout=300)
    assert result.returncode == 0, result.stderr
    installed = pins(result.stdout)
    # A local torch wheel (2.13.0+cpu) stands in for PyPI's 2.13.0 on a machine that
    # cannot download the CUDA build; the label names the build, not another release.
    installed = {name: version.split("+", 1)[0] for name, version in installed.items()}
    locked = pins((ROOT / "requirements.lock").read_text())
    # PyPI's CUDA torch (a build without local wheels) brings its CUDA wheels, at the
    # versions container/cuda-constraints.txt pins; a CPU torch brings none.
    cuda = pins((ROOT / "container" / "cuda-constraints.txt").read_text())
    assert {name: installed.get(name) for name in locked} == locked
    extra = {
        name: version
        for name, version in installed.items()
        if name not in locked and name not in NOT_IN_LOCK and cuda.get(name) != version
    }
    assert not extra, f"installed but in neither requirements.lock nor the CUDA pins: {extra}"


def test_the_test_suite_passes_in_the_image(image):
    start = time.monotonic()
    ignores = [f"--ignore={path}" for path in NOT_IN_IMAGE]
    result = podman_run(
        image,
        "python",
        "-m",
        "pytest",
        "-q",
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
        *ignores,
        timeout=3600,
    )
    print(f"\ntests in the image: {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
