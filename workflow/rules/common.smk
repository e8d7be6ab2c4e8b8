# Helpers shared by the rules: config validation, the resolved preset, paths.
import contextlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match
from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod
from snakemake.utils import validate

# The games, presets and replay layout are read from this checkout's `dqn`, where they
# are declared, so Snakemake runs from an environment with dqn's dependencies but torch:
# pydantic (the presets), numpy (the replay layout), opencv and ale-py (the games' module),
# h5py (the runs' files, read to compare a run's config with the one asked).
# The project's venv has them.
PROJECT_ROOT = Path(workflow.basedir).resolve()
sys.path.insert(0, str(PROJECT_ROOT))
from dqn import games, h5io, presets, replay
from dqn.errors import ConfigError, DataFileError
from dqn.rundir import (
    RunDir, continues_with_its_settings, describe_differences, run_differences
)
from dqn.frames import FRAME_PIXELS, HISTORY_FRAMES

# The workflow's keys are declared in the schema file; the choices of its game and preset
# keys, and the preset keys allowed under preset_overrides with their types and ranges,
# in dqn only: they are added here.
with open(workflow.source_path("../schemas/config.schema.yaml")) as schema_file:
    SCHEMA = yaml.safe_load(schema_file)
KEYS = SCHEMA["properties"]
KEYS["preset"]["enum"] = KEYS["game_presets"]["additionalProperties"]["enum"] = list(
    presets.PRESETS
)
KEYS["games"]["items"]["enum"] = KEYS["game_presets"]["propertyNames"]["enum"] = list(games.GAMES)
KEYS["value_function_game"]["enum"] = list(games.PAPER_GAMES)
KEYS["preset_overrides"]["properties"] = presets.Config.model_json_schema()["properties"]

# JSON has one number type, so JSON Schema counts 300.0 as an integer and nan as a
# number; YAML tells them apart, and the jobs need integers and finite numbers.
STRICT_TYPES = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many({
        "integer": lambda checker, value: type(value) is int,
        "number": lambda checker, value: type(value) in (int, float) and math.isfinite(value),
    }),
)


def check_config():
    """Refuse a config the jobs could not run, before any job, naming the key."""
    for key in sorted(set(config) - set(SCHEMA["properties"])):
        # A preset key at the top level is a likely slip: say where it belongs.
        if key in presets.Config.model_fields:
            example = yaml.safe_dump({key: config[key]}, default_flow_style=True).strip()
            raise WorkflowError(f"config: {key} is not a workflow key; put preset overrides "
                                f"under preset_overrides: (preset_overrides: {example})")
        raise WorkflowError(f"config: {key}: unknown key; workflow keys: "
                            f"{', '.join(SCHEMA['properties'])}")
    # Snakemake reads a mapping given with --config as text (YAML's base loader):
    # `--config preset_overrides='{train_steps: 5000}'` gives '5000'. Text is read as
    # `dqn train --set` reads it, so the schema checks the same types as from a file;
    # text that is no value of its key stays text, for the schema to refuse.
    overrides = config.get("preset_overrides")
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            if isinstance(value, str) and key in presets.Config.model_fields:
                with contextlib.suppress(ConfigError):
                    overrides[key] = presets.parse(key, value)
    # One line naming the key, where Snakemake's validate() would print the whole schema.
    if error := best_match(STRICT_TYPES(SCHEMA).iter_errors(config)):
        raise WorkflowError(f"config: {schema_error(error)}")
    with tempfile.TemporaryDirectory() as directory:  # validate() reads the schema from a file
        schema_path = Path(directory, "config.schema.json")
        schema_path.write_text(json.dumps(SCHEMA))
        validate(config, str(schema_path))  # the config is valid: this fills in the defaults


def schema_error(error):
    """A schema error as KEY=VALUE: what is wrong (a pattern in the words of its key's
    description, a type in the jobs' terms)."""
    key = error.json_path.removeprefix("$").removeprefix(".") or "the config"
    if error.validator == "type" and error.validator_value in ("integer", "number"):
        expected = "an integer" if error.validator_value == "integer" else "a finite number"
        # Snakemake reads a list given with --config (seeds=[0,1]) as text items
        listed = (
            isinstance(error.instance, str)
            and any(isinstance(p, int) for p in error.path)
            and error.path[0] in workflow.config_settings.config
        )
        hint = " (--config gives a list's items as text: give the list in a config file)"
        return f"{key}={error.instance!r}: expected {expected}" + (hint if listed else "")
    if error.validator == "pattern":
        form = error.schema.get("description", f"of the form {error.validator_value}").strip()
        return f"{key}={error.instance!r}: must be {form}"
    return f"{key}: {error.message}"


check_config()


def preset_overrides():
    """The config's preset overrides as `key=value` strings for `dqn train --set`."""
    return [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in sorted(config.get("preset_overrides", {}).items())
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
            f"config: preset_overrides: {message} (preset {preset_name(game)!r})"
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
# Modules of pyproject.toml's dependencies that the jobs import: enough to tell dqn's
# environment from another.
JOB_MODULES = ("numpy", "h5py", "pydantic", "torch", "ale_py", "cv2", "matplotlib")


def check_interpreter():
    """Without --sdm conda (or a container) the jobs run `python` from PATH: refuse,
    before any job, one that cannot import what they need (say, a venv that was not
    activated), naming it, where each job would fail with a traceback in its log."""
    if {DeploymentMethod.CONDA, DeploymentMethod.APPTAINER} & set(
        workflow.deployment_settings.deployment_method
    ):
        return  # the rules' conda environments or the container hold the dependencies
    python = shutil.which("python")
    if python is None:
        raise WorkflowError("the jobs run `python`, and there is none on PATH: activate the "
                            "project's venv (. .venv/bin/activate), or add --sdm conda")
    # find_spec looks the modules up without importing them (torch takes seconds); the
    # answer is the last line, whatever the interpreter prints before it
    found = subprocess.run(
        [python, "-c", "import importlib.util as u, sys; "
         "print('missing:', *[m for m in sys.argv[1:] if u.find_spec(m) is None])",
         *JOB_MODULES],
        capture_output=True, text=True,
    )
    if found.returncode:
        failure = (found.stderr.strip().splitlines() or [f"exit status {found.returncode}"])[-1]
        lacks = f"its modules ({failure})"
    else:
        lacks = ", ".join(found.stdout.strip().splitlines()[-1].split()[1:])
    if lacks:
        raise WorkflowError(f"the jobs run `python` from PATH ({python}), which cannot import "
                            f"{lacks}: activate the project's venv (. .venv/bin/activate), "
                            "or add --sdm conda")


check_interpreter()

# A job that may run on a GPU asks for one (`--resources gpu=N` locally, the allocation
# on SLURM); with `device: cpu` it asks for none, so a cluster without GPUs runs it.
GPU_JOB = 0 if config["device"] == "cpu" else 1
# Where a job computes, not what: a resource of the rules that pass it (a string, which
# Snakemake does not count against a limit), not a param, which Snakemake reruns a
# finished job for (every evaluation of a finished workflow played again after a
# --config jobs_per_gpu=7).
DEVICE_ARGS = f"--device {config['device']} --jobs-per-gpu {config['jobs_per_gpu']}"

# 2013 Figure 2 shows Breakout and Seaquest.
FIGURE2_GAMES = [game for game in ("Breakout", "Seaquest") if game in config["games"]]
PAPER_TABLE = "workflow/data/table1_paper2013.csv"
# The paper's Figure 2 as read off its panels, drawn beside our training curves.
PAPER_FIGURE2 = "workflow/data/figure2_paper2013.csv"
# Table 1 has a column for each of the paper's games; a test task (Catch) has none.
with open(workflow.source_path(f"../../{PAPER_TABLE}")) as table_file:
    PAPER_TABLE_GAMES = next(l for l in table_file if not l.startswith("#")).strip().split(",")[1:]
TABLE1_GAMES = [game for game in config["games"] if game in PAPER_TABLE_GAMES]
# `dqn plot aggregate` writes figures/aggregate_<figure>.{png,pdf,json} for each
# (dqn.plots.AGGREGATE_FIGURES), over the same games as Table 1: those with a human score.
AGGREGATE_FIGURES = ("intervals", "sample_efficiency", "profile", "improvement")


def results(path):
    """`path` (a file pattern) in the config's `results` directory, where every output,
    log and benchmark of the workflow goes."""
    return os.path.join(config["results"], path)


RUN_DIR = results("runs/{game}/seed{seed}")
# Written by `dqn train` last, once the run is complete (it names the final snapshot).
COMPLETE = os.path.join(RUN_DIR, "complete.h5")


def run_of_these_settings(wildcards):
    """The training job's input: none. Refuses, as the plan is made (before any job), a
    job whose run directory holds a run of other settings (a config changed after its
    runs were made). `dqn train` would refuse it too, but only as the job ran: after
    Snakemake had replaced the run's log and recorded the new settings, so that the old
    config, given again, would retrain and evaluate again. Only the runs of the training
    jobs a plan holds (complete ones too) are checked: `snakemake bench` holds none and
    is not refused for them."""
    game, seed = wildcards.game, int(wildcards.seed)
    run = RunDir(run_dir(wildcards))  # the job's own
    if not run.heldout.exists():
        return []
    try:
        held = h5io.read_attrs(run.heldout, "heldout")
    except DataFileError:  # the job itself names it
        return []
    asked = {"config": json.dumps(PRESETS[game].as_dict(), sort_keys=True)}
    if found := run_differences({**asked, "game": game, "seed": seed}, held):
        raise WorkflowError(
            f"config: {run.root} holds a run of other settings "
            f"({describe_differences(found, 'this config:')}); {advice(game, found)}"
        )
    return []


def advice(game, found):
    """What to do about a run of other settings: give the config a directory of its own,
    or, where the config's overrides are the run's (not a game of game_presets), set them
    to the run's values."""
    text = "give this config a results directory of its own (key results)"
    if game not in config["game_presets"] and continues_with_its_settings(found):
        keep = yaml.safe_dump({key: theirs for key, theirs, _ in found}, default_flow_style=True)
        text += f", or continue that run with its settings (preset_overrides: {keep.strip()})"
    return text


EVALUATION = results("eval/{game}/seed{seed}.h5")
TRACE = results("traces/{game}/seed{seed}.h5")
VIDEO = results("videos/{game}/seed{seed}.mp4")


wildcard_constraints:
    game="|".join(config["games"]),
    seed=r"\d+",
    curves="figure2|all_games",


def train_mem_mb(preset):
    """Memory of a training job: the replay memory and a save of its first epoch's
    entries (dqn.replay.training_bytes, what `dqn train` checks it may use), the held-out
    states (stacks of uint8 frames) and 2 GB for torch and the ALE."""
    replay_bytes = replay.training_bytes(preset)
    heldout_bytes = preset.heldout_states * HISTORY_FRAMES * FRAME_PIXELS**2
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
    products = expand(results("figures/training_curves_{curves}.{ext}"), curves=curves,
                      ext=("png", "pdf", "json"))
    if TABLE1_GAMES:
        products += expand(results("figures/table1.{ext}"), ext=("png", "pdf", "json"))
        products += expand(results("tables/table1.{ext}"), ext=("csv", "md", "tex"))
        products += expand(results("figures/aggregate_{figure}.{ext}"),
                           figure=AGGREGATE_FIGURES, ext=("png", "pdf", "json"))
    if config["value_function_game"] in config["games"]:
        products += expand(results("figures/value_function.{ext}"), ext=("png", "pdf", "json"))
    products += expand(VIDEO, game=config["games"], seed=config["seeds"])
    return products
