"""What each kind of HDF5 file dqn writes holds: its attributes, with their types, and
its datasets, with their dtypes and shapes. One layout per kind; `dqn.h5io` checks a file
against its kind's layout when it writes one and before it reads anything from one, so a
file that does not fit is refused with its name and the item at fault, and a reader never
meets a missing, extra or mis-shaped item halfway through its work."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from dqn.errors import DataFileError
from dqn.frames import FRAME_PIXELS, HISTORY_FRAMES

# The layouts below are those of this format; `dqn.migrate` reads older ones as this.
FORMAT_VERSION = 2


@dataclass(frozen=True)
class Json:
    """An attribute that is a JSON object stored as a string, with at least `keys`."""

    keys: tuple[str, ...] = ()


# A dimension: an int is that length; a str names a length that must be the same
# wherever the name appears in one file (the rows of one table); None is any length.
Dim = int | str | None


@dataclass(frozen=True)
class Array:
    dtype: str  # numpy's name, e.g. "uint8"
    shape: tuple[Dim, ...] | None  # None: any number of dimensions

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.dtype} of any shape"
        dims = ", ".join("any" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} of shape ({dims}{',' if len(self.shape) == 1 else ''})"


@dataclass(frozen=True)
class Layout:
    """`arrays`: names, or patterns with '*' (one or more datasets); names under a
    prefix in `optional` may be absent, all together (a part that only some games have)."""

    attrs: dict[str, type | Json]
    arrays: dict[str, Array] = field(default_factory=dict)
    optional: tuple[str, ...] = ()

    def spec(self, name: str) -> Array | None:
        if name in self.arrays:
            return self.arrays[name]
        return next(
            (a for p, a in self.arrays.items() if "*" in p and fnmatch.fnmatchcase(name, p)), None
        )

    def nested(self, prefix: str) -> dict[str, Array]:
        return {f"{prefix}/{name}": array for name, array in self.arrays.items()}


# Written by `dqn.h5io.write` into every file.
FILE_ATTRS = {"kind": str, "format_version": int, "complete": bool}
# `dqn.devices.machine`: the machine that computed the file. Not part of a run's identity
# (`dqn.rundir.IDENTITY_KEYS`): a run may continue on another machine.
MACHINE = Json(
    ("cpu", "cpu_vendor", "torch_cpu_capability", "torch_threads", "kernel_settings", "device")
)
# `dqn.provenance.record`: what made the file.
PROVENANCE = {
    "dqn_version": str,
    "git_commit": str,
    "game": str,
    "seed": int,
    "preset": str,
    "config": Json(),
    "library_versions": Json(),
    "machine": MACHINE,
    "created": str,
}
COUNTERS = {"epoch": int, "step": int, "update": int}  # where the run stood
# `dqn.provenance.trained_by`: the code that trained the snapshots a file evaluated.
TRAINED_BY = Json(("snapshots",))
# The training log's two tables (`dqn.trainlog`), with each column's dtype.
EPISODE_COLUMNS = {
    "return": "float64",
    "length_steps": "int64",
    "end_step": "int64",
    "epoch": "int64",
    "game_over": "int64",
}
EPOCH_COLUMNS = {
    "epoch": "int64",
    "step": "int64",
    "update": "int64",
    "episodes": "int64",
    "loss_mean": "float64",
    "epsilon": "float64",
    "steps_per_s": "float64",
    "updates_per_s": "float64",
    "wall_s": "float64",
}
# A replay entry, one per agent step (`dqn.replay`): each column's dtype and shape.
# Rewards are kept unclipped.
REPLAY_COLUMNS = {
    "frames": ("uint8", (FRAME_PIXELS, FRAME_PIXELS)),
    "actions": ("uint8", ()),  # at most 18 Atari actions
    "rewards": ("float32", ()),
    "terminals": ("bool", ()),
    "episode_starts": ("bool", ()),
}

WEIGHTS = {"weights/*": Array("float32", None)}  # the Q-network's state_dict
TRAIN_LOG = Layout(
    {**PROVENANCE, **COUNTERS},
    {
        **{
            f"episodes/{name}": Array(dtype, ("episodes",))
            for name, dtype in EPISODE_COLUMNS.items()
        },
        **{f"epochs/{name}": Array(dtype, ("epochs",)) for name, dtype in EPOCH_COLUMNS.items()},
    },
)
REPLAY_DELTA = Layout(
    {**PROVENANCE, **COUNTERS, "start": int, "stop": int},
    {name: Array(dtype, ("entries", *shape)) for name, (dtype, shape) in REPLAY_COLUMNS.items()},
)
# `dqn.checkpoint.save`: the training state but for the weights and the replay entries.
RESUME_STATE = Layout(
    {
        **PROVENANCE,
        **COUNTERS,
        "replay_added": int,
        # `Counters` and `Player.bookkeeping`; the environment's own; a NumPy bit generator's
        "counters": Json(("epoch", "step", "episode_return", "episode_steps", "starts_episode")),
        "env": Json(("rng",)),
        "agent_rng": Json(("bit_generator", "state")),
    },
    {
        "learner/*": Array("float32", None),
        "env/stack": Array("uint8", (HISTORY_FRAMES, FRAME_PIXELS, FRAME_PIXELS)),
        "env/ale": Array("uint8", ("ale_state_bytes",)),  # Atari only: the emulator's state
        **TRAIN_LOG.nested("log"),
    },
    optional=("env/ale",),
)
# The kinds of file a training state is saved as (`dqn.checkpoint.save`): an epoch's
# files, or the parts of one interrupt file, whose arrays lie under KIND/...
CHECKPOINT = {
    "replay_delta": REPLAY_DELTA,
    "resume_state": RESUME_STATE,
    "snapshot": Layout({**PROVENANCE, **COUNTERS}, WEIGHTS),
}
# Everything since the newest snapshot, in one file (`dqn.checkpoint.save_interrupted`).
SINCE_SNAPSHOT = Layout(
    {
        **{name: t for layout in CHECKPOINT.values() for name, t in layout.attrs.items()},
        "meter": Json(
            (
                "loss_sum",
                "losses",
                "epoch_elapsed_s",
                "epoch_start_step",  # `Meter.epoch_in_progress`
                "epoch_start_update",
            )
        ),
    },
    {
        name: array
        for kind, layout in CHECKPOINT.items()
        for name, array in layout.nested(kind).items()
    },
    optional=("resume_state/env/ale",),
)

EVALUATION_COLUMNS = {
    "epoch": "int64",
    "step": "int64",
    "update": "int64",
    "average_reward": "float64",
    "best_episode_reward": "float64",
    "episodes": "int64",
    "average_max_q": "float64",
}

LAYOUTS = {
    "heldout": Layout(
        PROVENANCE,
        {"states": Array("uint8", ("states", HISTORY_FRAMES, FRAME_PIXELS, FRAME_PIXELS))},
    ),
    **CHECKPOINT,
    "train_log": TRAIN_LOG,
    "interrupted": SINCE_SNAPSHOT,
    "diverged": SINCE_SNAPSHOT,
    "complete": Layout({**PROVENANCE, **COUNTERS, "snapshot": str}),
    "evaluation": Layout(
        {**PROVENANCE, "run": str, "trained_by": TRAINED_BY},
        {
            **{name: Array(dtype, ("snapshots",)) for name, dtype in EVALUATION_COLUMNS.items()},
            # the return of every episode completed, snapshot after snapshot (`episodes` of
            # each: `episode_returns` below splits them)
            "episode_returns": Array("float64", ("completed_episodes",)),
        },
    ),
    "value_trace": Layout(
        {
            **PROVENANCE,
            **COUNTERS,
            "run": str,
            "snapshot": str,
            "trained_by": TRAINED_BY,
            "epsilon": float,
            "episode_ended": bool,
            "frame_skip_frames": int,
        },
        {
            "frames": Array("uint8", ("steps", FRAME_PIXELS, FRAME_PIXELS)),
            "screens": Array("uint8", ("steps", None, None, 3)),  # RGB
            "q": Array("float64", ("steps", "actions")),
            "max_q": Array("float64", ("steps",)),
            "actions": Array("int64", ("steps",)),
            "rewards": Array("float64", ("steps",)),
        },
    ),
}


def episode_returns(table: dict) -> list[np.ndarray]:
    """Each snapshot's completed episodes' returns, from an evaluation table. Here, not in
    `dqn.evaluate`, so that the figures (which may not import torch) can read them too."""
    ends = np.cumsum(table["episodes"])
    if len(table["episode_returns"]) != (ends[-1] if len(ends) else 0):
        raise DataFileError(
            f"episode_returns holds {len(table['episode_returns'])} returns, "
            f"the episodes column counts {ends[-1] if len(ends) else 0}"
        )
    return np.split(table["episode_returns"], ends[:-1])


def return_sd(returns: np.ndarray) -> float | None:
    """The sample standard deviation (n - 1) of one snapshot's episode returns: the spread
    that every table and figure quotes; none where fewer than two episodes ended."""
    return float(np.std(returns, ddof=1)) if len(returns) > 1 else None
