"""Files of older formats, read as this format's: the one place that knows them.

`dqn.h5io` calls `upgrade` on every file it reads, before it checks the file against
its kind's layout (`dqn.layouts`, which declares only FORMAT_VERSION), so no other
module meets an old name. A file of a format that is neither this one nor listed here
is refused in one line naming its version.

A config stored before a key was added to format 2 lacks it, and reads with the value
its run had in effect (`with_keys_added_since`). A file written before its provenance
recorded the machine (every file of format 1, the older ones of format 2) reads with a
`machine` that says so (MACHINE_NOT_RECORDED); an evaluation or a trace written before it
recorded the code that trained its snapshots, with a `trained_by` that says so
(TRAINED_BY_NOT_RECORDED).

Format 1 (the code before commit 0438c55, dqn 0.1.0 as now) differs from format 2 in
three things:
- its stored configs may lack keys added since, or use keys renamed since;
- a resume state names the player's `next_is_episode_start` so, and keeps its count of
  finished episodes (`episode`), which nothing reads;
- an interrupt file keeps its parts under delta/, state/, log/ and snapshot/, the log
  twice (state/log/ holds the same arrays).
"""

from __future__ import annotations

import json
from typing import Any

from dqn import presets
from dqn.errors import DataFileError
from dqn.layouts import FORMAT_VERSION, LAYOUTS, MACHINE

# Format 1's configs: keys added since some runs were stored, with the value those runs
# had in effect, and keys renamed, with how the old value reads.
ADDED_KEYS = {
    "optimizer": "rmsprop",
    "adam_epsilon": 1e-8,
    "fire_on_reset": False,
    "max_grad_norm": 0.0,
    "epsilon_anneal_from": "replay_start",
    "noop_start": "steps",
    "life_loss_cuts_frame_skip": False,
    "network_init": "fan_in_uniform",
    "cuda_graph_update": False,
    "cuda_deterministic": False,
}
# The presets whose action_set was "xitari" when the key was added to format 2's
# configs (with_keys_added_since).
XITARI_PRESETS_WHEN_ADDED = ("nature2015",)
# The presets whose epoch_counted_in was "steps" when the key was added.
STEP_EPOCH_PRESETS_WHEN_ADDED = ("nature2015",)
RENAMED_KEYS = {
    # the no-op count was named in steps although frames_at_reset counted frames
    "max_noop_start_steps": ("noop_max", lambda value, config: value),
    # the target period was counted in updates; the same period in agent steps (the
    # refresh lands at most update_period_steps - 1 steps later, before the next update)
    "target_update_period_updates": (
        "target_update_period_steps",
        lambda value, config: value * config["update_period_steps"],
    ),
}
# Format 1's names of the player's bookkeeping in a resume state's counters, and its
# count of finished episodes, which nothing reads.
RENAMED_COUNTERS = {"next_is_episode_start": "starts_episode"}
DROPPED_COUNTERS = ("episode",)
# Format 1's parts of an interrupt file, by the kind of file each is in format 2.
RENAMED_PARTS = {"delta/": "replay_delta/", "state/": "resume_state/"}
# state/log/ holds the same arrays; in the files of format 1's first weeks, whose resume
# states held no log yet, the interrupt file's log/ is the only copy, and is the state's.
DUPLICATE_PART = "log/"
SINCE_SNAPSHOT = ("interrupted", "diverged")
# The machine of a file written before provenance recorded it: every key says so, so
# that a reader of any one key learns it.
MACHINE_NOT_RECORDED = {
    key: "not recorded (written before dqn recorded the machine)" for key in MACHINE.keys
}
# The code that trained the snapshots an evaluation or a trace played
# (`dqn.provenance.trained_by`), in a file written before it was recorded: their
# snapshots, where the run still has them, record it.
TRAINED_BY_NOT_RECORDED = {
    "snapshots": "not recorded (written before dqn recorded the code that trained them)"
}


def upgrade(
    path: Any, kind: str, attrs: dict[str, Any], arrays: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A file's attributes and its arrays (by name; any objects, such as HDF5 datasets
    not read yet) as format FORMAT_VERSION has them."""
    version = attrs.get("format_version")
    if version not in (FORMAT_VERSION, 1):
        raise DataFileError(
            f"{path}: format version {version!r}, which this dqn does not "
            f"read (it reads {FORMAT_VERSION} and 1)"
        )
    if "machine" not in attrs:
        attrs = {**attrs, "machine": json.dumps(MACHINE_NOT_RECORDED, sort_keys=True)}
    # the kinds whose layout declares it: those that play snapshots
    if "trained_by" in LAYOUTS[kind].attrs and "trained_by" not in attrs:
        attrs = {**attrs, "trained_by": json.dumps(TRAINED_BY_NOT_RECORDED)}
    config = _json_object(attrs.get("config"))
    if version == FORMAT_VERSION:
        if config is not None and (added := with_keys_added_since(config, attrs)) is not config:
            attrs = {**attrs, "config": json.dumps(added, sort_keys=True)}
        return attrs, arrays
    attrs = {**attrs, "format_version": FORMAT_VERSION}
    if config is not None:
        attrs["config"] = json.dumps(
            with_keys_added_since(format1_config(config), attrs), sort_keys=True
        )
    if (counters := _json_object(attrs.get("counters"))) is not None:
        attrs["counters"] = json.dumps(
            {
                RENAMED_COUNTERS.get(k, k): v
                for k, v in counters.items()
                if k not in DROPPED_COUNTERS
            }
        )
    if kind in SINCE_SNAPSHOT:
        state_log = "state/" + DUPLICATE_PART
        duplicate = any(name.startswith(state_log) for name in arrays)
        renamed = {}
        for name, value in arrays.items():
            if name.startswith(DUPLICATE_PART):
                if not duplicate:
                    renamed[RENAMED_PARTS["state/"] + name] = value
                continue
            old = next((p for p in RENAMED_PARTS if name.startswith(p)), "")
            renamed[RENAMED_PARTS.get(old, "") + name.removeprefix(old)] = value
        arrays = renamed
    return attrs, arrays


def format1_config(config: dict) -> dict:
    """A config stored by format 1, as this version's keys."""
    config = {**ADDED_KEYS, **config}
    for old, (new, convert) in RENAMED_KEYS.items():
        if old in config:
            config[new] = convert(config.pop(old), config)
    return config


def with_keys_added_since(config: dict, attrs: dict[str, Any]) -> dict:
    """`config`, stored with `attrs` (its run's game and preset), with the keys added to
    format 2 since it was first written (action_set, resize, terminal_takes_step,
    epoch_counted_in), where it lacks them; `config` itself where it lacks none."""
    added = {}
    if "action_set" not in config:
        # Such a run played ale-py's minimal sets. On a game whose set in Xitari is the
        # same, both values are that run: it takes its preset's value when the key came,
        # and so continues under its preset.
        same = attrs.get("game") not in presets.XITARI_ACTIONS
        xitari = same and attrs.get("preset") in XITARI_PRESETS_WHEN_ADDED
        added["action_set"] = "xitari" if xitari else "ale_py"
    if "resize" not in config:
        added["resize"] = "bilinear"  # such a run shrank its screens so, either preset
    if "terminal_takes_step" not in config:
        added["terminal_takes_step"] = False  # such a run counted no step at an episode's end
    if "epoch_counted_in" not in config:
        # Such a run counted its epochs in updates. Where its replay start is a whole
        # number of epochs, counting in steps ends the same epochs: it takes its preset's
        # value when the key came, and so continues under its preset.
        epoch_steps = config.get("epoch_updates", 0) * config.get("update_period_steps", 0)
        same = epoch_steps > 0 and config.get("replay_start_steps", 1) % epoch_steps == 0
        in_steps = same and attrs.get("preset") in STEP_EPOCH_PRESETS_WHEN_ADDED
        added["epoch_counted_in"] = "steps" if in_steps else "updates"
    return {**config, **added} if added else config


def _json_object(text: Any) -> dict | None:
    """`text` read as a JSON object; None if it is not one (the layout check then says
    what is wrong with the attribute)."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
