"""The Snakemake workflow: lint, the plan of the default config, bad configs, and the
`ci` config run end to end with its figures and table held against the evaluations."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import psutil
import pytest
import scipy.stats
import yaml

from dqn import aggregates, games, h5io, plots, presets
from dqn.rundir import RunDir

from conftest import (
    ROOT,
    assert_same_weights,
    copy_workflow,
    dqn,
    planned_jobs,
    provenance_of,
    snakemake,
    start_breakout_training,
    train_args,
    wait_for,
)

# Each test runs Snakemake, most of them a whole workflow: not in make test-fast.
pytestmark = pytest.mark.slow

FIGURES = (
    "training_curves_figure2",
    "training_curves_all_games",
    "value_function",
    "table1",
    *(f"aggregate_{name}" for name in plots.AGGREGATE_FIGURES),
)
CI_SEEDS = (0, 1)


@pytest.fixture
def workflow_copy(tmp_path):
    return copy_workflow(tmp_path)


def test_lint_reports_nothing(workflow_copy):
    result = snakemake(workflow_copy, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_default_config_plans_one_training_job_per_game_of_the_paper(workflow_copy):
    result = snakemake(workflow_copy, "-n", "-p")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result)
    assert jobs["train"] == 7 and jobs["evaluate"] == 7 and jobs["video"] == 7
    assert jobs["trace_value_function"] == 1 and jobs["table1"] == 1
    assert jobs["figure_aggregate"] == 1
    assert "results/videos/Pong/seed0.mp4" in result.stdout
    assert "--preset paper2013 --seed 0" in result.stdout


def planned_files(result) -> dict[str, list[str]]:
    """The output, log and benchmark files of a dry run's jobs by rule, as Snakemake prints
    them under `rule name:` (`output: a, b (update)`), without their flags."""
    files = {}
    for block in re.split(r"\n(?=rule \w+:)", result.stdout):
        if m := re.match(r"rule (\w+):", block):
            for paths in re.findall(r"^    (?:output|log|benchmark): (.+)$", block, re.M):
                files.setdefault(m.group(1), []).extend(
                    path.split(" (")[0] for path in paths.split(", ")
                )
    return files


def test_every_output_log_and_benchmark_goes_to_the_results_directory(workflow_copy):
    # Targets: the experiment (`all`) and the benchmark (`bench`): every rule is planned.
    result = snakemake(
        workflow_copy, "-n", "-p", "all", "bench", "--config", "results=elsewhere/run1"
    )
    assert result.returncode == 0, result.stderr
    files = planned_files(result)
    # every rule but the two targets writes files, a log among them
    assert set(files) == set(planned_jobs(result)) - {"all", "bench"}
    for rule, paths in files.items():
        assert all(path.startswith("elsewhere/run1/") for path in paths), (rule, paths)
        assert any(path.startswith("elsewhere/run1/logs/") for path in paths), rule
    for rule in ("train", "evaluate", "trace_value_function", "video"):
        assert any(path.startswith("elsewhere/run1/benchmarks/") for path in files[rule])
    # nor anything else of the plan, the commands' --run and --out included
    assert "results/" not in result.stdout + result.stderr


def quick_plan(directory, overrides):
    """The dry run of config/quick.yaml with `preset_overrides` (YAML), commands printed."""
    result = snakemake(
        directory,
        "-n",
        "-p",
        "--configfile",
        "config/quick.yaml",
        "--config",
        f"preset_overrides={overrides}",
    )
    assert result.returncode == 0, result.stderr
    return result


def test_config_overrides_reach_dqn_train_as_set_arguments(workflow_copy):
    result = quick_plan(workflow_copy, "{train_steps: 6000, reward_clip: false}")
    assert "--preset quick" in result.stdout
    assert "--set reward_clip=false --set train_steps=6000" in result.stdout
    assert "results/runs/Breakout/seed0/complete.h5" in result.stdout


def test_quick_config_trains_catch_with_its_own_preset_and_leaves_it_out_of_table1(workflow_copy):
    result = quick_plan(workflow_copy, "{train_steps: 6000}")
    assert planned_jobs(result)["train"] == 3
    (catch,) = [line for line in result.stdout.splitlines() if "train --game Catch" in line]
    assert "--preset catch --seed 0" in catch and "--set" not in catch  # overrides are quick's
    (table,) = [line for line in result.stdout.splitlines() if "plot table1" in line]
    assert "eval/Breakout/seed0.h5 results/eval/Seaquest/seed0.h5 --paper" in table
    (curves,) = [
        line for line in result.stdout.splitlines() if "--games Breakout Seaquest Catch" in line
    ]
    assert "eval/Catch/seed0.h5" in curves
    (aggregate,) = [line for line in result.stdout.splitlines() if "plot aggregate" in line]
    assert "eval/Seaquest/seed0.h5 --paper" in aggregate and "Catch" not in aggregate
    assert "--reps 2000" in aggregate  # bootstrap_reps' default


# A config file runs alone; those in config/cpu_breakout/ are layers over the files
# before them (Snakemake applies --configfile files in order, a mapping key by key).
CPU_BREAKOUT_LAYERS = (
    "config/cpu_breakout.yaml",
    "config/cpu_breakout/sb3.yaml",
    "config/cpu_breakout/sb3_setup.yaml",
)
SHIPPED_CONFIGS = [[f"config/{path.name}"] for path in sorted((ROOT / "config").glob("*.yaml"))] + [
    list(CPU_BREAKOUT_LAYERS[:n]) for n in (2, 3)
]


def layered_config(*files: str) -> dict:
    """The config of `files` given together to --configfile, merged as Snakemake does."""
    from snakemake.utils import update_config

    config = {}
    for name in files:
        update_config(config, yaml.safe_load((ROOT / name).read_text()))
    return config


def test_every_config_file_is_shipped_alone_or_as_a_cpu_breakout_layer():
    files = {str(path.relative_to(ROOT)) for path in (ROOT / "config").rglob("*.yaml")}
    assert files == {name for names in SHIPPED_CONFIGS for name in names}


@pytest.mark.parametrize("names", SHIPPED_CONFIGS, ids=" ".join)
def test_every_shipped_config_plans_a_run_in_its_results_directory(workflow_copy, names):
    result = snakemake(workflow_copy, "-n", "--configfile", *names)
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result)["train"] >= 1
    directory = layered_config(*names).get("results", "results") + "/"
    assert all(p.startswith(directory) for paths in planned_files(result).values() for p in paths)


def test_only_the_default_config_and_the_short_ones_share_the_default_results_directory():
    # `dqn train` refuses a run directory of another config, and a config's evaluations
    # would replace another's: each long experiment writes a directory of its own. ci and
    # quick (minutes; the tests and `make quick` read results/) share the default with
    # config/config.yaml.
    directories = {
        " ".join(names): layered_config(*names).get("results", "results")
        for names in SHIPPED_CONFIGS
    }
    shared = {name for name, d in directories.items() if list(directories.values()).count(d) > 1}
    assert shared == {"config/ci.yaml", "config/config.yaml", "config/quick.yaml"}
    assert {directories[name] for name in shared} == {"results"}


def test_the_cpu_breakout_config_is_nature2015_lengthened_and_its_layers_sb3_comparisons():
    # config/cpu_breakout.yaml is the faithful run: only its length and its snapshots'
    # spacing differ from nature2015.
    nature = layered_config(*CPU_BREAKOUT_LAYERS[:1])
    assert nature["preset"] == "nature2015" and nature["games"] == ["Breakout"]
    assert nature["preset_overrides"] == {"train_steps": 1_000_000, "epoch_updates": 12_500}
    # The SB3 layer gives the runs docs/learning.md compares with Stable-Baselines3: its learner,
    # with the episode rules and the network those runs had before the fidelity audit, on
    # the same game, length and snapshots.
    sb3 = layered_config(*CPU_BREAKOUT_LAYERS[:2])
    learner = {
        "optimizer": "adam",
        "learning_rate": 1e-4,
        "adam_epsilon": 1e-8,
        "loss_reduction": "mean",
        "target_update_period_steps": 10_000,
    }
    older_rules = {
        "noop_start": "steps",
        "life_loss_cuts_frame_skip": False,
        "eval_episodes": 30,
        "eval_max_episode_frames": 18_000,
        "network": "nature2015",
        "resize": "bilinear",
        "terminal_takes_step": False,
    }
    assert (
        sb3["preset_overrides"].items()
        >= {**learner, **older_rules, **nature["preset_overrides"]}.items()
    )
    # and nothing else but its results directory
    assert nature == {
        **sb3,
        "preset_overrides": nature["preset_overrides"],
        "results": nature["results"],
    }
    # the set-up layer adds SB3's Atari set-up to that learner, nothing else but its
    # results directory
    setup = layered_config(*CPU_BREAKOUT_LAYERS)
    keys = {
        "fire_on_reset": True,
        "noop_start": "frames_at_reset",
        "max_grad_norm": 10,
        "epsilon_anneal_from": "step_0",
    }
    assert setup == {
        **sb3,
        "preset_overrides": {**sb3["preset_overrides"], **keys},
        "results": setup["results"],
    }


@pytest.mark.parametrize("device,gpus", [("auto", 1), ("cuda", 1), ("cpu", 0)])
def test_jobs_that_may_use_a_gpu_ask_for_one_unless_the_device_is_the_cpu(
    workflow_copy, device, gpus
):
    # `--resources gpu=N` then caps the GPU jobs at N; each claims its own (dqn/devices.py).
    # Targets: the experiment (`all`) and the benchmark (`bench`, not a default target).
    result = snakemake(
        workflow_copy, "-n", "-p", "all", "bench", "--config", f"device={device}", "jobs_per_gpu=3"
    )
    assert result.returncode == 0, result.stderr
    # every dqn call that may use a GPU gets the device and the GPU sharing
    commands = [line for line in result.stdout.splitlines() if "python -m dqn.cli" in line]
    passed = [line for line in commands if f"--device {device} --jobs-per-gpu 3" in line]
    assert len(passed) == 7 + 7 + 1 + 7
    asked = {}
    for block in re.split(r"\n(?=rule \w+:)", result.stdout):
        if m := re.match(r"rule (\w+):", block):
            resources = re.search(r"resources: (.*)", block)
            gpu = re.search(r"\bgpu=(\d+)", resources.group(1)) if resources else None
            asked.setdefault(m.group(1), set()).add(int(gpu.group(1)) if gpu else 0)
    assert asked["train"] == asked["evaluate"] == asked["trace_value_function"] == {gpus}
    assert asked["video"] == asked["bench_device"] == {gpus}
    assert asked["table1"] == {0}
    # On SLURM each job that asks for a GPU must go to the site's GPU partition and
    # model: without them sbatch asks for --gpus on the partition of the small jobs.
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    on_gpu_partition = {
        rule
        for rule, settings in profile["set-resources"].items()
        if {"slurm_partition", "gpu_model"} <= settings.keys()
    }
    assert {rule for rule, asks in asked.items() if asks == {1}} <= on_gpu_partition


@pytest.mark.parametrize(
    "config,fragments",
    [
        # The choices of the game and preset keys are dqn's (common.smk adds them).
        (
            ["games=[Tetris]"],
            [f"config: games[0]: 'Tetris' is not one of {list(games.GAMES)}"],
        ),
        (
            ["game_presets={Catch: fast}"],
            [f"config: game_presets.Catch: 'fast' is not one of {list(presets.PRESETS)}"],
        ),
        (
            ["value_function_game=Catch"],
            [f"config: value_function_game: 'Catch' is not one of {list(games.PAPER_GAMES)}"],
        ),
        # Preset keys go under preset_overrides (their schema is dqn.presets.Config's);
        # --config gives their values as text, read as `dqn train --set` reads it.
        (
            ["preset_overrides={train_steps: -5}"],
            ["config: preset_overrides.train_steps: -5 is less than or equal to the minimum of 0"],
        ),
        (
            ["preset_overrides={train_steps: 1.5}"],
            ["config: preset_overrides.train_steps='1.5': expected an integer"],
        ),
        (["seeds=[]"], ["config: seeds: [] should be non-empty"]),
        (
            ["seeds=[0,1]"],
            [
                "config: seeds[1]='1': expected an integer (--config gives a list's items as "
                "text: give the list in a config file)"
            ],
        ),
        (
            ["preset_overrides={gamma: 0.9}"],
            [
                "config: preset_overrides: Additional properties are not allowed ('gamma' was "
                "unexpected)"
            ],
        ),
        (
            ["preset_overrides={discount: 2}"],
            ["config: preset_overrides.discount: 2.0 is greater than the maximum of 1"],
        ),
        (
            ["preset_overrides={train_steps: 100}"],
            [
                "config: preset_overrides: train_steps=100: must exceed replay_start_steps=100",
                "(preset 'paper2013')",
            ],
        ),
        (["preset=fast"], [f"config: preset: 'fast' is not one of {list(presets.PRESETS)}"]),
        # The form before preset_overrides: a preset key at the top level.
        (
            ["train_steps=5000"],
            [
                "config: train_steps is not a workflow key; put preset overrides "
                "under preset_overrides: (preset_overrides: {train_steps: 5000})"
            ],
        ),
        (["gamma=0.9"], ["config: gamma: unknown key; workflow keys: preset, games,"]),
    ],
)
def test_bad_config_stops_the_run_before_any_job(workflow_copy, config, fragments):
    result = snakemake(workflow_copy, "--cores", "1", "--config", *config)
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Failed validating" not in result.stderr  # Snakemake's dump of the schema
    assert not (workflow_copy / "results").exists()


@pytest.mark.parametrize(
    "text,fragments",
    [
        (
            "train_steps: 5000",
            [
                "config: train_steps is not a workflow key; put preset overrides under "
                "preset_overrides: (preset_overrides: {train_steps: 5000})"
            ],
        ),
        (
            "preset_overrides: {discount: .nan}",
            ["config: preset_overrides.discount=nan: expected a finite number"],
        ),
        (
            "preset_overrides: {train_steps: 1.5}",
            ["config: preset_overrides.train_steps=1.5: expected an integer"],
        ),
        (
            "preset_overrides: {train_steps: 300000.0}",
            ["config: preset_overrides.train_steps=300000.0: expected an integer"],
        ),
        # JSON Schema counts 300.0 as an integer and nan as a number; the jobs do not.
        ("trace_steps: 300.0", ["config: trace_steps=300.0: expected an integer"]),
        ("jobs_per_gpu: 2.0", ["config: jobs_per_gpu=2.0: expected an integer"]),
        ("seeds: [1.0]", ["config: seeds[0]=1.0: expected an integer"]),
        (
            "seeds: [12345678901234567890]",
            ["config: seeds[0]: 12345678901234567890 is greater than the maximum of 4294967295"],
        ),
        (
            "runtime_steps_per_s: .nan",
            ["config: runtime_steps_per_s=nan: expected a finite number"],
        ),
        # The results directory lies inside the working directory, and reads the same in
        # the shell commands (unquoted) as in Snakemake's patterns.
        ('results: ""', ["config: results='': must be the directory that every file"]),
        ("results: /scratch/dqn", ["config: results='/scratch/dqn': must be the directory"]),
        ("results: results/../..", ["config: results='results/../..': must be the directory"]),
        ("results: my results", ["config: results='my results': must be the directory"]),
        # text in a file's list is the file's: no hint about --config
        ("seeds: ['0']", ["config: seeds[0]='0': expected an integer\n"]),
    ],
)
def test_a_bad_config_file_stops_the_run_before_any_job(workflow_copy, text, fragments):
    (workflow_copy / "bad.yaml").write_text(text + "\n")
    result = snakemake(workflow_copy, "--cores", "1", "--configfile", "bad.yaml")
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Failed validating" not in result.stderr
    assert not (workflow_copy / "results").exists()


def test_a_python_that_cannot_run_the_jobs_is_refused_before_any_job(workflow_copy, tmp_path):
    # The venv's snakemake run without the venv activated: the jobs' `python` is another.
    bare = tmp_path / "bare"
    bare.mkdir()
    python = bare / "python"  # this interpreter without its site-packages: no numpy, no torch
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "PATH": f"{bare}{os.pathsep}{os.environ['PATH']}"}
    refused = snakemake(workflow_copy, "-n", "--configfile", "config/ci.yaml", env=env)
    assert refused.returncode != 0
    assert (
        f"the jobs run `python` from PATH ({python}), which cannot import numpy, h5py, pydantic, "
        "torch, ale_py, cv2, matplotlib: activate the project's venv (. .venv/bin/activate), "
        "or add --sdm conda"
    ) in refused.stdout + refused.stderr
    python.write_text("#!/bin/sh\necho 'a banner on stdout'\necho 'it broke' >&2\nexit 3\n")
    broken = snakemake(workflow_copy, "-n", "--configfile", "config/ci.yaml", env=env)
    assert broken.returncode != 0
    assert f"({python}), which cannot import its modules (it broke): activate" in (
        broken.stdout + broken.stderr
    )
    # and no python at all: PATH's commands but those named python*
    tools = tmp_path / "tools"
    tools.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for command in Path(directory).glob("*"):
            if not command.name.startswith("python") and not (tools / command.name).exists():
                (tools / command.name).symlink_to(command)
    none = snakemake(
        workflow_copy, "-n", "--configfile", "config/ci.yaml", env={**env, "PATH": str(tools)}
    )
    assert none.returncode != 0
    assert "the jobs run `python`, and there is none on PATH" in none.stdout + none.stderr


def test_a_config_changed_after_its_runs_were_made_is_refused_before_any_job(workflow_copy):
    # dqn train refuses such a run directory too, but as the job runs: after Snakemake
    # has replaced the run's log and recorded the new settings as the job's.
    run = RunDir(workflow_copy / "results/runs/Breakout/seed1")
    run.root.mkdir(parents=True)
    states = np.zeros((2, 4, 84, 84), np.uint8)
    h5io.write(run.heldout, "heldout", provenance_of("Breakout", 1, "ci"), {"states": states})
    log = workflow_copy / "results/logs/train/Breakout/seed1.log"
    log.parent.mkdir(parents=True)
    log.write_text("the run's own log\n")
    # a damaged run directory is its own job's to refuse, not every plan's
    damaged = RunDir(workflow_copy / "results/runs/Seaquest/seed0")
    damaged.root.mkdir(parents=True)
    damaged.heldout.write_bytes(b"not HDF5")
    same = snakemake(workflow_copy, "-n", "--configfile", "config/ci.yaml")
    assert same.returncode == 0, same.stderr
    changed = snakemake(
        workflow_copy,
        "--cores",
        "1",
        "--configfile",
        "config/ci.yaml",
        "--config",
        "preset_overrides={train_steps: 800}",
    )
    assert changed.returncode != 0
    assert (
        "config: results/runs/Breakout/seed1 holds a run of other settings (train_steps=600 "
        "(this config: 800)); give this config a results directory of its own (key "
        "results), or continue that run with its settings (preset_overrides: "
        "{train_steps: 600})"
    ) in changed.stderr, changed.stderr
    assert log.read_text() == "the run's own log\n"
    assert sorted(path.name for path in run.root.iterdir()) == ["heldout.h5"]
    # A plan that trains nothing is not refused for the runs it leaves alone: the bench
    # after `make quick`, whose runs are in the default config's results/.
    bench = snakemake(
        workflow_copy,
        "-n",
        "bench",
        "--configfile",
        "config/ci.yaml",
        "--config",
        "preset_overrides={train_steps: 800}",
        "device=cpu",
    )
    assert bench.returncode == 0, bench.stderr


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """The ci config (Breakout and Seaquest, seeds 0 and 1) run once through Snakemake."""
    directory = copy_workflow(tmp_path_factory.mktemp("ci"))
    # 4 min with both cores shared with two training runs (2 games x 2 seeds)
    result = snakemake(directory, "--cores", "2", "--configfile", "config/ci.yaml", timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    return directory


def read_evaluation(directory, game, seed=0):
    return h5io.read(directory / f"results/eval/{game}/seed{seed}.h5", "evaluation")[1]


def test_ci_workflow_writes_every_figure_and_table(ci_run):
    for name in FIGURES:
        png = (ci_run / f"results/figures/{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in png[-12:]
        pdf = (ci_run / f"results/figures/{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-32:]
    with open(ci_run / "results/tables/table1.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["method", "source", *games.PAPER_GAMES]
    assert all(len(row) == len(rows[0]) for row in rows)
    for suffix in ("md", "tex"):
        assert "DQN (ours)" in (ci_run / f"results/tables/table1.{suffix}").read_text()


def test_ci_training_curves_plot_the_evaluation_numbers(ci_run):
    data = json.loads((ci_run / "results/figures/training_curves_figure2.json").read_text())
    assert data["games"] == ["Breakout", "Seaquest"] and data["preset"] == "ci"
    # The rule hands over the paper's points; the ci preset's epochs are not the paper's.
    assert set(data["paper_points_left_out"]) == {"Breakout", "Seaquest"}
    lines = {line["label"]: line for line in data["lines"]}
    for game in data["games"]:
        evaluations = [read_evaluation(ci_run, game, seed) for seed in CI_SEEDS]
        for key in ("average_reward", "average_max_q"):
            line = lines[f"{game} {key}: mean of 2 seeds"]
            np.testing.assert_array_equal(line["x"], evaluations[0]["epoch"])
            np.testing.assert_allclose(
                line["y"], np.mean([e[key] for e in evaluations], axis=0), rtol=1e-14
            )


def test_ci_table1_holds_the_final_evaluation(ci_run):
    with open(ci_run / "results/tables/table1.csv", newline="") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    for game in ("Breakout", "Seaquest"):
        evaluations = [read_evaluation(ci_run, game, seed) for seed in CI_SEEDS]
        finals = [e["average_reward"][-1] for e in evaluations]
        assert float(rows["DQN (ours)"][game]) == pytest.approx(np.mean(finals), rel=1e-14)
        assert float(rows["DQN Best (ours)"][game]) == pytest.approx(
            max(e["best_episode_reward"][-1] for e in evaluations), rel=1e-14
        )
        assert rows["DQN (ours) seeds"][game] == "2"
        assert rows["DQN (ours) agent steps"][game] == str(evaluations[0]["step"][-1])
        low, high = (float(rows[f"DQN (ours) 95% CI {end}"][game]) for end in ("low", "high"))
        assert low <= np.mean(finals) <= high
    assert rows["DQN (ours)"]["Pong"] == "" and rows["DQN (ours) seeds"]["Pong"] == ""


def test_ci_aggregates_hold_the_final_evaluations_of_two_games_and_two_seeds(ci_run):
    data = {
        name: json.loads((ci_run / f"results/figures/aggregate_{name}.json").read_text())
        for name in plots.AGGREGATE_FIGURES
    }
    _, paper_rows = plots.read_paper_table(ci_run / "workflow/data/table1_paper2013.csv")
    # runs x games, each the final snapshot's average reward, normalised by hand
    finals = np.array(
        [
            [
                (
                    read_evaluation(ci_run, game, seed)["average_reward"][-1]
                    - paper_rows["Random"][game]
                )
                / (paper_rows["Human"][game] - paper_rows["Random"][game])
                for game in ("Breakout", "Seaquest")
            ]
            for seed in CI_SEEDS
        ]
    )
    intervals = data["intervals"]
    assert intervals["methods"]["ci"]["games"] == ["Breakout", "Seaquest"]
    np.testing.assert_allclose(intervals["methods"]["ci"]["scores"], finals, rtol=1e-12)
    iqm = aggregates.METRICS.index("IQM")
    point = intervals["points"]["ci"][iqm]
    assert point == pytest.approx(scipy.stats.trim_mean(finals.ravel(), 0.25), rel=1e-12)
    low, high = np.asarray(intervals["intervals"]["ci"])[:, iqm]  # two seeds: an interval
    assert low <= point <= high and intervals["reps"] == 2000
    (curve,) = data["sample_efficiency"]["lines"]
    np.testing.assert_array_equal(curve["x"], read_evaluation(ci_run, "Breakout")["step"])
    assert curve["y"][-1] == pytest.approx(point, rel=1e-12)
    assert data["improvement"]["note"] == "one preset and config trained: no comparison"


def test_ci_value_function_plots_the_trace(ci_run):
    data = json.loads((ci_run / "results/figures/value_function.json").read_text())
    _, trace = h5io.read(ci_run / "results/traces/Seaquest/seed0.h5", "value_trace")
    segment = data["segment"]
    (line,) = data["lines"]
    np.testing.assert_array_equal(line["y"], trace["max_q"][segment["start"] : segment["stop"]])
    assert segment["start"] <= segment["A"] <= segment["B"] <= segment["C"] < segment["stop"]


def test_ci_trace_is_consistent_and_seeded(ci_run, tmp_path):
    attrs, trace = h5io.read(ci_run / "results/traces/Seaquest/seed0.h5", "value_trace")
    n = len(trace["max_q"])
    assert 30 <= n <= 300 and attrs["epoch"] == 4 and attrs["frame_skip_frames"] == 4
    np.testing.assert_array_equal(trace["max_q"], trace["q"].max(axis=1))
    assert trace["screens"].shape == (n, 210, 160, 3) and trace["frames"].shape == (n, 84, 84)
    again = tmp_path / "again.h5"
    run = ci_run / "results/runs/Seaquest/seed0"
    cpu = ["--threads", 1, "--device", "cpu"]
    result = dqn("trace", "--run", run, "--out", again, "--steps", 300, *cpu, timeout=120)
    assert result.returncode == 0, result.stderr
    _, repeated = h5io.read(again, "value_trace")
    for name in ("max_q", "actions", "rewards", "screens"):
        np.testing.assert_array_equal(repeated[name], trace[name])


def test_ci_workflow_makes_a_video_of_each_run_and_puts_it_in_the_report(ci_run, tmp_path):
    videos = [
        ci_run / f"results/videos/{game}/seed{seed}.mp4"
        for game in ("Breakout", "Seaquest")
        for seed in CI_SEEDS
    ]
    for video in videos:
        frames = iio.imread(video)
        assert frames.shape[1:] == (640, 800, 3) and 1 <= len(frames) <= 60  # video_steps
    report = tmp_path / "report.zip"
    result = snakemake(ci_run, "--configfile", "config/ci.yaml", "--report", str(report))
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(report) as archive:
        names = archive.namelist()
        reported = sorted(archive.read(name) for name in names if name.endswith(".mp4"))
        # the aggregates' section, its figures and its caption
        text = b"".join(archive.read(name) for name in names if name.endswith((".html", ".js")))
    assert reported == sorted(video.read_bytes() for video in videos)
    for name in plots.AGGREGATE_FIGURES:
        assert any(path.endswith(f"aggregate_{name}.png") for path in names), names
    assert b"Aggregates across games and seeds" in text
    assert b"95% stratified-bootstrap confidence interval" in text


def test_ci_workflow_run_again_does_nothing_and_a_figure_change_reruns_only_figures(ci_run):
    again = snakemake(ci_run, "-n", "--configfile", "config/ci.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr
    # another device or GPU sharing changes where jobs compute, not what they computed
    elsewhere = ("--config", "device=auto", "jobs_per_gpu=2")
    again = snakemake(ci_run, "-n", "--configfile", "config/ci.yaml", *elsewhere)
    assert "Nothing to be done" in again.stdout + again.stderr
    rules = ci_run / "workflow/rules/figures.smk"
    original = rules.read_text()
    rules.write_text(original.replace("--games {params.games}", "--games {params.games} "))
    try:
        changed = snakemake(ci_run, "-n", "--configfile", "config/ci.yaml")
    finally:
        rules.write_text(original)
    assert set(planned_jobs(changed)) == {"figure_training_curves", "all"}
    # a change to the code that draws them (a pull, an edit) draws every figure again,
    # and trains and evaluates nothing
    # (an edit: Snakemake passes over a file whose time alone changed, by its checksum)
    plots = ci_run / "dqn/plots.py"
    code = plots.read_text()
    plots.write_text(code + "# edited\n")
    try:
        changed = snakemake(ci_run, "-n", "--configfile", "config/ci.yaml")
    finally:
        plots.write_text(code)
    assert set(planned_jobs(changed)) == {
        "figure_training_curves",
        "figure_value_function",
        "table1",
        "figure_aggregate",
        "all",
    }, changed.stdout


def test_the_completion_file_the_workflow_waits_for_names_the_last_snapshot(workflow_copy):
    # 200 updates, 4 epochs of 50, the last at step 1000; steps 1001-1002 update nothing
    # but still end in a fifth epoch: the case a plain ceil(updates / epoch) misses.
    overrides = ["update_period_steps=4", "train_steps=1002", "epoch_updates=50"]
    plan = snakemake(
        workflow_copy,
        "-n",
        "--configfile",
        "config/ci.yaml",
        "--config",
        "games=[Pong]",
        f"preset_overrides={{{', '.join(overrides).replace('=', ': ')}}}",
    )
    assert plan.returncode == 0, plan.stderr
    assert "results/runs/Pong/seed0/complete.h5" in plan.stdout
    out = workflow_copy / "run"
    train = [*train_args("Pong", overrides=overrides), "--out", out]
    result = dqn(*train)
    assert result.returncode == 0, result.stderr
    complete = h5io.read_attrs(out / "complete.h5", "complete")
    assert sorted(p.name for p in (out / "snapshots").iterdir())[-1] == "epoch_0005.h5"
    assert (complete["epoch"], complete["step"], complete["snapshot"]) == (
        5,
        1002,
        "snapshots/epoch_0005.h5",
    )
    # A complete run asked again writes the file again (a workflow that lost it).
    (out / "complete.h5").unlink()
    again = dqn(*train)
    assert again.returncode == 0 and "complete" in again.stderr
    assert h5io.read_attrs(out / "complete.h5", "complete")["epoch"] == 5


def test_a_training_job_stopped_by_sigterm_is_retried_and_continues_where_it_stopped(
    ci_run, tmp_path
):
    """What SLURM does at a time limit, locally: SIGTERM to the job mid-epoch; Snakemake
    retries it and the retry continues from the saved step to the same weights."""
    directory = copy_workflow(tmp_path)
    run = directory / "results/runs/Breakout/seed0"
    workflow = start_breakout_training(
        directory, "--cores", "1", "--retries", "1", stdout=subprocess.PIPE
    )
    try:
        wait_for(run / "snapshots/epoch_0001.h5", workflow)
        time.sleep(0.2)
        # The job's process: with `exec`, the job's shell has become `dqn train`. Only
        # this workflow's own processes: another test file may train the same --out path
        # in its own directory at the same time (make test runs two files at once).
        (job,) = [
            process
            for process in psutil.Process(workflow.pid).children(recursive=True)
            if {"dqn.cli", "train", str(run.relative_to(directory))} <= set(process.cmdline())
        ]
        job.send_signal(signal.SIGTERM)
        output, _ = workflow.communicate(timeout=300)
    finally:
        workflow.kill()
    assert workflow.returncode == 0, output[-3000:]
    assert "exit status 143" in output or "Trying to restart job" in output, output[-3000:]
    log = (directory / "results/logs/train/Breakout/seed0.log").read_text()
    assert f"resumed from {run / 'resume/interrupted.h5'}".replace(f"{directory}/", "") in log
    assert_same_weights(RunDir(run), RunDir(ci_run / "results/runs/Breakout/seed0"))


def test_a_training_job_asks_for_the_memory_its_replay_its_saves_and_held_out_states_take(
    workflow_copy,
):
    # common.smk computes mem_mb from dqn.replay's layout without allocating a memory;
    # this holds it to a real one (and tests/test_replay.py a save's part to a real save).
    from dqn.replay import ReplayMemory, save_bytes

    result = snakemake(workflow_copy, "-n", "--config", "games=[Pong]")
    assert result.returncode == 0, result.stderr
    (mem_mb,) = {int(m) for m in re.findall(r"rule train:(?:.|\n)*?mem_mb=(\d+)", result.stdout)}
    config = presets.load("paper2013")
    per_transition = ReplayMemory(10).nbytes() / 10
    # The first epoch's: the replay start's 100 steps and 50,000 updates, one a step.
    first_epoch_entries = config.replay_start_steps + config.epoch_updates
    needed = (
        config.replay_capacity_transitions * per_transition
        + config.heldout_states * 4 * 84 * 84
        + save_bytes(first_epoch_entries)
    ) / 2**20 + 2048
    assert needed <= mem_mb <= needed * 1.01
