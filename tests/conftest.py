"""Settings and helpers that several test files share: dqn's command line, the workflow
copied and run with Snakemake, runs compared snapshot by snapshot, evaluation files
written by hand."""

import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from dqn import h5io, presets, provenance
from dqn.devices import machine

# One torch thread in the test process: results then match the `--threads 1`
# subprocesses bit for bit, and two busy cores do not starve each other.
torch.set_num_threads(1)


# -- dqn's command line, in a subprocess as a user runs it --
DQN = [sys.executable, "-m", "dqn.cli"]


def dqn(*args, cwd=None, timeout=300, check=False):
    return subprocess.run(
        [*DQN, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def train_args(game, seed=0, *, preset="ci", progress_s=None, overrides=()):
    """`dqn train`'s arguments, less `--out`, for a run on the CPU on one torch thread: the
    same numbers run after run, and one core each beside the other tests' runs.
    progress_s None: the CLI's default."""
    args = ["train", "--game", game, "--preset", preset, "--seed", str(seed)]
    args += ["--device", "cpu", "--threads", "1"]
    if progress_s is not None:
        args += ["--progress-s", str(progress_s)]
    return args + [f"--set={override}" for override in overrides]


def full_epochs(config) -> int:
    """The full epochs that a run of `config` makes: `config.epoch_steps` agent steps each
    after the replay start, which the first also plays (epoch_counted_in=updates), or
    ending at each multiple of `config.epoch_steps` past the replay start (steps); steps
    left short of an epoch make none."""
    if config.epoch_counted_in == "steps":
        return (
            config.train_steps // config.epoch_steps
            - config.replay_start_steps // config.epoch_steps
        )
    return (config.train_steps - config.replay_start_steps) // config.epoch_steps


def epoch_end_step(config, epoch: int) -> int:
    """The agent step at which a run of `config` ends its full epoch `epoch` (counted in
    updates: where its replay start is a whole number of update periods)."""
    if config.epoch_counted_in == "steps":
        return (config.replay_start_steps // config.epoch_steps + epoch) * config.epoch_steps
    return config.replay_start_steps + epoch * config.epoch_steps


ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """scripts/NAME (a Python script without the .py suffix) as a module, to call its
    functions."""
    loader = importlib.machinery.SourceFileLoader(
        name.replace("-", "_"), str(ROOT / "scripts" / name)
    )
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


# -- the workflow, copied into a directory and run there --
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs", "dqn")


def copy_workflow(directory: Path) -> Path:
    for name in WORKFLOW_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, directory / name)
    return directory


def venv_env() -> dict[str, str]:
    # The rules call `python`: let it be this interpreter, as an activated venv would.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(directory: Path, *args, timeout=300, env=None):
    """Snakemake run in `directory`; `env`: its environment, else the venv's (venv_env)."""
    return subprocess.run(
        [*SNAKEMAKE, *args],
        cwd=directory,
        env=env or venv_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_breakout_training(directory: Path, *args, stdout):
    """Snakemake started in `directory`, a copied workflow, on the ci config up to its one
    training job, Breakout seed 0 (results/runs/Breakout/seed0), for a test to stop;
    `args` say how it runs jobs (cores and retries, or a profile)."""
    (directory / "seed0.yaml").write_text("seeds: [0]\n")  # --config would give '0', text
    return subprocess.Popen(
        [
            *SNAKEMAKE,
            *args,
            "--configfile",
            "config/ci.yaml",
            "seed0.yaml",
            "--config",
            "games=[Breakout]",
            "--until",
            "train",
        ],
        cwd=directory,
        env=venv_env(),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
    )


def planned_jobs(result) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = result.stdout + result.stderr
    stats = table[table.index("Job stats:") :].splitlines()[3:]
    return {
        m.group(1): int(m.group(2))
        for line in stats
        if (m := re.match(r"(\w+)\s+(\d+)$", line)) and m.group(1) != "total"
    }


# -- training runs --
def weights(path):
    with h5py.File(path, "r") as f:
        return {name: f["weights"][name][()] for name in f["weights"]}


def assert_same_weights(run, reference):
    """Every snapshot of `reference` exists in `run` with bit-identical weights."""
    for epoch in reference.snapshot_epochs():
        ours, theirs = weights(run.snapshot(epoch)), weights(reference.snapshot(epoch))
        assert all(np.array_equal(ours[k], theirs[k]) for k in theirs), f"epoch {epoch} differs"


def wait_for(path, process, timeout_s=240):
    """Until `path` exists, `process` (a Popen) has ended, or `timeout_s` have passed."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


# -- how a file's arrays are stored --
# h5io.archive's: gzip over shuffled bytes, with a checksum
ARCHIVED = ("gzip", True, True)


def array_filters(path):
    """The filters (compression, shuffle, checksum) of the arrays of one or more
    dimensions in the HDF5 file `path`, each once."""
    found = set()
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda _, node: (
                found.add((node.compression, node.shuffle, node.fletcher32))
                if isinstance(node, h5py.Dataset) and node.ndim
                else None
            )
        )
    return found


# -- files written by hand --
def provenance_of(game, seed, preset="ci"):
    """A file's provenance attributes, as this process on the CPU writes them."""
    return provenance.record(
        game, seed, preset, presets.load(preset).as_dict(), machine(torch.device("cpu"))
    )


# -- evaluation files --
# The paper's Table 1 (its Random and Human rows normalise scores), from the repository root.
PAPER_TABLE = "workflow/data/table1_paper2013.csv"


def write_evaluation(
    path, game, seed, average_reward, average_max_q, preset="ci", epochs=None, episodes=3, **config
):
    """An evaluation file of `preset` (its `config` keys changed as given): a row per epoch
    (1, 2, ... unless `epochs`), each of `episodes` games (a list: per row) returning its
    average reward."""
    n = len(average_reward)
    settings = {**presets.load(preset).as_dict(), **config}
    attrs = provenance.record(game, seed, preset, settings, machine(torch.device("cpu")))
    epochs = np.arange(1, n + 1) if epochs is None else np.asarray(epochs)
    attrs.update(run="r", trained_by=provenance.trained_by(dict.fromkeys(epochs, attrs)))
    episodes = np.broadcast_to(np.asarray(episodes, np.int64), (n,))
    h5io.write(
        path,
        "evaluation",
        attrs,
        {
            "epoch": epochs,
            "step": epochs * 100,
            "update": epochs * 50,
            "average_reward": np.asarray(average_reward, float),
            "best_episode_reward": np.asarray(average_reward, float) + 10,
            "episodes": episodes,
            "average_max_q": np.asarray(average_max_q, float),
            "episode_returns": np.repeat(np.asarray(average_reward, float), episodes),
        },
    )
    return path
