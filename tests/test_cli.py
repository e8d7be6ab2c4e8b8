"""The command line as a user meets it: bad input gives one clear line and exit 2."""

import json
import shutil
import signal
import subprocess
import time

import pytest

from dqn import cli, devices, h5io, presets
from dqn.errors import ConfigError
from dqn.rundir import RunDir
from dqn.train import train

from conftest import DQN, ROOT, dqn


def assert_refused(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    error = lines[-1]
    assert error.startswith("dqn ") and ": error: " in error, result.stderr
    for fragment in fragments:
        assert fragment in error, error


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    import torch

    out = tmp_path_factory.mktemp("cli") / "run"
    config = presets.load("ci", ["train_steps=400", "eval_steps=100"])
    train("Pong", "ci", config, 0, out, torch.device("cpu"), progress_s=60)
    return out


def test_help_says_what_dqn_is_for_and_shows_commands_it_knows(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert description.startswith("Train DQN") and "parse, validate" not in text
    examples = [
        line.split()[1]
        for line in text[text.index("examples:") :].splitlines()
        if line.strip().startswith("dqn ")
    ]
    commands = text.splitlines()[0].split("{")[1].split("}")[0].split(",")
    assert len(examples) >= 2 and set(examples) <= set(commands), (examples, commands)


def test_the_commands_that_play_one_state_at_a_time_default_to_one_thread():
    # a second thread gains them nothing and costs them several times their time beside
    # other work; training's minibatches take torch's default
    given = {"--run": "r", "--out": "o.h5"}
    args = [item for pair in given.items() for item in pair]
    for command in ("evaluate", "trace", "watch"):
        assert cli.parser().parse_args([command, *args]).threads == 1
    train = cli.parser().parse_args(["train", "--game", "Pong", "--out", "o"])
    assert train.threads == 0


@pytest.mark.parametrize(
    "args,fragments",
    [
        (
            ["--game", "Tetris"],
            [
                "unknown game 'Tetris'",
                "valid games: BeamRider, Breakout, Enduro, Pong, Qbert, Seaquest, SpaceInvaders",
            ],
        ),
        (["--game", "Pong", "--set", "gamma=0.9"], ["--set gamma: unknown key", "valid keys:"]),
        (["--game", "Pong", "--set", "train_steps=lots"], ["train_steps='lots': expected int"]),
        (["--game", "Pong", "--set", "eval_epsilon=2"], ["eval_epsilon=2.0: must be in [0, 1]"]),
        (
            ["--game", "Pong", "--set", "minibatch_transitions=0"],
            ["minibatch_transitions=0: must be > 0"],
        ),
        (["--game", "Pong", "--preset", "fast"], ["unknown preset 'fast'"]),
        (["--game", "Pong", "--seed", "-1"], ["--seed -1: must be in [0, 4294967295]"]),
        (
            ["--game", "Pong", "--seed", str(2**32)],
            ["--seed 4294967296: must be in [0, 4294967295]"],
        ),
        # Values a type allows but no machine or episode does: refused before any work.
        (
            ["--game", "Pong", "--set", "replay_capacity_transitions=1000000000000"],
            [
                "replay_capacity_transitions=1000000000000: the replay memory and a save "
                "of its first epoch's entries need 6,577,931.3 GiB, more than the"
            ],
        ),
        (
            ["--game", "Pong", "--set", "heldout_collect_steps=10000000000"],
            [
                "heldout_collect_steps=10000000000: the random play the held-out states are "
                "drawn from needs 65,779.3 GiB, more than the"
            ],
        ),
        (
            ["--game", "Pong", "--set", "noop_max=1000000000000"],
            [
                "noop_max=1000000000000: its no-op frames must leave room in an episode "
                "of max_episode_frames=2000"
            ],
        ),
        (["--game", "Pong", "--set", "learning_rate=nan"], ["learning_rate"]),
        # nan passes a plain "< 0.1" check and inf never ends a timing
        (["--game", "Pong", "--progress-s", "nan"], ["--progress-s nan: must be a finite number"]),
        (["--game", "Pong", "--progress-s", "inf"], ["--progress-s inf: must be a finite number"]),
        (["--game", "Pong", "--threads", "-1"], ["--threads -1: must be a finite number >= 0"]),
    ],
)
def test_train_refuses_bad_arguments(tmp_path, capsys, args, fragments):
    # In this process: each is refused before any work, so a new interpreter (seconds to
    # import torch) would only slow the test down.
    status = cli.main(["train", "--preset", "ci", *args, "--out", str(tmp_path / "run")])
    assert_refused(subprocess.CompletedProcess([], status, "", capsys.readouterr().err), *fragments)
    assert not (tmp_path / "run").exists()  # nothing was started


RUN = str(ROOT / "reference-runs" / "breakout-paper2013")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--game", "Pong", "--preset", "ci", "--set", "gamma=0.9"], "gamma: unknown key"),
        (["train", "--game", "Pongg", "--preset", "ci"], "unknown game 'Pongg'"),
        (["evaluate", "--run", RUN, "--set", "train_steps=5"], "only the evaluation's keys"),
        (["evaluate", "--run", RUN, "--epochs", "99"], "no snapshot of epoch 99"),
        (["trace", "--run", RUN, "--steps", "0"], "--steps 0: must be >= 1"),
        (["trace", "--run", "no/such/run"], "no/such/run/heldout.h5: no such file"),
        (["watch", "--run", "no/such/run"], "no/such/run/heldout.h5: no such file"),
        (["watch", "--run", RUN], "out.h5: must end in .mp4 or .gif"),
    ],
)
def test_a_bad_request_is_refused_before_a_gpu_is_claimed(
    monkeypatch, tmp_path, capsys, args, fragment
):
    # --device auto and cuda claim a GPU and wait while every GPU is taken: a mistyped
    # key must not be told only after that wait.
    def claim(*_):
        raise AssertionError("the device was chosen before the request was checked")

    monkeypatch.setattr(devices, "resolve_device", claim)
    status = cli.main([*args, "--out", str(tmp_path / "out.h5"), "--device", "cuda"])
    assert_refused(subprocess.CompletedProcess([], status, "", capsys.readouterr().err), fragment)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_plot_aggregate_refuses_a_seed_outside_32_bits(tmp_path, capsys, seed):
    # np.random.seed, which seeds the bootstrap, takes 32 bits only.
    status = cli.main(
        ["plot", "aggregate", "--eval", str(tmp_path / "e.h5"), "--paper", "p.csv"]
        + ["--out", str(tmp_path / "a"), "--seed", str(seed)]
    )
    result = subprocess.CompletedProcess([], status, "", capsys.readouterr().err)
    assert_refused(result, f"--seed {seed}: must be in [0, 4294967295]")


@pytest.mark.slow  # trains a small run
def test_train_refuses_a_directory_of_another_config(small_run):
    result = dqn(
        "train",
        "--game",
        "Pong",
        "--preset",
        "ci",
        "--out",
        small_run,
        "--set",
        "train_steps=400",
    )
    assert_refused(
        result,
        f"{small_run} holds another run",
        "eval_steps=100 (asked 300)",
        "or continue it with --set eval_steps=100",
    )


@pytest.mark.slow  # trains a small run
def test_info_shows_provenance_and_arrays(small_run):
    result = dqn("info", RunDir(small_run).snapshot(1))
    assert result.returncode == 0, result.stderr
    for fragment in (
        "kind: snapshot",
        "game: Pong",
        "preset: ci",
        "git_commit:",
        "torch",
        '"train_steps": 400',
        '"torch_cpu_capability":',  # the machine, a JSON object like the config
        "weights/body.0.weight: (16, 4, 8, 8) float32",
    ):
        assert fragment in result.stdout


@pytest.mark.slow  # trains a small run
def test_info_and_evaluate_refuse_a_truncated_file_by_name(small_run, tmp_path):
    run_copy = tmp_path / "run"
    shutil.copytree(small_run, run_copy)
    snapshot = RunDir(run_copy).snapshot(2)
    snapshot.write_bytes(snapshot.read_bytes()[:5000])
    assert_refused(dqn("info", snapshot), f"{snapshot}: corrupt or truncated HDF5 file")
    result = dqn("evaluate", "--run", run_copy, "--out", tmp_path / "eval.h5")
    assert_refused(result, f"{snapshot}: corrupt or truncated HDF5 file")
    assert not (tmp_path / "eval.h5").exists()


@pytest.mark.slow  # trains a small run
def test_an_unwritable_output_is_one_line_not_a_traceback(small_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert_refused(dqn("evaluate", "--run", small_run, "--out", blocker / "eval.h5"), str(blocker))
    assert_refused(dqn("bench", "--seconds", "0"), "--seconds 0.0: must be a finite number >= 0.1")


def test_an_os_error_is_one_line_naming_its_paths_both_of_a_rename(monkeypatch, capsys):
    # A rename into place that fails names the file it would have replaced, not only the
    # temporary file (deleted by then).
    errors = [
        (
            IsADirectoryError(21, "Is a directory", "run/eval.h5.tmp", None, "run/eval.h5"),
            "run/eval.h5.tmp -> run/eval.h5: Is a directory",
        ),
        (PermissionError(13, "Permission denied", "run"), "run: Permission denied"),
        (OSError(28, "No space left on device"), "No space left on device"),
    ]
    for error, line in errors:

        def fail(args, error=error):
            raise error

        monkeypatch.setattr(cli, "_run", fail)
        assert cli.main(["info", "x.h5"]) == 2
        assert capsys.readouterr().err == f"dqn info: error: {line}\n"


def test_evaluate_refuses_a_directory_without_a_run(tmp_path):
    assert_refused(
        dqn("evaluate", "--run", tmp_path, "--out", tmp_path / "e.h5"),
        f"{tmp_path / 'heldout.h5'}: no such file",
    )


@pytest.mark.slow  # trains a small run
def test_evaluate_writes_one_row_per_snapshot(small_run, tmp_path):
    out = tmp_path / "eval.h5"
    result = dqn("evaluate", "--run", small_run, "--out", out, "--device", "cpu", "--workers", "2")
    assert result.returncode == 0, result.stderr
    attrs, table = h5io.read(out, "evaluation")
    assert table["epoch"].tolist() == RunDir(small_run).snapshot_epochs() == [1, 2]
    assert table["step"].tolist() == [300, 400]
    assert attrs["game"] == "Pong" and attrs["preset"] == "ci"
    for column in ("average_reward", "best_episode_reward", "average_max_q"):
        assert table[column].shape == (2,)
    assert (table["best_episode_reward"] >= table["average_reward"]).all()
    # A Pong game outlasts 100 steps: no episode completes, and the unfinished one
    # stands alone (never positive: a near-random agent loses points).
    assert (table["episodes"] == 0).all()
    assert (table["average_reward"] == table["best_episode_reward"]).all()
    assert (table["average_reward"] <= 0).all()
    assert result.stdout.splitlines()[1].endswith(
        "(no episode ended: the score of the one cut short)"
    )
    # the same run evaluated again gives the same numbers (per-snapshot seeds)
    again = tmp_path / "again.h5"
    assert dqn("evaluate", "--run", small_run, "--out", again, "--device", "cpu").returncode == 0
    _, table_again = h5io.read(again, "evaluation")
    for column in table:
        assert (table[column] == table_again[column]).all(), column


@pytest.mark.slow  # trains a small run
def test_ctrl_c_stops_an_evaluation_at_once_in_one_line_and_writes_nothing(small_run, tmp_path):
    # Two snapshots of a million steps each, two at a time: minutes of play in flight when
    # Ctrl-C comes, which the process does not wait for.
    out = tmp_path / "eval.h5"
    evaluate = [*DQN, "evaluate", "--run", str(small_run), "--out", str(out), "--device", "cpu"]
    evaluate += ["--workers", "2", "--set", "eval_steps=1000000"]
    # SIGINT as a terminal's foreground process has it: pytest-xdist's workers ignore it,
    # and a process that starts with it ignored keeps it so (Python installs no handler).
    process = subprocess.Popen(
        evaluate,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        started = process.stderr.readline()
        assert "evaluating 2 snapshots, 1,000,000 agent steps each" in started, started
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    assert time.monotonic() - stopped < 30  # a snapshot's play takes minutes or more
    assert process.returncode == 130
    assert rest.strip().splitlines() == ["dqn evaluate: stopped by SIGINT (Ctrl-C)"], rest
    assert not out.exists()


@pytest.mark.slow  # trains a small run
def test_evaluate_changes_evaluation_keys_only(small_run, tmp_path):
    out = tmp_path / "eval.h5"
    result = dqn(
        "evaluate",
        "--run",
        small_run,
        "--out",
        out,
        "--device",
        "cpu",
        "--set",
        "eval_steps=60",
        "--set",
        "eval_epsilon=1",
        "--epochs",
        "1",
    )
    assert result.returncode == 0, result.stderr
    attrs, table = h5io.read(out, "evaluation")
    config = json.loads(attrs["config"])
    assert (config["eval_steps"], config["eval_epsilon"], config["train_steps"]) == (60, 1.0, 400)
    assert "step        300: average reward" in result.stdout
    assert table["epoch"].tolist() == [1]  # the snapshot asked for, not the run's two
    assert_refused(
        dqn("evaluate", "--run", small_run, "--out", tmp_path / "e.h5", "--epochs", "1", "5"),
        "no snapshot of epoch 5 (it has 1-2)",
    )
    assert_refused(
        dqn("evaluate", "--run", small_run, "--out", tmp_path / "e.h5", "--set", "train_steps=5"),
        "--set 'train_steps=5': only the evaluation's keys (eval_*) may be changed",
    )


def test_evaluate_takes_eval_keys_as_train_does_spaces_and_all():
    from dqn.evaluate import evaluation_config

    config = presets.load("ci")
    assert evaluation_config(config, [" eval_steps = 5"]).eval_steps == 5
    with pytest.raises(ConfigError, match="only the evaluation's keys"):
        evaluation_config(config, [" train_steps=5"])


def test_presets_prints_the_named_preset_or_all_as_json():
    # Every key and value a run of that preset uses, under the preset's name: a second
    # name shows that the name chooses what is printed.
    for name in ("paper2013", "nature2015"):
        result = dqn("presets", name)
        assert result.returncode == 0
        assert json.loads(result.stdout) == {name: presets.load(name).as_dict()}
    everything = json.loads(dqn("presets", check=True).stdout)
    assert everything == {name: presets.load(name).as_dict() for name in presets.PRESETS}
