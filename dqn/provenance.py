"""Provenance: what made a file (package version and git commit, game, seed, preset,
the full resolved config, library versions, the machine that computed it, creation
time), stored with every HDF5 file and benchmark so any figure can be traced back to
the code, settings and machine behind it; and what the process knows of the machine it
runs on (its CPU, its memory).

No torch here: `dqn plot` reads files (through `dqn.h5io`, which imports this module)
where torch is not installed. What only torch can tell of the machine comes from the
caller (`dqn.devices.machine`)."""

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
# Those that draw the figures and compute their statistics (dqn.plots, dqn.aggregates).
PLOT_LIBRARIES = ("numpy", "h5py", "matplotlib", "scipy", "rliable")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout the package runs from, '-dirty' if the package has
    changes there."""
    here = Path(__file__).resolve().parent
    # safe.directory: a checkout mounted into a container belongs to another user there,
    # and git would refuse to read it. --no-optional-locks: `status` would otherwise take
    # the checkout's index lock for a moment, which the user's own git commands (or the
    # many jobs of a workflow starting at once) could meet.
    git = ["git", "--no-optional-locks", "-c", "safe.directory=*", "-C", str(here)]

    def ask(*args: str) -> str:
        return subprocess.run(
            [*git, *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = ask("rev-parse", "HEAD")
        # A copy of the package in an ignored folder of a checkout (a build/ directory, a
        # virtual environment inside it) is not the code of the checkout's commit.
        ask("ls-files", "--error-unmatch", "--", Path(__file__).name)
        dirty = ask("status", "--porcelain", "--", ".")
    except OSError:
        return _unknown("no git program to ask")
    except subprocess.CalledProcessError as error:
        asked = error.cmd[len(git)]
        if asked == "rev-parse":
            return _unknown("not run from a git checkout")
        if asked == "ls-files":
            return _unknown(f"{here} is not tracked by the git checkout it lies in")
        return _unknown(f"git {asked} failed in {here}: {error.stderr.strip()}")
    return commit + ("-dirty" if dirty else "")


def _unknown(why: str) -> str:
    # The project's image holds no .git but records the commit it was built from
    # (container/Dockerfile). Only a hint: this code need not be that image's.
    if image_commit := os.environ.get("DQN_IMAGE_GIT_COMMIT"):
        return f"unknown ({why}; the container image was built from {image_commit})"
    return f"unknown ({why})"


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (Linux), else what Python knows."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """The CPU's vendor as the kernel reports it (x86's vendor_id: GenuineIntel,
    AuthenticAMD); other CPUs' kernels name none."""
    return _cpuinfo("vendor_id") or "unknown (no vendor_id in /proc/cpuinfo)"


def _cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo; None where it has none or there is
    no such file (not Linux)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def physical_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def usable_memory(
    cgroups: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int:
    """The memory this process may use, in bytes: the machine's, or less where its
    control group or one above it sets a limit (a SLURM job's --mem, set on the job's
    group above its steps' and tasks'; a container's), which the kernel enforces by
    killing the process, hours in for a replay memory that fills slowly."""
    limits = [physical_memory()]
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return limits[0]  # not Linux, or no control groups
    for line in lines:
        _, controllers, group = line.split(":", 2)
        if controllers == "":  # cgroup v2, mounted alone or beside v1 (hybrid)
            files = [root / "unified" / "memory.max", root / "memory.max"]
        elif "memory" in controllers.split(","):  # cgroup v1
            files = [root / "memory" / "memory.limit_in_bytes"]
        else:
            continue
        # The group and each group above it, to the hierarchy's root (all a container
        # sees of it, as its namespace names its own group "/").
        parts = Path(group.lstrip("/")).parts
        for file in files:
            for depth in range(len(parts) + 1):
                path = file.parent.joinpath(*parts[:depth], file.name)
                try:
                    value = path.read_text().strip()
                except OSError:
                    continue
                if value.isdigit():  # "max": no limit (v1 writes a huge number instead)
                    limits.append(int(value))
    return min(limits)


def code_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What of the code that wrote a file (`stored`, its attributes) may differ from this
    process's (`current`, `record`'s): dqn's version, the commit, then each library, as
    'name then (now ...)'. A commit that names no code for sure (unknown, or -dirty: its
    changes may be others) counts as differing."""
    found = [
        f"{key} {stored[key]} (now {current[key]})"
        for key in ("dqn_version", "git_commit")
        if stored[key] != current[key]
    ]
    commit = current["git_commit"]
    if stored["git_commit"] == commit and (
        commit.startswith("unknown") or commit.endswith("-dirty")
    ):
        found.append(f"git_commit {commit}, which does not tell whether the code is the same")
    then, now = (json.loads(attrs["library_versions"]) for attrs in (stored, current))
    for name in sorted(then):  # a library recorded since is no difference
        if then[name] != now.get(name):
            found.append(f"{name} {then[name]} (now {now.get(name, 'not recorded')})")
    return found


def trained_by(snapshots: dict[int, dict[str, Any]]) -> str:
    """The code and libraries that trained the `snapshots` ({epoch: its attributes}), as
    an evaluation or a trace records them: a JSON object whose "snapshots" lists each
    code once, with the epochs it wrote, in the order of its first. A run continued under
    other code (`code_differences`) has an entry per code. The snapshots themselves may
    be gone (a reference run keeps its final one); the file that evaluated them keeps
    this."""
    epochs_of: dict[tuple[str, str, str], list[int]] = {}
    for epoch in sorted(snapshots):
        attrs = snapshots[epoch]
        code = (attrs["dqn_version"], attrs["git_commit"], attrs["library_versions"])
        epochs_of.setdefault(code, []).append(int(epoch))
    return json.dumps(
        {
            "snapshots": [
                {
                    "epochs": epochs,
                    "dqn_version": version,
                    "git_commit": commit,
                    "library_versions": json.loads(libraries),
                }
                for (version, commit, libraries), epochs in epochs_of.items()
            ]
        },
        sort_keys=True,
    )


def figure_record() -> dict[str, Any]:
    """What drew a figure, for its JSON: the code and the libraries of `dqn plot` (no
    time, so that the same code and inputs give the same JSON)."""
    return {
        "dqn_version": dqn.__version__,
        "git_commit": git_commit(),
        "library_versions": library_versions(PLOT_LIBRARIES),
    }


def record(game: str, seed: int, preset: str, config: dict, machine: dict) -> dict[str, Any]:
    """A file's provenance attributes; `machine`: what computed it (`dqn.devices.machine`)."""
    return {
        "dqn_version": dqn.__version__,
        "git_commit": git_commit(),
        "game": game,
        "seed": seed,
        "preset": preset,
        "config": json.dumps(config, sort_keys=True),
        "library_versions": json.dumps(library_versions(), sort_keys=True),
        "machine": json.dumps(machine, sort_keys=True),
        "created": utc_now(),
    }


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
