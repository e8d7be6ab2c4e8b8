"""The figures and table draw exactly the numbers of the files they read."""

import csv
import json
import re

import h5py
import matplotlib.image
import numpy as np
import pytest

from dqn import cli, h5io, layouts, plots, provenance
from dqn.errors import ConfigError, DataFileError

from conftest import PAPER_TABLE, dqn, provenance_of, write_evaluation


def write_trace(path, max_q, rewards):
    n = len(max_q)
    attrs = provenance_of("Seaquest", 0)
    attrs.update(
        {
            "epoch": 4,
            "step": 1000,
            "update": 800,
            "frame_skip_frames": 4,
            "run": "r",
            "snapshot": "r/snapshots/epoch_0004.h5",
            "epsilon": 0.05,
            "episode_ended": True,
            "trained_by": provenance.trained_by({4: attrs}),
        }
    )
    h5io.write(
        path,
        "value_trace",
        attrs,
        {
            "max_q": np.asarray(max_q, float),
            "rewards": np.asarray(rewards, float),
            "q": np.repeat(np.asarray(max_q, float)[:, None], 3, axis=1),
            "actions": np.zeros(n, np.int64),
            "screens": np.full((n, 210, 160, 3), 90, np.uint8),
            "frames": np.zeros((n, 84, 84), np.uint8),
        },
    )
    return path


def test_several_seeds_draw_their_mean_and_a_min_max_band(tmp_path):
    files = [
        write_evaluation(tmp_path / "a.h5", "Breakout", 0, [1, 2, 3], [0.1, 0.2, 0.3]),
        write_evaluation(tmp_path / "b.h5", "Breakout", 1, [3, 6, 9], [0.3, 0.4, 0.5]),
        write_evaluation(tmp_path / "c.h5", "Pong", 0, [-21, -20], [0.0, 0.1]),
    ]
    written = plots.training_curves(files, tmp_path / "curves", ["Breakout", "Pong"])
    assert [p.suffix for p in written] == [".png", ".pdf", ".json"]
    data = json.loads((tmp_path / "curves.json").read_text())
    lines = {line["label"]: line for line in data["lines"]}
    breakout = lines["Breakout average_reward: mean of 2 seeds"]
    assert breakout["x"] == [1, 2, 3] and breakout["y"] == [2, 4, 6]
    assert lines["Pong average_max_q: seed 0"]["y"] == [0.0, 0.1]
    # runs of their presets as they are: nothing named as changed
    assert data["preset_changes"] == {"Breakout": {}, "Pong": {}}
    # each game its seeds: Pong, of one, has no band
    assert "seeds 0, 1: mean, band = min to max (Breakout), seed 0 (Pong)" in " ".join(
        data["title"].split()
    )
    band = next(b for b in data["bands"] if b["key"] == "average_max_q")
    assert band["min"] == [0.1, 0.2, 0.3] and band["max"] == [0.3, 0.4, 0.5]
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    # what it was drawn from, and by what code (each input names the code that wrote it)
    assert data["inputs"] == [str(file) for file in files]
    assert data["drawn_by"] == provenance.figure_record()
    assert {"matplotlib", "numpy", "python"} <= data["drawn_by"]["library_versions"].keys()
    assert (tmp_path / "curves.pdf").read_bytes().startswith(b"%PDF")


def test_the_curves_mark_the_epochs_where_a_seed_completed_no_game(tmp_path):
    # dqn.evaluate.play: no game ended within eval_steps, so the reward is the return of
    # the one being played, not a game's (2013 §5.1 averages games)
    files = [
        write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -9, -5], [0] * 3, episodes=[0, 2, 0]),
        write_evaluation(tmp_path / "b.h5", "Pong", 1, [-19, -7, -3], [0] * 3, episodes=[1, 2, 3]),
    ]
    plots.training_curves(files, tmp_path / "curves")
    data = json.loads((tmp_path / "curves.json").read_text())
    assert data["epochs_no_game_completed"] == {"Pong": [1, 3]}
    hollow = {line["label"]: line for line in data["lines"]}[
        "Pong average_reward: a seed completed no game"
    ]
    assert hollow["x"] == [1, 3] and hollow["y"] == [-20, -4]  # on the mean's points
    assert data["title"].endswith(
        "\nhollow red: a seed completed no game, its reward the unfinished one's: Pong epochs 1, 3"
    )
    plots.training_curves(files[1:], tmp_path / "whole")
    whole = json.loads((tmp_path / "whole.json").read_text())
    assert whole["epochs_no_game_completed"] == {} and "hollow" not in whole["title"]


def test_seeds_are_averaged_only_over_epochs_they_all_reached(tmp_path):
    files = [
        write_evaluation(tmp_path / "a.h5", "Pong", 0, [1, 2, 3], [0, 0, 0]),
        write_evaluation(tmp_path / "b.h5", "Pong", 1, [3, 4], [0, 0]),
    ]
    epochs, mean, low, high = plots.seed_statistics(
        plots.load_evaluations(files)["Pong"], "average_reward"
    )
    assert epochs.tolist() == [1, 2] and mean.tolist() == [2, 3]


def test_the_curves_name_the_epochs_left_out_and_refuse_seeds_sharing_none(tmp_path):
    a = write_evaluation(tmp_path / "a.h5", "Pong", 0, [1, 2, 3], [0, 0, 0])
    b = write_evaluation(tmp_path / "b.h5", "Pong", 1, [3, 4], [0, 0])
    plots.training_curves([a, b], tmp_path / "curves")
    data = json.loads((tmp_path / "curves.json").read_text())
    assert data["epochs_left_out"] == {"Pong": [3]}
    assert data["title"].endswith("\nleft out, not evaluated for every seed: Pong epochs 3")
    assert plots._ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"  # as the title names them
    c = write_evaluation(tmp_path / "c.h5", "Pong", 2, [5, 6], [0, 0], epochs=[3, 4])
    with pytest.raises(
        DataFileError, match=f"share no epoch: .*{b}: epochs 1 to 2; {c}: epochs 3 to 4"
    ):
        plots.training_curves([b, c], tmp_path / "curves")


def test_a_stored_config_that_is_not_a_valid_one_is_refused_naming_the_file(tmp_path):
    # Figure 2's axis reads the stored config as a whole Config (its epochs' count).
    bad = write_evaluation(tmp_path / "bad.h5", "Pong", 0, [1.0], [0.1], epoch_updates=0)
    with pytest.raises(
        DataFileError,
        match=rf"^{bad}: its config does not fit this version of dqn \(epoch_updates=0",
    ):
        plots.training_curves([bad], tmp_path / "curves")


def test_the_papers_figure2_points_are_drawn_where_our_epochs_are_its(tmp_path):
    paper = "workflow/data/figure2_paper2013.csv"
    ours = write_evaluation(
        tmp_path / "a.h5", "Breakout", 0, [1, 2], [0.1, 0.2], preset="paper2013", eval_epsilon=0.01
    )
    plots.training_curves([ours], tmp_path / "curves", paper=paper)
    data = json.loads((tmp_path / "curves.json").read_text())
    lines = {line["label"]: line for line in data["lines"]}
    theirs = lines["Breakout average_max_q: 2013 paper, read off its Figure 2"]
    assert theirs == {
        "label": "Breakout average_max_q: 2013 paper, read off its Figure 2",
        "x": [1, 10, 50, 100],
        "y": [0.05, 0.37, 2.92, 3.93],
    }
    assert lines["Breakout average_reward: 2013 paper, read off its Figure 2"]["y"][-1] == 120.3
    assert data["paper_points_left_out"] == {} and data["eval_epsilon"] == "0.01"
    assert data["epoch_axes"] == ["Training epoch (50,000 updates each)"]
    # the paper's rewards are of 10,000 steps: each panel says how long ours played
    assert data["eval_lengths"] == {"Breakout": "10,000 steps"}
    # a key changed from the preset is named
    assert data["preset_changes"] == {"Breakout": {"eval_epsilon": 0.01}}
    assert "\npreset paper2013 [eval_epsilon=0.01], seed 0" in data["title"]
    # The ci preset's epochs are 100 updates, not the paper's 50,000: no points, and why.
    short = write_evaluation(tmp_path / "b.h5", "Seaquest", 0, [1, 2], [0.1, 0.2])
    plots.training_curves([short], tmp_path / "short", paper=paper)
    data = json.loads((tmp_path / "short.json").read_text())
    assert [line["label"] for line in data["lines"]] == [
        "Seaquest average_reward: seed 0",
        "Seaquest average_max_q: seed 0",
    ]
    assert data["paper_points_left_out"] == {
        "Seaquest": "epochs: 100 updates each; the paper's: 50,000 updates each"
    }
    # Epochs of 50,000 updates counted in steps end elsewhere (at 50k, 100k, ..., not
    # 50,100, 100,100, ... after paper2013's replay start of 100): no points either.
    in_steps = write_evaluation(
        tmp_path / "s.h5",
        "Breakout",
        0,
        [1, 2],
        [0.1, 0.2],
        preset="paper2013",
        epoch_counted_in="steps",
    )
    plots.training_curves([in_steps], tmp_path / "in_steps", paper=paper)
    data = json.loads((tmp_path / "in_steps.json").read_text())
    assert len(data["lines"]) == 2 and data["paper_points_left_out"] == {
        "Breakout": "epochs: each ends at a multiple of 50,000 agent steps; the paper's: "
        "50,000 updates each"
    }
    assert data["epoch_axes"] == ["Training epoch (each ends at a multiple of 50,000 agent steps)"]
    longer = write_evaluation(
        tmp_path / "c.h5", "Pong", 0, [1], [0.1], preset="nature2015", eval_episodes=30
    )
    plots.training_curves([longer], tmp_path / "longer")
    data = json.loads((tmp_path / "longer.json").read_text())
    assert data["eval_lengths"] == {"Pong": "125,000 steps or 30 games, whichever ends first"}
    # a title's lines fit its panel, about 40 characters
    (panel,) = data["panel_titles"]
    assert panel.startswith("Pong (preset nature2015)\nevaluated over 125,000 steps or 30")
    assert max(map(len, panel.splitlines())) <= 40
    (tmp_path / "bad.csv").write_text(
        "panel,epoch_1,epoch_10,epoch_50,epoch_100\nBreakout score,1,2,3,4\n"
    )
    with pytest.raises(DataFileError, match="bad.csv, line 2: panel 'Breakout score' is not"):
        plots.training_curves([short], tmp_path / "bad", paper=tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text(
        "# a comment\npanel,epoch_1,epoch_10,epoch_50,epoch_100\nBreakout average_max_q,1,2\n"
    )
    with pytest.raises(DataFileError, match="bad.csv, line 3: not the 5 fields of the header"):
        plots.training_curves([short], tmp_path / "bad", paper=tmp_path / "bad.csv")


def test_files_of_different_presets_or_the_same_run_twice_are_refused(tmp_path):
    a = write_evaluation(tmp_path / "a.h5", "Pong", 0, [1], [0])
    b = write_evaluation(tmp_path / "b.h5", "Pong", 1, [1], [0], preset="quick")
    with pytest.raises(
        DataFileError,
        match=f"^{b}: trained otherwise than {a}, of the same game \\(preset='quick' here, "
        "'ci' there\\); a game's seeds",
    ):
        plots.load_evaluations([a, b])
    # the preset's own, but a key changed: the message names it
    d = write_evaluation(tmp_path / "d.h5", "Pong", 1, [1], [0], discount=0.9)
    with pytest.raises(
        DataFileError,
        match=f"^{d}: trained otherwise than {a}, of the same game \\(discount=0.9 here, 0.95 "
        "there\\); a game's seeds are drawn together",
    ):
        plots.load_evaluations([a, d])
    # another run of the same seed (its `run` names another directory)
    attrs, table = h5io.read(a, "evaluation")
    c = tmp_path / "c.h5"
    h5io.write(c, "evaluation", {**attrs, "run": "elsewhere"}, table)
    with pytest.raises(
        DataFileError, match=f"{c}: a second run of Pong seed 0 \\(the first is {a}"
    ):
        plots.load_evaluations([a, c])
    # the same snapshot of the same run twice
    with pytest.raises(DataFileError, match=f"{a}: evaluates the snapshot at step 100"):
        plots.load_evaluations([a, a])
    with pytest.raises(DataFileError, match="no evaluation file for Breakout"):
        plots.training_curves([a], tmp_path / "x", ["Breakout"])


def test_segment_brackets_the_reward_after_the_largest_value_rise():
    max_q = np.zeros(100)
    max_q[50:60] = np.linspace(1, 10, 10)  # rises until the shot at step 60
    max_q[60:66] = [10, 8, 5, 2, 1, 3]
    max_q[66:] = 4
    rewards = np.zeros(100)
    rewards[[20, 60]] = 20  # step 20: a reward with no rise before it
    segment = plots.select_segment(max_q, rewards)
    assert segment["event"] == 60
    assert (segment["start"], segment["stop"]) == (40, 70)
    assert segment["B"] == 59  # first step at the peak value 10
    assert segment["A"] == 50  # the largest one-step rise: 0 -> 1 at step 50
    assert segment["C"] == 64  # lowest value after the reward


def test_segment_fits_inside_short_traces():
    segment = plots.select_segment(np.array([0.0, 1.0, 3.0, 2.0]), np.zeros(4))
    assert (segment["start"], segment["stop"], segment["B"]) == (0, 4, 2)
    assert segment["A"] == 2 and segment["C"] == 3


def test_without_reward_the_segment_brackets_the_largest_value_rise():
    max_q = np.full(100, 5.0)
    max_q[0] = 9.0  # the first states: a stack padded with zeros, a high but flat value
    max_q[70:75] = [6, 7, 8, 9, 4]
    segment = plots.select_segment(max_q, np.zeros(100))
    assert segment["event"] == 73 and (segment["start"], segment["stop"]) == (53, 83)
    assert (segment["A"], segment["B"], segment["C"]) == (70, 73, 74)
    assert "no positive reward" in segment["anchor"]


def test_value_function_draws_the_trace_of_its_segment(tmp_path):
    rng = np.random.default_rng(0)
    max_q, rewards = rng.random(80), np.zeros(80)
    rewards[70] = 1
    trace = write_trace(tmp_path / "trace.h5", max_q, rewards)
    plots.value_function(trace, tmp_path / "value")
    data = json.loads((tmp_path / "value.json").read_text())
    assert data["inputs"] == [str(trace)]
    start, stop = data["segment"]["start"], data["segment"]["stop"]
    assert stop - start == plots.SEGMENT_STEPS
    (line,) = data["lines"]
    assert line["y"] == max_q[start:stop].tolist()
    # values of clipped rewards, beside the game's own points the dotted lines mark
    assert data["value_axis"] == "Predicted value max_a Q\n(discounted clipped reward)"


def table1_rows(tmp_path):
    """Table 1 of two Pong seeds and one Qbert run, written in `tmp_path` (table1.*, fig.*):
    its CSV's rows by method."""
    files = [
        write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15], [0, 0]),
        write_evaluation(tmp_path / "b.h5", "Pong", 1, [-20, -11], [0, 0]),
        write_evaluation(tmp_path / "c.h5", "Qbert", 0, [1, 1234.5678], [0, 0]),
    ]
    plots.table1(files, PAPER_TABLE, tmp_path / "table1", tmp_path / "fig")
    drawn_from = json.loads((tmp_path / "fig.json").read_text())["inputs"]
    assert drawn_from == [*map(str, files), PAPER_TABLE]
    return {row["method"]: row for row in csv.DictReader(open(tmp_path / "table1.csv"))}


def test_table1_puts_our_final_scores_beside_the_papers(tmp_path):
    rows = table1_rows(tmp_path)
    assert float(rows["DQN (ours)"]["Pong"]) == -13  # mean of the final snapshots
    assert float(rows["DQN Best (ours)"]["Pong"]) == -1  # best final episode, over seeds
    assert rows["DQN (ours)"]["Breakout"] == ""  # not trained
    assert rows["DQN (ours)"]["Qbert"] == "1234.5678"  # every digit in the CSV
    assert float(rows["DQN"]["Pong"]) == 20 and float(rows["Human"]["Seaquest"]) == 28010
    methods = list(rows)
    assert methods.index("DQN (ours)") == methods.index("DQN") + 1
    assert "| DQN (ours) | this run, preset ci |" in (tmp_path / "table1.md").read_text()
    assert "DQN (ours) & -- & -- & -- & -13 & 1234.6 &" in (tmp_path / "table1.tex").read_text()
    bars = json.loads((tmp_path / "fig.json").read_text())["bars"]["Pong"]
    assert bars == [-20.4, -19, -17, 20, -3, -13]


def test_table1_gives_each_games_mean_over_seeds_with_its_interval_and_marks_one_run(tmp_path):
    rows = table1_rows(tmp_path)
    # By hand: Pong's final scores -15 and -11 have mean -13 and standard error
    # sd / sqrt(2) = 2; Student's t at 97.5% with 1 degree of freedom is 12.7062.
    low, high = -13 - 12.7062047 * 2, -13 + 12.7062047 * 2
    assert float(rows["DQN (ours) 95% CI low"]["Pong"]) == pytest.approx(low)
    assert float(rows["DQN (ours) 95% CI high"]["Pong"]) == pytest.approx(high)
    assert rows["DQN (ours) seeds"]["Pong"] == "2" and rows["DQN (ours) seeds"]["Qbert"] == "1"
    assert rows["DQN (ours) 95% CI low"]["Qbert"] == "one run"  # one seed: the mean alone
    assert rows["DQN (ours) 95% CI low"]["Breakout"] == ""  # not trained
    methods = list(rows)
    assert methods[methods.index("DQN (ours)") + 1 :][:3] == [
        "DQN (ours) 95% CI low",
        "DQN (ours) 95% CI high",
        "DQN (ours) seeds",
    ]
    assert (
        "| DQN (ours) 95% CI high | Student's t over seeds | – | – | – | 12.4 | one run | – | – |"
    ) in (tmp_path / "table1.md").read_text()
    tex = (tmp_path / "table1.tex").read_text()
    assert "DQN (ours) seeds & -- & -- & -- & 2 & 1 & -- & -- \\\\" in tex
    intervals = json.loads((tmp_path / "fig.json").read_text())["intervals"]
    assert intervals["Pong"] == pytest.approx([low, high]) and intervals["Qbert"] is None


def test_table1_names_each_games_preset_and_epsilon_and_the_fewest_episodes(tmp_path):
    files = [
        write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15], [0, 0], episodes=[2, 0]),
        write_evaluation(tmp_path / "b.h5", "Pong", 1, [-20, -11], [0, 0], episodes=[2, 4]),
        write_evaluation(
            tmp_path / "c.h5", "Qbert", 0, [1, 2, 3], [0, 0, 0], preset="quick", eval_epsilon=0.01
        ),
    ]
    plots.table1(files, PAPER_TABLE, tmp_path / "table1", tmp_path / "fig")
    rows = {row["method"]: row for row in csv.DictReader(open(tmp_path / "table1.csv"))}
    # each game's preset, with the keys its runs changed
    assert (
        rows["DQN (ours)"]["source"]
        == "this run, preset ci (Pong), quick [eval_epsilon=0.01] (Qbert)"
    )
    # Pong's seed 0 completed no episode at its final snapshot: its average is the one
    # episode cut short, and the row says so.
    assert (
        rows["DQN (ours) episodes"]["Pong"] == "0" and rows["DQN (ours) episodes"]["Qbert"] == "3"
    )
    # how long the snapshots reported trained: a shortened run is not taken for the paper's
    assert rows["DQN (ours) agent steps"]["Pong"] == "200"
    assert rows["DQN (ours) agent steps"]["Qbert"] == "300"
    markdown = (tmp_path / "table1.md").read_text()
    assert (
        "| DQN (ours) agent steps | trained, final snapshot | – | – | – | 200 | 300 |" in markdown
    )
    assert (
        "Ours: preset ci (Pong), quick [eval_epsilon=0.01] (Qbert), final snapshot at epsilon "
        "0.05 (Pong), 0.01 (Qbert)" in markdown
    )
    assert "HNeat Best, HNeat Pixel and DQN Best: the best single episode" in markdown
    figure = json.loads((tmp_path / "fig.json").read_text())
    assert figure["presets"] == {"Pong": "ci", "Qbert": "quick"}
    assert figure["preset_changes"] == {"Pong": {}, "Qbert": {"eval_epsilon": 0.01}}
    assert figure["eval_epsilon"] == "0.05 (Pong), 0.01 (Qbert)"


def test_a_run_evaluated_in_pieces_counts_as_one_run_in_order(tmp_path):
    # Figure 2, Table 1 and the aggregates read a long run's evaluations as its pieces came,
    # in any order: one table, its rows in step order, so that the final row is the last.
    later = write_evaluation(tmp_path / "later.h5", "Pong", 0, [-10, -5], [0.3, 0.4], epochs=[3, 4])
    earlier = write_evaluation(
        tmp_path / "earlier.h5", "Pong", 0, [-15, -21], [0.2, 0.1], epochs=[2, 1]
    )
    (run,) = plots.load_evaluations([later, earlier])["Pong"].values()
    assert run["attrs"]["path"] == f"{later}, {earlier}"
    assert run["arrays"]["epoch"].tolist() == [1, 2, 3, 4]
    assert run["arrays"]["average_reward"].tolist() == [-21, -15, -10, -5]
    assert run["arrays"]["episode_returns"].tolist() == [-21] * 3 + [-15] * 3 + [-10] * 3 + [-5] * 3
    assert plots.final_epoch({0: run}) == 4
    # Table 1 takes the run's final snapshot from its latest piece
    plots.table1([later, earlier], PAPER_TABLE, tmp_path / "table1", tmp_path / "t1")
    rows = {row["method"]: row for row in csv.DictReader(open(tmp_path / "table1.csv"))}
    assert float(rows["DQN (ours)"]["Pong"]) == -5
    # a file whose returns do not split into its rows is refused by its name
    attrs, table = h5io.read(earlier, "evaluation")
    torn = tmp_path / "torn.h5"
    h5io.write(
        torn, "evaluation", attrs, {**table, "episode_returns": table["episode_returns"][:-1]}
    )
    with pytest.raises(DataFileError, match=f"{torn}: episode_returns holds 5 returns"):
        plots.training_curves([torn], tmp_path / "torn")
    # a piece evaluated with other settings would mix two evaluations in one curve
    other = write_evaluation(
        tmp_path / "other.h5", "Pong", 0, [0], [0.5], epochs=[5], eval_steps=99
    )
    with pytest.raises(
        DataFileError,
        match=f"{other}: evaluates the run of {later} with other settings \\(eval_steps\\)",
    ):
        plots.load_evaluations([later, other])


def test_the_spread_of_a_snapshots_returns_needs_two_games():
    # the sample sd (n - 1) that the tables, Table 1's CSV and the figures' error bars quote
    assert layouts.return_sd(np.array([1.0, 3.0])) == pytest.approx(np.sqrt(2))
    assert layouts.return_sd(np.array([-21.0])) is None
    assert layouts.return_sd(np.array([])) is None


def test_table1_and_the_aggregates_refuse_seeds_evaluated_to_different_epochs(tmp_path):
    a = write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15, -10], [0, 0, 0])
    b = write_evaluation(tmp_path / "b.h5", "Pong", 1, [-20, -11], [0, 0])
    expected = f"final evaluations are of different epochs \\({a}: epoch 3, {b}: epoch 2\\)"
    with pytest.raises(DataFileError, match=expected):
        plots.table1([a, b], PAPER_TABLE, tmp_path / "t", tmp_path / "f")
    with pytest.raises(DataFileError, match=expected):
        plots.aggregate([a, b], PAPER_TABLE, tmp_path / "agg", reps=10)
    # nor do the aggregates mix games evaluated to different epochs (Table 1 shows each
    # game on its own)
    c = write_evaluation(tmp_path / "c.h5", "Breakout", 0, [1, 2], [0, 0])
    with pytest.raises(DataFileError, match=f"{c}: epoch 2, {a}: epoch 3"):
        plots.aggregate([a, c], PAPER_TABLE, tmp_path / "agg", reps=10)


def test_table1_escapes_latex_special_characters_in_labels_and_caption(tmp_path):
    # A paper row whose label holds % and &: unescaped, TeX would read the % as the
    # start of a comment and the & as a column break.
    lines = open(PAPER_TABLE).read().splitlines()
    (tmp_path / "paper.csv").write_text("\n".join(lines + ["R&D 50%_best,1,2,3,4,5,6,7"]))
    files = [write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15], [0, 0])]
    plots.table1(files, tmp_path / "paper.csv", tmp_path / "table1", tmp_path / "fig")
    tex = (tmp_path / "table1.tex").read_text()
    assert "R\\&D 50\\%\\_best & 1 & 2 & 3 & 4 & 5 & 6 & 7 \\\\" in tex
    assert "DQN (ours) 95\\% CI low & " in tex
    assert "its 95\\% Student's t interval" in tex
    body = tex[tex.index("\\caption") : tex.index("\\end{tabular}")]
    assert not re.search(r"(?<!\\)%", body), body
    # The dash of a missing cell and the numbers need no escape and get none.
    assert "DQN (ours) & -- & -- & -- & -15 & -- & -- & -- \\\\" in tex


def test_trace_refuses_a_step_count_below_one(tmp_path):
    result = dqn("trace", "--run", tmp_path, "--out", tmp_path / "t.h5", "--steps", 0, timeout=120)
    assert result.returncode == 2
    assert "--steps 0: must be >= 1" in result.stderr


def test_a_paper_table_without_a_row_the_figure_shows_is_refused_by_name(tmp_path):
    lines = open(PAPER_TABLE).read().splitlines()
    (tmp_path / "paper.csv").write_text(
        "\n".join(line for line in lines if not line.startswith("Sarsa"))
    )
    (tmp_path / "short.csv").write_text("\n".join(lines + ["Extra,1"]))
    files = [write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15], [0, 0])]
    with pytest.raises(DataFileError, match=r"paper.csv: has no row for Sarsa \(the figure"):
        plots.table1(files, tmp_path / "paper.csv", tmp_path / "t", tmp_path / "f")
    with pytest.raises(DataFileError, match="short.csv, line 13: not the 8 fields of the header"):
        plots.table1(files, tmp_path / "short.csv", tmp_path / "t", tmp_path / "f")


def test_a_paper_table_cell_that_is_not_a_finite_number_or_a_binary_file_is_refused_by_name(
    tmp_path,
):
    # float() reads "nan" and "inf": a normalised score would be NaN, and the JSON invalid
    files = [write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15], [0, 0])]
    text = open(PAPER_TABLE).read()
    for cell in ("nan", "inf", "", "many"):
        paper = tmp_path / "paper.csv"
        paper.write_text(text.replace("Human,7456,31,", f"Human,7456,{cell},"))
        expected = f"{paper}, line 9, column Breakout: {cell!r} is not a finite number"
        with pytest.raises(DataFileError, match=re.escape(expected)):
            plots.table1(files, paper, tmp_path / "t", tmp_path / "f")
        with pytest.raises(DataFileError, match=re.escape(expected)):
            plots.aggregate(files, paper, tmp_path / "agg", reps=10)
    # an HDF5 file given where a CSV file belongs
    with pytest.raises(DataFileError, match=f"{files[0]}: not a Table 1 CSV: not UTF-8 text"):
        plots.table1(files, files[0], tmp_path / "t", tmp_path / "f")


def test_output_prefixes_keep_their_dots_and_never_replace_an_input(tmp_path, capsys):
    files = [write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15], [0, 0])]
    # two seeds' figures side by side: the dot in the prefix is part of its name
    written = plots.training_curves(files, tmp_path / "curves.seed0")
    assert [path.name for path in written] == [
        "curves.seed0.png",
        "curves.seed0.pdf",
        "curves.seed0.json",
    ]
    # table1's --table beside its --paper: its CSV would replace the paper's table
    paper = tmp_path / "t1.csv"
    paper.write_text(open(PAPER_TABLE).read())
    before = paper.read_bytes()
    with pytest.raises(ConfigError, match=f"{paper}: would replace {paper}, which this command"):
        plots.table1(files, paper, tmp_path / "t1", tmp_path / "figure")
    assert paper.read_bytes() == before and not (tmp_path / "figure.png").exists()
    for prefix in ("/", ".", "figures/curves.png"):
        for command in (
            ("training-curves", "--eval", files[0], "--out", prefix),
            ("aggregate", "--eval", files[0], "--paper", PAPER_TABLE, "--out", prefix),
        ):
            assert cli.main(["plot", *map(str, command)]) == 2
            expected = f"{prefix}: an output prefix is a file name without its suffix"
            assert expected in capsys.readouterr().err
    # a CSV that csv itself cannot read
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('method,Pong\nRandom,"-20\n' + "x" * 200_000 + "\n")
    with pytest.raises(DataFileError, match=f"{unclosed}: not a Table 1 CSV: field larger"):
        plots.table1(files, unclosed, tmp_path / "t", tmp_path / "f")


def test_an_output_prefix_replaces_what_dqn_plot_wrote_there_and_nothing_else(tmp_path, capsys):
    files = [write_evaluation(tmp_path / "a.h5", "Pong", 0, [-21, -15], [0, 0])]
    # run again, the tables and the figure in folders of their own: its outputs replaced
    tables, figure = tmp_path / "tables" / "table1", tmp_path / "figures" / "table1"
    plots.table1(files, PAPER_TABLE, tables, figure)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("table1.*"))
    assert len(plots.table1(files, PAPER_TABLE, tables, figure)) == len(written) == 6
    # a figure from before its JSON listed its outputs is still its own to replace
    curves = plots.training_curves(files, tmp_path / "old")
    data = json.loads(curves[2].read_text())
    del data["outputs"]
    curves[2].write_text(json.dumps(data))
    assert plots.training_curves(files, tmp_path / "old") == curves
    # a file of the user's where an output would go (a README, notes): refused before any
    # work, and left as it was
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    with pytest.raises(ConfigError, match=f"{notes}: exists, and dqn plot did not write it"):
        plots.table1(files, PAPER_TABLE, tmp_path / "notes", tmp_path / "bars")
    assert notes.read_text() == "my notes\n" and not (tmp_path / "bars.json").exists()
    # a JSON that no figure wrote lists nothing, itself included
    (tmp_path / "config.json").write_text('{"outputs": "config.json"}')
    with pytest.raises(ConfigError, match="config.json: exists, and dqn plot did not write it"):
        plots.training_curves(files, tmp_path / "config")
    # a prefix that names a folder (`--out results/figures/`) would write beside it
    out = f"{tmp_path / 'figures'}/"
    assert cli.main(["plot", "training-curves", "--eval", str(files[0]), "--out", out]) == 2
    assert "an output prefix is a file name without its suffix" in capsys.readouterr().err
    assert not (tmp_path / "figures.png").exists()


def test_an_empty_trace_is_refused_by_name(tmp_path):
    trace = write_trace(tmp_path / "empty.h5", [], [])
    with pytest.raises(DataFileError, match=f"{trace}: the value trace is empty"):
        plots.value_function(trace, tmp_path / "value")


def test_an_evaluation_whose_columns_differ_in_length_is_refused_by_name(tmp_path):
    path = write_evaluation(tmp_path / "e.h5", "Breakout", 0, [1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    with h5py.File(path, "a") as f:  # as no writer of dqn's could
        del f["average_max_q"]
        f["average_max_q"] = [0.1, 0.2]
    expected = (
        f"{path}: dataset average_reward has 3 snapshots along axis 0, but "
        "average_max_q has 2: they must agree"
    )
    with pytest.raises(DataFileError, match=re.escape(expected)):
        plots.training_curves([path], tmp_path / "curves")
    with pytest.raises(DataFileError, match=re.escape(expected)):
        plots.table1([path], PAPER_TABLE, tmp_path / "t", tmp_path / "f")


def test_an_evaluation_of_no_snapshot_is_refused_by_name(tmp_path):
    path = write_evaluation(tmp_path / "none.h5", "Breakout", 0, [], [])
    with pytest.raises(DataFileError, match=f"{path}: evaluates no snapshot"):
        plots.training_curves([path], tmp_path / "curves")


@pytest.fixture
def saved_figures(monkeypatch):
    """Each figure that dqn.plots saves, kept to be read after the call, not closed (a
    closed figure's new canvas would lay it out anew)."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots.plt, "close", lambda figure: None)
    monkeypatch.setattr(
        plots, "_save", lambda figure, *rest: figures.append(figure) or save(figure, *rest)
    )
    return figures


ANCHORS = """# anchor points for the test
anchor,game,preset,agent_step,seed,average_reward,average_max_q,source
peer,Breakout,ci,100,mean,1.5,,made up
peer,Breakout,ci,200,mean,4.0,0.3,made up
peer,Breakout,ci,200,0,3.0,,made up
peer,Breakout,ci,200,1,5.0,,made up
other,Pong,ci,100,mean,-20.0,,made up
"""


def test_anchored_curves_draw_our_spread_and_the_anchors_points(tmp_path):
    attrs = {**provenance_of("Breakout", 0), "run": "r"}
    attrs["trained_by"] = provenance.trained_by({1: attrs, 2: attrs})
    evaluation = tmp_path / "eval.h5"
    h5io.write(
        evaluation,
        "evaluation",
        attrs,
        {
            "epoch": np.array([1, 2]),
            "step": np.array([100, 200]),
            "update": np.array([50, 100]),
            "average_reward": np.array([2.0, 5.0]),
            "best_episode_reward": np.array([3.0, 6.0]),
            "episodes": np.array([3, 2]),
            "average_max_q": np.array([0.1, 0.2]),
            "episode_returns": np.array([1.0, 2.0, 3.0, 4.0, 6.0]),
        },
    )
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS)
    plots.anchored_curves([evaluation], anchors, tmp_path / "fig")
    data = json.loads((tmp_path / "fig.json").read_text())
    assert data["inputs"] == [str(evaluation), str(anchors)]
    (run,) = data["runs"]
    assert run["reward_sd"] == pytest.approx([1.0, 2**0.5])
    assert [row["anchor"] for row in run["anchor"]] == ["peer"] * 4  # not Pong's
    drawn = {}
    for line in data["lines"]:
        drawn.setdefault(line["label"], []).append((line["x"], line["y"]))
    assert drawn["ours: ci, seed 0"] == [([100, 200], [2.0, 5.0]), ([100, 200], [0.1, 0.2])]
    assert drawn["peer: mean"] == [([100, 200], [1.5, 4.0]), ([200], [0.3])]
    assert drawn["peer: each run"] == [([200, 200], [3.0, 5.0])]


def test_each_anchor_of_a_game_is_drawn_apart_in_a_colour_of_its_own(tmp_path, saved_figures):
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS + "second,Breakout,ci,150,run,2.5,0.2,made up\n")
    evaluation = write_evaluation(tmp_path / "ours.h5", "Breakout", 0, [1.0, 2.0], [0.1, 0.2])
    plots.anchored_curves([evaluation], anchors, tmp_path / "fig")
    (figure,) = saved_figures
    drawn = {}
    for ax in figure.axes:
        for line in ax.get_lines():
            drawn.setdefault(line.get_label(), []).append(
                (list(line.get_xdata()), list(line.get_ydata()), line.get_color())
            )
    # the second anchor's one run is not drawn among the first's seeds, nor in its colour
    assert drawn["peer: each run"] == [([200, 200], [3.0, 5.0], "C3")]
    assert drawn["second: each run"] == [([150], [2.5], "C7"), ([150], [0.2], "C7")]
    ours = {
        color for label, lines in drawn.items() if label.startswith("ours") for *_, color in lines
    }
    assert ours.isdisjoint({"C3", "C7"})


def test_a_run_evaluated_in_pieces_is_drawn_as_one_curve(tmp_path):
    # A long run is evaluated as it reaches each point: its files make one curve, in step
    # order whatever the order of the files; another run's file makes its own.
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS)
    whole = write_evaluation(tmp_path / "whole.h5", "Breakout", 0, [1.0, 2.0, 4.0], [0.1, 0.2, 0.3])
    attrs, table = h5io.read(whole, "evaluation")
    later, earlier = tmp_path / "later.h5", tmp_path / "earlier.h5"
    for path, rows in ((later, slice(2, 3)), (earlier, slice(0, 2))):
        part = {name: table[name][rows] for name in table if name != "episode_returns"}
        part["episode_returns"] = table["episode_returns"][rows.start * 3 : rows.stop * 3]
        h5io.write(path, "evaluation", attrs, part)
    other = write_evaluation(tmp_path / "other.h5", "Breakout", 1, [3.0], [0.5])
    plots.anchored_curves([whole], anchors, tmp_path / "one")
    plots.anchored_curves([later, other, earlier], anchors, tmp_path / "pieces")
    one = json.loads((tmp_path / "one.json").read_text())["runs"]
    pieces = json.loads((tmp_path / "pieces.json").read_text())["runs"]
    assert [run["seed"] for run in pieces] == [0, 1]
    assert pieces[0]["file"] == f"{later}, {earlier}"
    for key in ("step", "average_reward", "reward_sd", "episodes", "average_max_q"):
        assert pieces[0][key] == one[0][key], key
    with pytest.raises(DataFileError, match=f"{whole}: evaluates the snapshot at step 300"):
        plots.anchored_curves([later, whole], anchors, tmp_path / "twice")


def test_a_branch_shares_its_presets_column_named_by_the_key_it_changes(tmp_path):
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS)
    reference = write_evaluation(tmp_path / "ref.h5", "Breakout", 0, [1.0, 2.0], [0.1, 0.2])
    attrs, table = h5io.read(reference, "evaluation")
    config = {**json.loads(attrs["config"]), "network_init": "he_normal"}
    branch = tmp_path / "branch.h5"
    h5io.write(branch, "evaluation", {**attrs, "run": "b", "config": json.dumps(config)}, table)
    seed1 = write_evaluation(tmp_path / "seed1.h5", "Breakout", 1, [3.0, 4.0], [0.3, 0.4])
    plots.anchored_curves([reference, branch, seed1], anchors, tmp_path / "fig")
    data = json.loads((tmp_path / "fig.json").read_text())
    # Each config is named by what tells it apart, the preset's own value included.
    assert [run["label"] for run in data["runs"]] == [
        "ours: ci (network_init=normal_0.01), seed 0",
        "ours: ci (network_init=he_normal), seed 0",
        "ours: ci (network_init=normal_0.01), seed 1",
    ]
    rewards = {line["label"]: line["y"] for line in data["lines"] if line["y"][0] >= 1}
    assert rewards["ours: ci (network_init=he_normal), seed 0"] == [1.0, 2.0]
    image = matplotlib.image.imread(tmp_path / "fig.png")
    assert image.shape[1] < image.shape[0] * 1.2  # one column of plots, not three


def test_the_anchored_legend_names_every_line_once_and_covers_no_plot(tmp_path, saved_figures):
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS)
    evaluation = write_evaluation(tmp_path / "ours.h5", "Breakout", 0, [1.0, 2.0], [0.1, 0.2])
    plots.anchored_curves([evaluation], anchors, tmp_path / "fig")
    (figure,) = saved_figures
    figure.canvas.draw()
    legends = [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    assert len(legends) == 1  # one a column
    names = [text.get_text() for text in legends[0].get_texts()]
    drawn = {line["label"] for line in json.loads((tmp_path / "fig.json").read_text())["lines"]}
    assert sorted(names) == sorted(drawn)
    box = legends[0].get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in figure.axes)


@pytest.mark.parametrize("n_runs", [3, 6])
def test_an_anchored_legend_of_long_names_stays_within_the_figure(tmp_path, saved_figures, n_runs):
    # Runs of one preset that differ in three keys are named by all three: each name is
    # wrapped to the column's width, and the figure holds the whole legend, clear of the
    # plots and their labels, however many runs it names.
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS)
    configs = [
        dict(network_init="normal_0.01", resize="bilinear", terminal_takes_step=False),
        dict(network_init="he_normal", resize="bilinear", terminal_takes_step=False),
        dict(network_init="normal_0.01", resize="area", terminal_takes_step=True),
    ]
    runs = [
        write_evaluation(
            tmp_path / f"{seed}.h5", "Breakout", seed, [1.0, 2.0], [0.1, 0.2], **configs[seed % 3]
        )
        for seed in range(n_runs)
    ]
    plots.anchored_curves(runs, anchors, tmp_path / "fig")
    (figure,) = saved_figures
    figure.canvas.draw()
    (legend,) = [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    names = [text.get_text() for text in legend.get_texts()]
    drawn = {line["label"] for line in json.loads((tmp_path / "fig.json").read_text())["lines"]}
    assert sorted(name.replace("\n", " ") for name in names) == sorted(drawn)
    width = int(plots.LEGEND_TEXT_IN * 12 * 10 / 7)  # characters in fontsize 7
    assert max(len(line) for name in names for line in name.splitlines()) <= width
    box = legend.get_window_extent()
    assert figure.bbox.contains(*box.p0) and figure.bbox.contains(*box.p1)
    labels = [ax.xaxis.label for ax in figure.axes] + [ax.yaxis.label for ax in figure.axes]
    clear_of = [ax.get_window_extent() for ax in figure.axes]
    assert not any(
        box.overlaps(other) for other in clear_of + [t.get_window_extent() for t in labels]
    )


def test_anchors_of_another_game_or_a_malformed_file_are_refused_by_name(tmp_path):
    evaluation = write_evaluation(tmp_path / "e.h5", "Seaquest", 0, [1.0], [0.1])
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS)
    with pytest.raises(DataFileError, match=f"{anchors}: no anchor for Seaquest with preset ci"):
        plots.anchored_curves([evaluation], anchors, tmp_path / "fig")
    anchors.write_text("anchor,game,step\npeer,Breakout,100\n")
    with pytest.raises(
        DataFileError, match=f"{anchors}: not a file of anchors: it needs the columns anchor, game"
    ):
        plots.anchored_curves([evaluation], anchors, tmp_path / "fig")
    anchors.write_text(ANCHORS.replace("200,mean,4.0", "two hundred,mean,4.0"))
    with pytest.raises(DataFileError, match=f"{anchors}, line 4: agent_step 'two hundred'"):
        plots.read_anchors(anchors)
