"""The wheels the lent GPU machine lacks: fetched here (`scripts/device-check --prepare`),
installed there, offline, before the device check imports anything of dqn's.

That machine is bare and offline. Its python3 is Python 3.12 with torch 2.11 (CUDA 13),
numpy, h5py, OpenCV, matplotlib, tensorboard, imageio and pillow, and no ale-py or
pydantic, gymnasium or snakemake. The working tree travels to it, 64 MiB at most with
everything carried, so the missing packages travel as wheels for CPython 3.12 on
manylinux x86-64, at requirements.lock's versions, in an ignored folder (.whl/) that the
device call carries. Snakemake and its dependencies are too heavy to carry and `dqn`
does not import them: the device check starts its `dqn train` jobs itself.

Standard library only: it runs before the packages it installs can be imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dqn.atomic import atomic_write  # the standard library only, as this module

ROOT = Path(__file__).resolve().parents[1]
WHEEL_DIR = ROOT / ".whl"
# Written by --prepare: the commit the wheels were fetched at (the tree travels without .git).
COMMIT_FILE = WHEEL_DIR / "COMMIT"
# The GPU machine's versions, as sessions saw them there in 2026-11 (pyproject.toml's
# bounds admit them: tests/test_envs.py).
GPU_MACHINE = {"python": "3.12.3", "torch": "2.11.0", "numpy": "2.5.2"}
# pyproject.toml's dependencies that the GPU machine lacks (ale-py and pydantic, which
# `dqn` imports; gymnasium, which it declares and records in every file's provenance),
# and what those need beyond its packages. It has typing-extensions, at a version nobody
# has read there; pydantic needs a recent one, so it travels too (newer releases only add
# names).
CARRIED = (
    "ale-py",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "gymnasium",
    "farama-notifications",
    "typing-extensions",
)
CARRIED_MODULES = ("ale_py", "pydantic")
# pip matches manylinux tags exactly: the ones these wheels are published under.
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
PYTHON_VERSION = "3.12"
# The device check's JSON summary (dqn/devicecheck.py), named here because its first form
# is written before the installation, when nothing that imports the carried packages can be.
SUMMARY = "device_check.json"
TREE_LIMIT_BYTES = 64 * 2**20  # what travels to the device machine: tree and carried paths
# The room the tree must leave for the wheels: they were 6.1 MiB at requirements.lock's
# pins (scripts/device-check --prepare, 2026-12-06), and a pin's update may grow them.
WHEEL_ROOM_BYTES = 8 * 2**20


def canonical(name: str) -> str:
    """A package name as PyPI compares them (PEP 503)."""
    return name.lower().replace("_", "-").replace(".", "-")


def locked_versions(lock: Path = ROOT / "requirements.lock") -> dict[str, str]:
    """requirements.lock's pins, by canonical name."""
    pins = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[canonical(name)] = version.strip()
    return pins


def prepare() -> int:
    """Download the carried wheels into WHEEL_DIR (only those: one version of each) and
    report what travels; 1 if it is over the limit."""
    pins = locked_versions()
    WHEEL_DIR.mkdir(exist_ok=True)
    for old in WHEEL_DIR.glob("*.whl"):
        old.unlink()
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            *platforms,
            "--dest",
            str(WHEEL_DIR),
            *(f"{name}=={pins[name]}" for name in CARRIED),
        ],
        check=True,
    )
    COMMIT_FILE.write_text(git_commit() + "\n")
    wheels = sorted(WHEEL_DIR.glob("*.whl"))
    for wheel in wheels:
        print(f"{wheel.stat().st_size:>12,}  {wheel.relative_to(ROOT)}")
    wheel_bytes = sum(wheel.stat().st_size for wheel in wheels)
    tree = tree_bytes()
    total = tree + wheel_bytes
    print(
        f"{wheel_bytes:>12,}  the {len(wheels)} wheels\n{tree:>12,}  the working tree that "
        f"travels\n{total:>12,}  in all ({total / 2**20:.1f} MiB of "
        f"{TREE_LIMIT_BYTES / 2**20:.0f} MiB)"
    )
    if total > TREE_LIMIT_BYTES:
        print(
            "scripts/device-check --prepare: over the limit: ignore or carry less", file=sys.stderr
        )
        return 1
    print(f"Carry {WHEEL_DIR.relative_to(ROOT)} to the GPU machine with the tree.")
    return 0


def tree_bytes() -> int:
    """The bytes of what travels besides carried paths: tracked files, and untracked
    ones git does not ignore."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    paths = {ROOT / os.fsdecode(name) for name in listed.split(b"\0") if name}
    return sum(path.stat().st_size for path in paths if path.is_file())


def git_commit() -> str:
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def install() -> Path | None:
    """Where the carried wheels were installed (pip, offline), put first on sys.path and
    PYTHONPATH; None if their packages can be imported already (this machine)."""
    missing = [name for name in CARRIED_MODULES if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    wheels = sorted(WHEEL_DIR.glob("*.whl"))
    if not wheels:
        raise SystemExit(
            f"scripts/device-check: {', '.join(missing)} cannot be imported and "
            f"{WHEEL_DIR} holds no wheels: run `scripts/device-check --prepare` "
            "where pip reaches PyPI, and carry .whl"
        )
    site = Path(tempfile.gettempdir()) / "dqn-device-check-site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--target",
            str(site),
            *map(str, wheels),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # pip's own words, for the summary that records the failure
        raise SystemExit(
            f"scripts/device-check: pip could not install the wheels of {WHEEL_DIR} (exit "
            f"{done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    importlib.invalidate_caches()
    return site


def install_recorded(out: Path) -> dict:
    """install(), recorded: the Python and the wheels written to `out`'s SUMMARY before pip
    runs, so that the device tool brings something back even where the installation fails
    (pip refuses a wheel, or is missing), and then its error too, before the SystemExit
    that ends the check. The record, for the summary to keep, where it succeeds."""
    record = {
        "python_version": platform.python_version(),
        "python": sys.executable,
        "wheels": [wheel.name for wheel in sorted(WHEEL_DIR.glob("*.whl"))],
    }
    write_summary(out, {"install": record})
    started = time.monotonic()
    try:
        site = install()
    except (Exception, SystemExit) as error:  # noqa: BLE001 - recorded, then raised
        record["error"] = str(error) or repr(error)
        write_summary(out, {"install": record})
        raise
    record["site"] = str(site) if site else None  # None: the packages were importable
    record["install_s"] = round(time.monotonic() - started, 1)
    return record


def write_summary(out: Path, summary: dict) -> None:
    """The device check's JSON summary, replaced whole: the device tool may kill the check
    at any moment, and a half-written file would lose everything measured before."""
    text = json.dumps(summary, indent=2, default=str) + "\n"
    atomic_write(out / SUMMARY, lambda tmp: tmp.write_text(text))


def prepared_commit() -> str | None:
    """The commit --prepare recorded, if it ran."""
    return COMMIT_FILE.read_text().strip() if COMMIT_FILE.exists() else None
