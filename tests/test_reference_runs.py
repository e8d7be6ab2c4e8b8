"""The committed reference runs (reference-runs/, docs/breakout-reference.md): each is
one finished run, whole, and its final snapshot plays the games its committed
evaluation records."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dqn import h5io
from dqn.evaluate import evaluate_run
from dqn.rundir import RunDir, run_differences

from conftest import ARCHIVED, array_filters

RUNS = sorted(p.parent for p in (Path(__file__).parent.parent / "reference-runs").glob("*/dqn-run"))


def test_there_are_reference_runs():
    # Without it a checkout or image lacking reference-runs/ would skip the tests below.
    assert RUNS, "reference-runs/ holds no run directory (no */dqn-run marker)"


def _final_evaluation(run: RunDir, epoch: int) -> dict[str, np.ndarray]:
    for path in sorted((run.root / "evaluations").glob("*.h5")):
        _, table = h5io.read(path, "evaluation")  # each file whole: checksums verified
        if epoch in table["epoch"]:
            return table
    raise AssertionError(f"{run.root}: no evaluation of its snapshot {epoch}")


@pytest.mark.parametrize("root", RUNS, ids=lambda p: p.name)
def test_a_reference_run_is_one_finished_run(root):
    run = RunDir(root)
    held, states = h5io.read(run.heldout, "heldout")
    config = json.loads(held["config"])
    (epoch,) = run.snapshot_epochs()
    snapshot = h5io.read_attrs(run.snapshot(epoch), "snapshot")
    log_attrs, log = h5io.read(run.log, "train_log")
    assert run_differences(snapshot, held) == [] and run_differences(log_attrs, held) == []
    assert snapshot["step"] == config["train_steps"]  # the run's end, not a point on the way
    assert log_attrs["step"] == config["train_steps"] and log["epochs/epoch"][-1] == epoch
    assert states["states"].shape[0] == config["heldout_states"]
    evaluation = _final_evaluation(run, epoch)
    row = list(evaluation["epoch"]).index(epoch)
    assert evaluation["step"][row] == snapshot["step"]


@pytest.mark.parametrize("root", RUNS, ids=lambda p: p.name)
def test_a_reference_runs_files_are_stored_compressed(root):
    # as scripts/pack-reference-run stores them: the tree travels to the GPU machine with
    # the device check, within 64 MiB (tests/test_devicecheck.py)
    for path in sorted(root.rglob("*.h5")):
        assert array_filters(path) == {ARCHIVED}, path


# A short evaluation of each game: Breakout's first 3,000 steps hold four to seven games
# at these snapshots; a game of Pong at 2M lasts thousands of steps, and one of Seaquest
# at 1M over a thousand, so two games.
SHORT = {
    "Breakout": ["eval_steps=3000"],
    "Pong": ["eval_episodes=2"],
    "Seaquest": ["eval_episodes=2"],
}


@pytest.mark.parametrize("root", RUNS, ids=lambda p: p.name)
def test_the_final_snapshot_plays_the_games_its_evaluation_records(root, tmp_path):
    """A shorter evaluation plays the same first games: each snapshot's evaluation has
    its own seeds, and eval_steps or eval_episodes only ends it sooner."""
    run = RunDir(root)
    (epoch,) = run.snapshot_epochs()
    committed = _final_evaluation(run, epoch)
    # the final snapshot's games come after those of the files' earlier snapshots
    row = list(committed["epoch"]).index(epoch)
    first = int(committed["episodes"][:row].sum())
    game = h5io.read_attrs(run.heldout, "heldout")["game"]
    # through a link: the file names the run by its resolved path, as every piece of it does
    (tmp_path / "link").symlink_to(root)
    check = tmp_path / "check.h5"
    short = evaluate_run(tmp_path / "link", check, torch.device("cpu"), overrides=SHORT[game])
    assert h5io.read_attrs(check, "evaluation")["run"] == str(root.resolve())
    games = int(short["episodes"][0])
    assert games >= 2
    np.testing.assert_array_equal(
        short["episode_returns"], committed["episode_returns"][first : first + games]
    )
    assert short["average_max_q"][0] == pytest.approx(committed["average_max_q"][row], rel=1e-5)
    # Table 1's "DQN Best" and the average are of these games (their scores differ in all
    # runs but breakout-nature2015's, so a mean in place of the max shows)
    assert short["best_episode_reward"][0] == short["episode_returns"].max()
    assert short["average_reward"][0] == pytest.approx(short["episode_returns"].mean())


@pytest.mark.parametrize("root", RUNS, ids=lambda p: p.name)
def test_each_committed_evaluation_row_summarises_the_games_it_records(root):
    # episode_returns holds the rows' games one row after another, `episodes` of each
    for path in sorted((RunDir(root).root / "evaluations").glob("*.h5")):
        _, table = h5io.read(path, "evaluation")
        ends = np.cumsum(table["episodes"])
        assert ends[-1] == len(table["episode_returns"])
        for row, games in enumerate(np.split(table["episode_returns"], ends[:-1])):
            assert len(games) >= 1, f"{path}: epoch {table['epoch'][row]} completed no game"
            assert table["best_episode_reward"][row] == games.max()
            assert table["average_reward"][row] == pytest.approx(games.mean())
