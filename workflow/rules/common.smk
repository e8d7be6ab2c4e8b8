# Helpers shared by the rules: config validation, the resolved preset, paths.
import math
import os
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The presets are read from this checkout's `dqn` (they need no third-party package),
# so Snakemake itself may run from any environment.
PROJECT_ROOT = Path(workflow.basedir).resolve()
sys.path.insert(0, str(PROJECT_ROOT))
from dqn import presets
from dqn.errors import ConfigError

SCHEMA = "../schemas/config.schema.yaml"
validate(config, SCHEMA)

# The schema names the workflow's own keys; every other key is a preset override.
with open(workflow.source_path(SCHEMA)) as schema_file:
    WORKFLOW_KEYS = set(yaml.safe_load(schema_file)["properties"])


def preset_overrides():
    """The config's preset overrides as `key=value` strings for `dqn train --set`."""
    return [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in sorted(config.items())
        if key not in WORKFLOW_KEYS
    ]


def preset_name(game):
    """The preset `game` trains with: its own in `game_presets` (Catch: catch), else `preset`."""
    return config["game_presets"].get(game, config["preset"])


def game_overrides(game):
    """The overrides of `game`'s run: the config's, unless the game has a preset of its own."""
    return [] if game in config["game_presets"] else preset_overrides()


def resolved_preset(game):
    """`game`'s preset with its overrides applied, checked by dqn itself before any job."""
    try:
        return presets.load(preset_name(game), game_overrides(game))
    except ConfigError as error:
        message = str(error).removeprefix("--set ")
        raise WorkflowError(
            f"config: {message} (preset {preset_name(game)!r}; keys other than "
            f"{', '.join(sorted(WORKFLOW_KEYS))} override preset keys)"
        ) from None


PRESETS = {game: resolved_preset(game) for game in config["games"]}


def set_args(wildcards):
    return " ".join(f"--set {shlex.quote(item)}" for item in game_overrides(wildcards.game))


# The rules run the `dqn` package of this checkout with the interpreter of their
# environment (the activated venv, or the rule's conda env, which holds only the
# dependencies). Jobs inherit PYTHONPATH from the Snakemake process that parsed this
# file (on a cluster too, where each job parses it again), which points it at this
# checkout only; keeping the path out of the command keeps the rules' parameters the
# same wherever the checkout lies, so a moved checkout does not retrain.
os.environ.update(PYTHONPATH=str(PROJECT_ROOT))
# `exec`: the job's shell becomes `dqn`, so the SIGTERM that SLURM (time limit,
# preemption) or Snakemake sends to the job reaches the process that saves the run.
DQN = "exec python -m dqn.cli"

# A job that may run on a GPU asks for one (`--resources gpu=N` locally, the allocation
# on SLURM); with `device: cpu` it asks for none, so a cluster without GPUs runs it.
GPU_JOB = 0 if config["device"] == "cpu" else 1
DEVICE_ARGS = f"--device {config['device']} --jobs-per-gpu {config['jobs_per_gpu']}"

# 2013 Figure 2 shows Breakout and Seaquest.
FIGURE2_GAMES = [game for game in ("Breakout", "Seaquest") if game in config["games"]]
PAPER_TABLE = "workflow/data/table1_paper2013.csv"
# Table 1 has a column for each of the paper's games; a test task (Catch) has none.
with open(workflow.source_path(f"../../{PAPER_TABLE}")) as table_file:
    PAPER_TABLE_GAMES = next(l for l in table_file if not l.startswith("#")).strip().split(",")[1:]
TABLE1_GAMES = [game for game in config["games"] if game in PAPER_TABLE_GAMES]

RUN_DIR = "results/runs/{game}/seed{seed}"
# Written by `dqn train` last, once the run is complete (it names the final snapshot).
COMPLETE = os.path.join(RUN_DIR, "complete.h5")
EVALUATION = "results/eval/{game}/seed{seed}.h5"
TRACE = "results/traces/{game}/seed{seed}.h5"


wildcard_constraints:
    game="|".join(config["games"]),
    seed=r"\d+",
    curves="figure2|all_games",


def train_mem_mb(preset):
    """Memory of a training job: the replay ring (one 84x84 frame per transition, as
    dqn/replay.py stores it) plus the held-out states and 2 GB for torch and the ALE."""
    frame_bytes = 84 * 84
    replay_bytes = preset.replay_capacity_transitions * (frame_bytes + 16)
    heldout_bytes = preset.heldout_states * 4 * frame_bytes
    return math.ceil((replay_bytes + heldout_bytes) / 2**20) + 2048


def train_runtime_min(preset):
    """Time limit of a training job at the assumed speed, with 50 % to spare."""
    return math.ceil(1.5 * preset.train_steps / config["runtime_steps_per_s"] / 60) + 10


def run_dir(wildcards):
    return RUN_DIR.format(**wildcards)


def prefix(wildcards, output):
    """An output's path without its extension: `dqn plot` adds .png, .pdf, .json."""
    return os.path.splitext(output[0])[0]


def evaluations(games):
    return expand(EVALUATION, game=games, seed=config["seeds"])


def curve_games(wildcards):
    return FIGURE2_GAMES if wildcards.curves == "figure2" else config["games"]


def value_function_run():
    """Figure 3 comes from one run: the configured game (Seaquest) and the first seed."""
    return {"game": config["value_function_game"], "seed": config["seeds"][0]}


def final_products():
    curves = ["all_games"] + (["figure2"] if FIGURE2_GAMES else [])
    products = expand("results/figures/training_curves_{curves}.{ext}", curves=curves,
                      ext=("png", "pdf", "json"))
    if TABLE1_GAMES:
        products += expand("results/figures/table1.{ext}", ext=("png", "pdf", "json"))
        products += expand("results/tables/table1.{ext}", ext=("csv", "md", "tex"))
    if config["value_function_game"] in config["games"]:
        products += expand("results/figures/value_function.{ext}", ext=("png", "pdf", "json"))
    return products
