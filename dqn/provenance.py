"""Provenance: what made a file (package version and git commit, game, seed, preset,
the full resolved config, library versions, creation time), stored with every HDF5 file
and benchmark so any figure can be traced back to the code and settings behind it; and
the machine it runs on."""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import dqn

LIBRARIES = ("numpy", "torch", "ale-py", "gymnasium", "h5py", "opencv-python-headless")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout the package runs from, '-dirty' if it has changes."""
    here = Path(__file__).resolve().parent
    # safe.directory: a checkout mounted into a container belongs to another user there,
    # and git would refuse to read it.
    git = ["git", "-c", "safe.directory=*", "-C", str(here)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        # The project's image holds no .git but records the commit it was built from
        # (container/Dockerfile). Only a hint: this code need not be that image's.
        if image_commit := os.environ.get("DQN_IMAGE_GIT_COMMIT"):
            return (
                "unknown (not run from a git checkout; the container image was built from "
                f"{image_commit})"
            )
        return "unknown (not run from a git checkout)"
    return commit + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def physical_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def record(game: str, seed: int, preset: str, config: dict) -> dict[str, Any]:
    return {
        "dqn_version": dqn.__version__,
        "git_commit": git_commit(),
        "game": game,
        "seed": seed,
        "preset": preset,
        "config": json.dumps(config, sort_keys=True),
        "library_versions": json.dumps(library_versions(), sort_keys=True),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
