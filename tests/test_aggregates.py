"""Results across games and seeds (dqn.aggregates, `dqn plot aggregate`): human-normalised
scores, IQM and the other aggregates with stratified-bootstrap intervals, and figures
whose JSON holds the numbers they draw."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from dqn import aggregates, plots
from dqn.errors import DataFileError

from conftest import PAPER_TABLE, dqn, write_evaluation

PAPER_ROWS = plots.read_paper_table(PAPER_TABLE)[1]
IQM = aggregates.METRICS.index("IQM")


def game_score(game, normalised):
    """The game score that normalises to `normalised`, from the paper's Table 1 rows."""
    random, human = PAPER_ROWS["Random"][game], PAPER_ROWS["Human"][game]
    return random + np.asarray(normalised, dtype=float) * (human - random)


def write_runs(directory, curves, games, preset="ci"):
    """Evaluation files of `games` whose normalised scores, snapshot after snapshot, are
    curves[seed][game] (lists), or whose final scores are matrix[seed][game] (numbers)."""
    files = []
    for seed, by_game in enumerate(np.asarray(curves, dtype=float)):
        for game, normalised in zip(games, by_game):
            scores = np.atleast_1d(game_score(game, normalised))
            files.append(
                write_evaluation(
                    directory / f"{preset}_{game}_{seed}.h5",
                    game,
                    seed,
                    scores,
                    np.zeros(len(scores)),
                    preset=preset,
                )
            )
    return files


def aggregate(directory, files, reps=200, seed=0):
    """`dqn plot aggregate`'s four JSON files, by figure name."""
    written = plots.aggregate(files, PAPER_TABLE, directory / "aggregate", reps, seed)
    assert len(written) == 3 * len(plots.AGGREGATE_FIGURES)
    figures = {
        name: json.loads((directory / f"aggregate_{name}.json").read_text())
        for name in plots.AGGREGATE_FIGURES
    }
    # each drawn from the files given and the paper's table
    assert {str(data["inputs"]) for data in figures.values()} == {
        str([*map(str, files), PAPER_TABLE])
    }
    return figures


def lines(data):
    return {line["label"]: line for line in data["lines"]}


# 4 seeds x 3 games; the middle half of its 12 scores is 0.2, 0.3, 0.4, 0.6, 0.7, 0.8.
SPREAD = np.array([[0.0, 0.6, 5.0], [0.1, 0.9, -2.0], [0.3, 0.2, 0.4], [0.8, 0.7, 1.0]])
GAMES = ["Breakout", "Pong", "Seaquest"]


def test_scores_are_normalised_with_the_papers_random_and_human_rows(tmp_path):
    # By hand: Breakout, Random 1.2 and Human 31: (16.1 - 1.2) / 29.8 = 0.5;
    # Seaquest, Random 110 and Human 28010: (7085 - 110) / 27900 = 0.25.
    assert aggregates.human_normalised(16.1, "Breakout", PAPER_ROWS) == pytest.approx(0.5)
    assert aggregates.human_normalised(7085, "Seaquest", PAPER_ROWS) == pytest.approx(0.25)
    files = [
        write_evaluation(tmp_path / "b.h5", "Breakout", 0, [1.2, 16.1], [0, 0]),
        write_evaluation(tmp_path / "s.h5", "Seaquest", 0, [110, 7085], [0, 0]),
        write_evaluation(tmp_path / "c.h5", "Catch", 0, [0.5, 0.9], [0, 0], preset="catch"),
    ]
    data = aggregate(tmp_path, files)["intervals"]
    runs = {run["game"]: run for run in data["methods"]["ci"]["runs"]}
    assert runs["Breakout"]["normalised"] == pytest.approx(0.5)
    assert runs["Seaquest"]["normalised"] == pytest.approx(0.25)
    # Catch has no human score: out of the aggregates, and said so.
    assert data["methods"]["ci"]["games"] == ["Breakout", "Seaquest"]
    assert "no Random and Human score" in data["left_out"]["Catch"]
    assert data["normalisation"]["Seaquest"] == {"random": 110, "human": 28010}


def test_the_iqm_is_the_trimmed_mean_of_all_runs_of_all_games(tmp_path):
    assert aggregates.aggregate_metrics(SPREAD)[IQM] == scipy.stats.trim_mean(SPREAD.ravel(), 0.25)
    data = aggregate(tmp_path, write_runs(tmp_path, SPREAD, GAMES))["intervals"]
    median, iqm, mean, gap = data["points"]["ci"]
    assert iqm == pytest.approx(scipy.stats.trim_mean(SPREAD.ravel(), 0.25))
    assert iqm == pytest.approx(0.5)  # (0.2 + 0.3 + 0.4 + 0.6 + 0.7 + 0.8) / 6
    assert median == pytest.approx(0.6)  # of the games' means 0.3, 0.6, 1.1
    assert mean == pytest.approx(SPREAD.mean())
    assert gap == pytest.approx(1 - np.minimum(SPREAD, 1).mean())
    assert np.asarray(data["methods"]["ci"]["scores"]) == pytest.approx(SPREAD)


def test_runs_that_agree_give_intervals_of_no_width_and_runs_that_differ_wider_ones(tmp_path):
    same = np.array([[0.2, 0.5, 1.5]] * 3)  # every resample of its seeds is the same
    points, intervals = aggregates.interval_estimates(
        {"same": same, "spread": SPREAD}, aggregates.aggregate_metrics, 500, 0
    )
    assert intervals["same"] == pytest.approx(np.array([points["same"]] * 2))
    low, high = intervals["spread"]
    assert np.all(low <= points["spread"]) and np.all(points["spread"] <= high)
    assert np.all(high - low > 0.1)
    # The IQM of resampled runs stays within the scores.
    assert SPREAD.min() <= low[IQM] and high[IQM] <= SPREAD.max()


def test_a_fixed_seed_bootstrap_gives_the_same_interval_twice():
    scores = {"x": np.random.default_rng(1).normal(size=(5, 3))}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = aggregates.interval_estimates(scores, aggregates.aggregate_metrics, 300, 7)[1]["x"]
    again = aggregates.interval_estimates(scores, aggregates.aggregate_metrics, 300, 7)[1]["x"]
    other = aggregates.interval_estimates(scores, aggregates.aggregate_metrics, 300, 8)[1]["x"]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)  # the seed reaches the bootstrap
    # NumPy's global generator, which rliable resamples with, is given back unchanged.
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_one_game_and_one_seed_gives_a_clear_message_and_no_interval(tmp_path):
    files = [write_evaluation(tmp_path / "b.h5", "Breakout", 0, [1.2, 16.1], [0, 0])]
    data = aggregate(tmp_path, files)
    note = data["intervals"]["methods"]["ci"]["notes"]
    assert note.startswith("one game and one seed") and "no interval" in note
    assert data["intervals"]["intervals"] == {"ci": None}
    assert data["intervals"]["points"]["ci"][IQM] == pytest.approx(0.5)
    assert [line["label"] for line in data["intervals"]["lines"]] == [
        f"ci {metric}" for metric in aggregates.METRICS
    ]  # points only, no interval drawn
    assert data["sample_efficiency"]["bands"] == [] and data["profile"]["bands"] == []
    assert data["improvement"]["note"] == "one preset and config trained: no comparison"
    # Several games of one seed: no interval either.
    assert "one seed per game" in aggregates.too_few_runs(np.zeros((1, 3)))


def test_the_aggregate_figures_json_holds_the_numbers_drawn(tmp_path):
    # 3 seeds x 2 games, 3 snapshots each (steps 100, 200, 300).
    curves = np.array(
        [
            [[0.0, 0.2, 0.4], [0.1, 0.1, 0.9]],
            [[0.2, 0.3, 0.5], [-0.1, 0.4, 1.2]],
            [[0.1, 0.6, 0.3], [0.0, 0.0, 0.8]],
        ]
    )
    finals = curves[..., -1]
    data = aggregate(tmp_path, write_runs(tmp_path, curves, ["Breakout", "Pong"]))

    # not comparable with published aggregates, which normalise by the Nature paper's rows
    # (one method: no improvement to draw, nor a title)
    for figure in ("intervals", "sample_efficiency", "profile"):
        title = data[figure]["title"]
        assert title.split(". ", 1)[1].startswith(plots.NORMALISATION_NOTE + "\n")
    drawn = lines(data["intervals"])
    for index, metric in enumerate(aggregates.METRICS):
        assert drawn[f"ci {metric}"]["x"] == [data["intervals"]["points"]["ci"][index]]
        low, high = np.asarray(data["intervals"]["intervals"]["ci"])[:, index]
        assert drawn[f"ci {metric}: 95% CI"]["x"] == [low, high]
    assert drawn["ci IQM"]["x"][0] == pytest.approx(scipy.stats.trim_mean(finals.ravel(), 0.25))

    curve = lines(data["sample_efficiency"])["ci IQM"]
    assert curve["x"] == [100, 200, 300]
    assert curve["y"] == pytest.approx(
        [scipy.stats.trim_mean(curves[..., e].ravel(), 0.25) for e in range(3)]
    )
    (band,) = data["sample_efficiency"]["bands"]
    assert band["step"] == curve["x"]
    assert np.all(np.asarray(band["low"]) <= curve["y"])
    assert np.all(np.asarray(curve["y"]) <= band["high"])

    profile = lines(data["profile"])["ci profile"]
    scores = np.asarray(data["profile"]["methods"]["ci"]["scores"])
    assert scores == pytest.approx(finals)
    assert profile["y"] == pytest.approx([np.mean(scores > tau) for tau in profile["x"]])
    assert profile["x"][0] == pytest.approx(0) and profile["x"][-1] == pytest.approx(1.2)


def test_two_presets_are_compared_by_the_probability_of_improvement(tmp_path):
    better = write_runs(tmp_path, [[0.9, 0.8], [1.0, 0.7]], ["Breakout", "Pong"], "ci")
    worse = write_runs(tmp_path, [[0.1, 0.2], [0.3, 0.0]], ["Breakout", "Pong"], "quick")
    data = aggregate(tmp_path, better + worse)
    assert set(data["intervals"]["points"]) == {"ci", "quick"}
    pair = data["improvement"]["pairs"]["P(ci > quick)"]
    # every run of ci beats every run of quick on each game, in every resample too
    assert pair["point"] == 1.0 and pair["interval"] == [1.0, 1.0]
    assert pair["games"] == ["Breakout", "Pong"]
    assert lines(data["improvement"])["P(ci > quick) probability of improvement"]["x"] == [1.0]


def test_games_with_different_numbers_of_seeds_are_refused_by_name(tmp_path):
    files = [
        write_evaluation(tmp_path / "b0.h5", "Breakout", 0, [1], [0]),
        write_evaluation(tmp_path / "b1.h5", "Breakout", 1, [2], [0]),
        write_evaluation(tmp_path / "s0.h5", "Seaquest", 0, [300], [0]),
    ]
    with pytest.raises(
        DataFileError, match="as many seeds of every game; the files hold Breakout: 2, Seaquest: 1"
    ):
        plots.aggregate(files, PAPER_TABLE, tmp_path / "a", 100)


def test_pieces_of_one_run_evaluated_otherwise_are_refused_not_taken_for_two_methods(tmp_path):
    # Grouped by config file by file, the second piece would be a method of its own,
    # "ci (eval_steps=99)", whose final snapshot is the run's latest.
    first = write_evaluation(tmp_path / "p1.h5", "Pong", 0, [-21, -20], [0, 0])
    later = write_evaluation(tmp_path / "p2.h5", "Pong", 0, [-19], [0], epochs=[3], eval_steps=99)
    with pytest.raises(DataFileError, match=f"{later}: evaluates the run of {first} with other"):
        plots.aggregate([first, later], PAPER_TABLE, tmp_path / "a", 100)
    # evaluated alike, the pieces are one run, and its final snapshot the latest piece's
    alike = write_evaluation(tmp_path / "p3.h5", "Pong", 0, [-19], [0], epochs=[3])
    methods, _ = plots.load_methods([alike, first], ["Pong"])
    (by_game,) = methods.values()
    assert plots.final_epoch(by_game["Pong"]) == 3


def test_files_of_no_game_with_a_human_score_are_refused(tmp_path):
    files = [write_evaluation(tmp_path / "c.h5", "Catch", 0, [0.5], [0], preset="catch")]
    with pytest.raises(DataFileError, match="no evaluation of a game with a human score"):
        plots.aggregate(files, PAPER_TABLE, tmp_path / "a", 100)


def test_a_paper_table_without_its_human_row_is_refused_by_name(tmp_path):
    paper = tmp_path / "table1.csv"
    rows = Path(PAPER_TABLE).read_text().splitlines()
    paper.write_text("\n".join(r for r in rows if not r.startswith("Human,")) + "\n")
    files = write_runs(tmp_path, [[0.5]], ["Pong"])
    with pytest.raises(DataFileError, match=f"^{paper}: has no row Human \\(the rows Random"):
        plots.aggregate(files, paper, tmp_path / "a", 100)


def test_the_command_refuses_a_bootstrap_of_no_resamples(tmp_path):
    files = ["--eval", tmp_path / "e.h5", "--paper", PAPER_TABLE, "--out", tmp_path / "a"]
    result = dqn("plot", "aggregate", *files, "--reps", 0, timeout=120)
    assert result.returncode == 2 and "--reps 0: must be >= 1" in result.stderr
