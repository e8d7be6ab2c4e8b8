"""The 2013 paper's Figure 2, Figure 3 and Table 1 from evaluation and value-trace files,
and the aggregates across games and seeds of `dqn.aggregates`.

Reads only what `dqn evaluate` and `dqn trace` wrote (through h5io), never a snapshot
or the learner. Every figure is written as PNG and PDF, and beside it as JSON the
numbers it draws, read back from the drawn lines, so that a test can hold a figure
against the files it came from.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import matplotlib.transforms  # noqa: E402
import numpy as np  # noqa: E402

from dqn import aggregates, h5io, presets, provenance  # noqa: E402
from dqn.atomic import atomic_write  # noqa: E402
from dqn.errors import ConfigError, DataFileError  # noqa: E402
from dqn.layouts import EVALUATION_COLUMNS, episode_returns, return_sd  # noqa: E402
from dqn.rundir import run_differences  # noqa: E402

# 2013 Figure 2: average reward per episode (left pair) and average action value Q on
# the held-out states (right pair), after each training epoch.
CURVES = (
    ("average_reward", "Average reward per episode\n(game score, eps = {epsilon})"),
    ("average_max_q", "Average action value Q\n(held-out states)"),
)
# Figure 2's panels: one column per game, this wide.
PANEL_WIDTH_IN = 3.4
# 2013 Figure 3: "a 30 frame segment of the game Seaquest".
SEGMENT_STEPS = 30
# How many steps of the segment come before the reward event that anchors it: enough to
# show the value rise while the enemy approaches, the rest shows it fall back (A, B, C).
STEPS_BEFORE_EVENT = 20
# 2013 Table 1: the rows our numbers stand beside, by the paper's method names.
OUR_ROWS = {"DQN": "DQN (ours)", "DQN Best": "DQN Best (ours)"}
# Bars of the Table 1 figure: the paper's upper table (the Best rows are single episodes).
FIGURE_METHODS = ("Random", "Sarsa", "Contingency", "DQN", "Human")
# The files an output prefix (--out, --table, --figure) names: the prefix and each suffix.
FIGURE_FILES = (".png", ".pdf", ".json")
TABLE_FILES = (".csv", ".md", ".tex")


def output_files(
    prefix: Path, suffixes: tuple[str, ...], inputs: list[Path], manifest: Path | None = None
) -> list[Path]:
    """The files output prefix `prefix` names, each suffix added to its name, whose own
    dots stay (curves.seed0 gives curves.seed0.png). Refused, before any work, where the
    prefix names no file (/, ., a directory), ends in a suffix it would be given
    (curves.png would write curves.png.png), or a file is one of `inputs` (writing it
    would replace what the command reads) or exists without dqn plot having written it
    there: `manifest`, the figure's JSON (by default the one among the files), lists
    what the command wrote with it (`_save`), so a command run again replaces its own
    outputs and nothing else (a README named by mistake, a file of the user's)."""
    prefix = Path(prefix)
    if (
        prefix.name in ("", ".", "..")
        or prefix.suffix in (*FIGURE_FILES, *TABLE_FILES)
        or prefix.is_dir()
    ):
        raise ConfigError(
            f"{prefix}: an output prefix is a file name without its suffix, as "
            "figures/curves is (the command adds .png, .pdf, .json or .csv, .md, .tex)"
        )
    files = [prefix.with_name(prefix.name + suffix) for suffix in suffixes]
    read = {Path(path).resolve(): path for path in inputs}
    manifest = manifest or next(file for file in files if file.suffix == ".json")
    ours = _listed_outputs(manifest)
    for file in files:
        if file.resolve() in read:
            raise ConfigError(
                f"{file}: would replace {read[file.resolve()]}, which this command reads; "
                "give another output prefix"
            )
        if file.exists() and _relative(file, manifest) not in ours:
            raise ConfigError(
                f"{file}: exists, and dqn plot did not write it there ({manifest} does not "
                "list it); give another output prefix, or move the file away"
            )
    return files


# The key of a figure's JSON that lists the files written with it, relative to its folder.
OUTPUTS_KEY = "outputs"


def _listed_outputs(manifest: Path) -> list[str]:
    """The files that `manifest`, a figure's JSON written by `_save`, lists; none where it
    is missing or not such a JSON. One written before the list (a `figure` and no
    `outputs`) stands for its own figure's three files."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    if OUTPUTS_KEY not in data and "figure" in data:
        return [manifest.with_suffix(suffix).name for suffix in FIGURE_FILES]
    listed = data.get(OUTPUTS_KEY)
    return listed if isinstance(listed, list) else []


def _relative(file: Path, manifest: Path) -> str:
    return os.path.relpath(file, manifest.parent)


def load_evaluations(paths: list[Path]) -> dict[str, dict[int, dict]]:
    """Evaluation files as {game: {seed: {"attrs": ..., "arrays": ...}}}, the files of one
    run (a long run evaluated in pieces) merged into one table (`merged_evaluations`),
    its rows in step order; "path" in attrs names its files.

    Refuses seeds of one game trained with different presets or configs (their mean
    would mix two experiments) and two runs of the same game and seed, naming the
    files. Different games may have different presets (Catch has its own).
    """
    return _by_game_and_seed(merged_evaluations(paths))


def _by_game_and_seed(merged: list[tuple[str, dict, dict]]) -> dict[str, dict[int, dict]]:
    """`merged_evaluations`' runs as `load_evaluations` returns them, refused as it says."""
    runs: dict[str, dict[int, dict]] = {}
    for names, attrs, arrays in merged:
        attrs = {**attrs, "path": names}
        game, seed = attrs["game"], int(attrs["seed"])
        if game in runs:
            first = next(iter(runs[game].values()))["attrs"]
            # Another preset: that alone (its keys differ by the dozen); else each key.
            differ = [("preset", first["preset"], attrs["preset"])]
            if first["preset"] == attrs["preset"]:
                differ = [d for d in run_differences(attrs, first) if d[0] not in ("game", "seed")]
            if differ:
                raise DataFileError(
                    f"{names}: trained otherwise than {first['path']}, of the same game ("
                    + "; ".join(
                        f"{key}={here!r} here, {there!r} there" for key, there, here in differ
                    )
                    + "); a game's seeds are drawn together, so they must be trained alike"
                )
        if seed in runs.get(game, {}):
            raise DataFileError(
                f"{names}: a second run of {game} seed {seed} "
                f"(the first is {runs[game][seed]['attrs']['path']})"
            )
        runs.setdefault(game, {})[seed] = {"attrs": attrs, "arrays": arrays}
    if not runs:
        raise DataFileError("no evaluation files given")
    return runs


def merged_evaluations(paths: list[Path]) -> list[tuple[str, dict, dict]]:
    """The evaluation files of `paths` as one table per run, its snapshots in step order:
    a long run is evaluated in pieces as it reaches each point. Returns (the run's files,
    the first file's attributes, the table) per run, in the order their files came. The
    pieces of a run (its `run` attribute, the run directory, and its game, preset and
    seed) must share its evaluation settings: one evaluated otherwise (another
    eval_steps, say) is refused, naming the keys."""
    pieces: dict[tuple, list] = {}
    for path in map(Path, paths):
        attrs, table = h5io.read(path, "evaluation")
        if not len(table["step"]):  # no writer of dqn's leaves one; it would be an empty curve
            raise DataFileError(f"{path}: evaluates no snapshot")
        run = (attrs["run"], attrs["game"], attrs["preset"], int(attrs["seed"]))
        if run in pieces:
            first_path, first, _ = pieces[run][0]
            # game and seed are the run's: only config keys can differ
            if differ := [key for key, _, _ in run_differences(attrs, first)]:
                raise DataFileError(
                    f"{path}: evaluates the run of {first_path} with other settings "
                    f"({', '.join(differ)}); evaluate its snapshots alike"
                )
        pieces.setdefault(run, []).append((path, attrs, table))
    merged = []
    for files in pieces.values():
        rows = sorted(
            (
                (int(table["step"][i]), str(path), i, table, returns)
                for path, _, table in files
                for i, returns in enumerate(_returns_of(path, table))
            ),
            key=lambda row: row[:3],  # a file given twice ties here: refused below
        )
        for (step, first, *_), (again, second, *_) in itertools.pairwise(rows):
            if step == again:
                raise DataFileError(
                    f"{second}: evaluates the snapshot at step {step} that {first} evaluates "
                    "too; give each snapshot of a run once"
                )
        table = {
            name: np.array([table[name][i] for _, _, i, table, _ in rows], dtype)
            for name, dtype in EVALUATION_COLUMNS.items()
        }
        table["episode_returns"] = np.concatenate([returns for *_, returns in rows])
        names = ", ".join(str(path) for path, _, _ in files)
        merged.append((names, files[0][1], table))
    return merged


def _returns_of(path: Path, table: dict) -> list[np.ndarray]:
    """`episode_returns` of file `path`'s table, refused by the file's name."""
    try:
        return episode_returns(table)
    except DataFileError as error:
        raise DataFileError(f"{path}: {error}") from None


def seed_statistics(by_seed: dict[int, dict], key: str) -> tuple[np.ndarray, ...]:
    """Epochs every seed reached, and the mean, min and max of `key` over seeds there."""
    epochs = common_epochs(by_seed.values())
    values = np.array([at_epochs(run["arrays"], key, epochs) for run in by_seed.values()])
    return epochs, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def common_epochs(runs) -> np.ndarray:
    """The epochs whose snapshot every one of `runs` has evaluated; refuses runs that
    share none (their mean would be an empty curve)."""
    runs = list(runs)
    common = set.intersection(*(set(run["arrays"]["epoch"].tolist()) for run in runs))
    if not common:
        raise DataFileError(
            "the evaluations share no epoch: "
            + "; ".join(f"{run['attrs']['path']}: {_epoch_span(run)}" for run in runs)
        )
    return np.array(sorted(common))


def final_epoch(runs: dict[object, dict]) -> int:
    """The epoch of the runs' final evaluations (a game's seeds, or every run of the
    aggregates), the same for all: refuses runs evaluated to different epochs (a run
    still training, or evaluated in part), whose mean would mix training lengths."""
    last = {run["attrs"]["path"]: int(run["arrays"]["epoch"][-1]) for run in runs.values()}
    if len(set(last.values())) > 1:
        raise DataFileError(
            "the final evaluations are of different epochs ("
            + ", ".join(f"{path}: epoch {epoch}" for path, epoch in last.items())
            + "); evaluate every run to the same epoch"
        )
    return next(iter(last.values()))


def _epoch_span(run: dict) -> str:
    epochs = run["arrays"]["epoch"]
    return f"epochs {epochs.min()} to {epochs.max()}" if len(epochs) else "no epoch"


def cut_short(by_seed: dict[int, dict], epochs: np.ndarray) -> list[int]:
    """Those of `epochs` at which a seed's evaluation completed no game: its average
    reward there is the return of the game it was playing (`dqn.evaluate.play`)."""
    return sorted(
        {
            epoch
            for run in by_seed.values()
            for epoch, games in zip(run["arrays"]["epoch"].tolist(), run["arrays"]["episodes"])
            if games == 0
        }
        & set(epochs.tolist())
    )


def at_epochs(arrays: dict, key: str, epochs: np.ndarray) -> np.ndarray:
    """Column `key` of an evaluation table at `epochs`, which the table holds."""
    row = {epoch: index for index, epoch in enumerate(arrays["epoch"].tolist())}
    return np.array([arrays[key][row[epoch]] for epoch in epochs], dtype=np.float64)


def training_curves(
    paths: list[Path], out: Path, games: list[str] | None = None, paper: Path | None = None
) -> list[Path]:
    """2013 Figure 2: per game, average reward and average max-Q per epoch.

    One column per game, the reward above the action value. With several seeds the
    line is their mean and the band spans their min and max; epochs that not every seed
    has evaluated are left out, and named. With `paper` (figure2_paper2013.csv), the
    paper's own points are drawn beside ours where our epochs are the paper's (50,000
    updates, counted in updates).
    """
    inputs = [*paths, *([paper] if paper else [])]
    files = output_files(out, FIGURE_FILES, inputs)
    runs = load_evaluations(paths)
    games = games or sorted(runs)
    missing = [game for game in games if game not in runs]
    if missing:
        raise DataFileError(
            f"no evaluation file for {', '.join(missing)}; the files hold {', '.join(sorted(runs))}"
        )
    paper_points = read_paper_figure2(paper) if paper else {}
    seeds = sorted({seed for game in games for seed in runs[game]})
    attrs_of = _attrs_by_game(runs, games)
    preset_of = {game: attrs["preset"] for game, attrs in attrs_of.items()}
    config_of = {game: json.loads(attrs["config"]) for game, attrs in attrs_of.items()}
    epsilon = _eval_epsilon(attrs_of)
    changes = _preset_changes(attrs_of)
    # The paper's rewards are of 10,000 steps each (2013 §5.1); a longer evaluation
    # averages more games, so each game's panel says how long its evaluations were.
    lengths = {game: eval_length(config) for game, config in config_of.items()}
    figure, axes = plt.subplots(
        len(CURVES), len(games), squeeze=False, figsize=(PANEL_WIDTH_IN * len(games) + 0.6, 5.8)
    )
    bands, left_out, paper_left_out, unfinished = [], {}, {}, {}
    for column, game in enumerate(games):
        evaluated = set().union(*(run["arrays"]["epoch"].tolist() for run in runs[game].values()))
        left_out[game] = sorted(evaluated - set(common_epochs(runs[game].values()).tolist()))
        config = presets.from_stored(attrs_of[game]["config"], attrs_of[game]["path"])
        for row, (key, label) in enumerate(CURVES):
            ax = axes[row, column]
            epochs, mean, low, high = seed_statistics(runs[game], key)
            n = len(runs[game])
            which = f"mean of {n} seeds" if n > 1 else f"seed {next(iter(runs[game]))}"
            (ours,) = ax.plot(
                epochs, mean, marker="o", markersize=3, color="C0", label=f"{game} {key}: {which}"
            )
            if key == "average_reward" and (cut := cut_short(runs[game], epochs)):
                unfinished[game] = cut
                ax.plot(
                    cut,
                    mean[np.isin(epochs, cut)],
                    linestyle="none",
                    marker="o",
                    markersize=6,
                    markerfacecolor="white",
                    markeredgecolor="C3",
                    label=f"{game} {key}: a seed completed no game",
                )
            if n > 1:
                ax.fill_between(epochs, low, high, color="C0", alpha=0.25, linewidth=0)
                bands.append(
                    {
                        "game": game,
                        "key": key,
                        "epoch": epochs.tolist(),
                        "min": low.tolist(),
                        "max": high.tolist(),
                    }
                )
            points = paper_points.get((game, key))
            if points and has_paper_epochs(config):
                (theirs,) = ax.plot(
                    list(points),
                    list(points.values()),
                    linestyle="none",
                    marker="x",
                    color="0.35",
                    label=f"{game} {key}: 2013 paper, read off its Figure 2",
                )
                ax.legend([ours, theirs], ["ours", "2013 paper"], fontsize=7)
            elif points:
                paper_left_out[game] = (
                    f"epochs: {config.epoch_text}; "
                    f"the paper's: {PAPER_EPOCH_UPDATES:,} updates each"
                )
            ax.set_title(
                f"{game} (preset {preset_of[game]})\n"
                + _fit(f"evaluated over {lengths[game]}", PANEL_WIDTH_IN)
                if row == 0
                else "",
                fontsize=10,
            )
            ax.set_xlabel(f"Training epoch ({config.epoch_text})")
            if column == 0:
                ax.set_ylabel(label.format(epsilon=epsilon))
            ax.grid(alpha=0.3)
    # each game's seeds: a game of one seed beside one of several has no band
    seed_text = _per_game(
        {
            game: f"seed {next(iter(runs[game]))}"
            if len(runs[game]) == 1
            else f"seeds {', '.join(map(str, sorted(runs[game])))}: mean, band = min to max"
            for game in games
        }
    )
    # each game's preset with the keys its runs changed: a run of 1M steps beside the
    # paper's 10M says so
    described = _per_game(
        {game: presets.describe(preset_of[game], changes[game]) for game in games}
    )
    text = "Training curves (2013 Figure 2)\n" + _fit(
        f"preset {described}, {seed_text}", figure.get_figwidth()
    )
    partial = {game: epochs for game, epochs in left_out.items() if epochs}
    if partial:
        text += "\nleft out, not evaluated for every seed: " + "; ".join(
            f"{game} epochs {_ranges(epochs)}" for game, epochs in partial.items()
        )
    if unfinished:
        text += "\nhollow red: a seed completed no game, its reward the unfinished one's: " + (
            "; ".join(f"{game} epochs {_ranges(epochs)}" for game, epochs in unfinished.items())
        )
    preset_names = sorted(set(preset_of.values()))
    title = figure.suptitle(text, fontsize=10)
    figure.tight_layout()
    data = {
        "figure": "training_curves",
        "title": title.get_text(),
        "preset": ", ".join(preset_names),
        "presets": preset_of,
        "games": games,
        "seeds": seeds,
        "eval_epsilon": epsilon,
        "eval_lengths": lengths,
        "panel_titles": [ax.get_title() for ax in axes[0]],
        "epoch_axes": [ax.get_xlabel() for ax in axes[-1]],
        "preset_changes": changes,
        "epochs_left_out": left_out,
        "epochs_no_game_completed": unfinished,
        "paper_points_left_out": paper_left_out,
        "lines": _drawn_lines(figure),
        "bands": bands,
    }
    return _save(figure, files, data, inputs)


# The epoch of the paper's Figure 2: "one epoch corresponds to 50000 minibatch weight
# updates" (2013 §5.1).
PAPER_EPOCH_UPDATES = 50_000
PAPER_FIGURE2_EPOCHS = {"epoch_1": 1, "epoch_10": 10, "epoch_50": 50, "epoch_100": 100}


def has_paper_epochs(config: presets.Config) -> bool:
    """Whether `config`'s epochs are those of the paper's Figure 2."""
    return config.epoch_counted_in == "updates" and config.epoch_updates == PAPER_EPOCH_UPDATES


def read_paper_figure2(path: Path) -> dict[tuple[str, str], dict[int, float]]:
    """The paper's Figure 2 as read off its panels (figure2_paper2013.csv: a row per
    panel "GAME KEY", a column per epoch read), as {(game, key): {epoch: value}}."""
    _, rows = read_csv_rows(path, ("panel", *PAPER_FIGURE2_EPOCHS), "the paper's Figure 2 CSV")
    keys = {key for key, _ in CURVES}
    points = {}
    for line, row in rows:
        game, _, key = row["panel"].partition(" ")
        if key not in keys:
            raise DataFileError(
                f"{path}, line {line}: panel {row['panel']!r} is not 'GAME KEY' with KEY one "
                f"of {', '.join(sorted(keys))}"
            )
        points[(game, key)] = {
            epoch: _number(path, line, row, column)
            for column, epoch in PAPER_FIGURE2_EPOCHS.items()
        }
    return points


def read_csv_rows(path: Path, columns: tuple[str, ...], what: str) -> tuple[list, list]:
    """A CSV file's header and its rows as (line number in the file, {column: text});
    '#' lines are comments. Refuses a file without `columns` as not `what`, and a row
    whose fields are not the header's."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            numbered = [(n, text) for n, text in enumerate(handle, 1) if not text.startswith("#")]
    except OSError as error:
        raise DataFileError(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not {what}: not UTF-8 text") from None
    reader = csv.DictReader(text for _, text in numbered)
    try:
        header = list(reader.fieldnames or ())
        rows = [(numbered[reader.line_num - 1][0], row) for row in reader]
    except csv.Error as error:  # an unclosed quote, a field over csv's size limit
        raise DataFileError(f"{path}: not {what}: {error}") from None
    if not set(columns) <= set(header):
        raise DataFileError(
            f"{path}: not {what}: it needs the columns {', '.join(columns)}, "
            f"and has {', '.join(header) or 'none'}"
        )
    for line, row in rows:
        if None in row or None in row.values():
            raise DataFileError(f"{path}, line {line}: not the {len(header)} fields of the header")
    return header, rows


def _number(path: Path, line: int, row: dict, column: str) -> float:
    """Cell `column` of a CSV row as a finite number, refused by file, line and column."""
    try:
        value = float(row[column])
    except ValueError:
        value = None
    if value is None or not np.isfinite(value):
        raise DataFileError(
            f"{path}, line {line}, column {column}: {row[column]!r} is not a finite number"
        )
    return value


def select_segment(max_q: np.ndarray, rewards: np.ndarray) -> dict:
    """Where Figure 3's 30-step segment lies in a trace, and its points A, B and C.

    The rule, after the paper's description of its Figure 3 (an enemy appears, a
    torpedo hits it, it is gone):
    - the event is the positive reward (an enemy shot) whose max-Q rose most over the
      STEPS_BEFORE_EVENT steps before it; with no positive reward in the trace, the
      step of all whose max-Q rose most so (an untrained agent may never score);
    - the segment starts STEPS_BEFORE_EVENT steps before the event (moved to fit the trace);
    - B is the peak of max-Q from the segment start up to the event ("about to hit");
    - A is the step at which max-Q has made its largest one-step rise before B
      ("an enemy appears, the value jumps"); the segment start if B is its first step;
    - C is the lowest max-Q after the event ("the enemy is gone, the value falls
      back"); the last step if the event ends the segment.
    Steps are indices into the trace, which is not empty.
    """
    n = len(max_q)
    events = np.flatnonzero(rewards > 0)
    anchor = "largest max-Q rise before a positive reward"
    if not len(events):
        events = np.arange(n)
        anchor = "no positive reward in the trace: largest max-Q rise"
    rises = [max_q[e] - max_q[max(0, e - STEPS_BEFORE_EVENT) : e + 1].min() for e in events]
    event = int(events[int(np.argmax(rises))])
    start = int(np.clip(event - STEPS_BEFORE_EVENT, 0, max(0, n - SEGMENT_STEPS)))
    stop = min(n, start + SEGMENT_STEPS)
    b = start + int(np.argmax(max_q[start : event + 1]))
    a = start + 1 + int(np.argmax(np.diff(max_q[start : b + 1]))) if b > start else start
    c = event + 1 + int(np.argmin(max_q[event + 1 : stop])) if event + 1 < stop else stop - 1
    return {"start": start, "stop": stop, "event": event, "anchor": anchor, "A": a, "B": b, "C": c}


def value_function(trace: Path, out: Path) -> list[Path]:
    """2013 Figure 3: max-Q along a 30-step segment, with the screens at A, B and C."""
    inputs = [trace]
    files = output_files(out, FIGURE_FILES, inputs)
    attrs, arrays = h5io.read(Path(trace), "value_trace")
    if not len(arrays["max_q"]):
        raise DataFileError(f"{trace}: the value trace is empty (0 steps)")
    max_q, rewards = arrays["max_q"], arrays["rewards"]
    segment = select_segment(max_q, rewards)
    steps = np.arange(segment["start"], segment["stop"])
    figure = plt.figure(figsize=(9.0, 6.0))
    grid = figure.add_gridspec(2, 3, height_ratios=(1.0, 1.3))
    ax = figure.add_subplot(grid[0, :])
    ax.plot(
        steps - segment["start"] + 1, max_q[steps], color="C0", marker=".", label="max_a Q(s, a)"
    )
    for step in steps[rewards[steps] > 0]:
        ax.axvline(step - segment["start"] + 1, color="C3", linestyle=":", linewidth=1)
    for name in "ABC":
        x, y = segment[name] - segment["start"] + 1, max_q[segment[name]]
        ax.annotate(
            name, (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontweight="bold"
        )
    ax.set_xlabel(
        f"Frame of the segment (agent step, {attrs['frame_skip_frames']} emulator frames each)"
    )
    # the network learns clipped rewards (2013 §5), the dotted lines mark game points
    ax.set_ylabel("Predicted value max_a Q\n(discounted clipped reward)")
    ax.grid(alpha=0.3)
    for column, name in enumerate("ABC"):
        shot = figure.add_subplot(grid[1, column])
        shot.imshow(arrays["screens"][segment[name]])
        shot.set_title(f"{name}: frame {segment[name] - segment['start'] + 1}")
        shot.set_axis_off()
    figure.suptitle(
        f"Value function (2013 Figure 3), {attrs['game']}, preset "
        f"{attrs['preset']}, seed {attrs['seed']}, epoch {attrs['epoch']}\n"
        f"{segment['anchor']}; dotted lines: reward",
        fontsize=10,
    )
    figure.tight_layout()
    data = {
        "figure": "value_function",
        "preset": attrs["preset"],
        "game": attrs["game"],
        "seed": int(attrs["seed"]),
        "epoch": int(attrs["epoch"]),
        "segment": segment,
        "rewards": rewards[steps].tolist(),
        "lines": _drawn_lines(figure),
        "value_axis": ax.get_ylabel(),
    }
    return _save(figure, files, data, inputs)


ANCHOR_COLUMNS = (
    "anchor",
    "game",
    "preset",
    "agent_step",
    "seed",
    "average_reward",
    "average_max_q",
    "source",
)


def read_anchors(path: Path) -> list[dict]:
    """A public reproduction's published points (CSV with ANCHOR_COLUMNS; seed "mean" for
    the mean over its seeds; an empty value where it reports none)."""
    _, rows = read_csv_rows(path, ANCHOR_COLUMNS, "a file of anchors")
    for line, row in rows:
        if not row["agent_step"].isdigit():
            raise DataFileError(f"{path}, line {line}: agent_step {row['agent_step']!r}")
        row["agent_step"] = int(row["agent_step"])
        for key in ("average_reward", "average_max_q"):
            row[key] = _number(path, line, row, key) if row[key] else None
    return [row for _, row in rows]


# Our runs' colours in the anchored figure, and its anchors' (a column may have several):
# none shared (past four anchors in a column, theirs repeat).
OUR_COLORS = ("C0", "C2", "C1", "C4", "C5", "C6")
ANCHOR_COLORS = ("C3", "C7", "C8", "C9")
# The anchored figure's columns, this wide; the names in the legend below each one, in
# fontsize 7, this wide (the rest is the legend's line samples and frame).
COLUMN_WIDTH_IN = 4.6
LEGEND_TEXT_IN = COLUMN_WIDTH_IN - 0.5
# The legend's top this far below its column's lower axes, past their tick labels and
# x label.
LEGEND_BELOW_IN = 0.55


def anchored_curves(paths: list[Path], anchors_csv: Path, out: Path) -> list[Path]:
    """Each run's evaluation against the published points of the reproductions that
    anchor its game and preset, each in a colour of its own: average reward per episode
    (the bars: one standard deviation of the episodes' returns) and average max-Q, against
    agent steps. One column per game and preset; runs of that preset that differ in config
    (a branch) share it, named by the keys they differ in."""
    inputs = [*paths, anchors_csv]
    files = output_files(out, FIGURE_FILES, inputs)
    anchors = read_anchors(anchors_csv)
    runs = merged_evaluations(paths)
    labels = config_labels([(attrs["preset"], json.loads(attrs["config"])) for _, attrs, _ in runs])
    columns: dict[tuple[str, str], list] = {}
    for run, label in zip(runs, labels, strict=True):
        name = f"ours: {label}, seed {run[1]['seed']}"
        columns.setdefault((run[1]["game"], run[1]["preset"]), []).append((*run, name))
    # Constrained layout keeps the legend below each column inside the figure, which
    # grows by the lines of the longest: our runs' wrapped names, and two entries an
    # anchor (its mean and its runs).
    legend_lines = max(
        sum(len(_fit(name, LEGEND_TEXT_IN, fontsize=7).splitlines()) for *_, name in column_runs)
        + 2 * len({row["anchor"] for row in anchors if (row["game"], row["preset"]) == key})
        for key, column_runs in columns.items()
    )
    figure, axes = plt.subplots(
        2,
        len(columns),
        squeeze=False,
        sharex="col",
        figsize=(COLUMN_WIDTH_IN * len(columns), 5.4 + 0.13 * legend_lines),
        layout="constrained",
    )
    summary = []
    for column, ((game, preset), column_runs) in enumerate(columns.items()):
        points = [row for row in anchors if (row["game"], row["preset"]) == (game, preset)]
        if not points:
            raise DataFileError(
                f"{anchors_csv}: no anchor for {game} with preset {preset} "
                f"(the run of {column_runs[0][0]})"
            )
        for index, (path, attrs, table, label) in enumerate(column_runs):
            returns = episode_returns(table)
            sd = np.array([return_sd(r) for r in returns], dtype=float)  # None: no bar
            steps = table["step"]
            style = dict(marker="o", markersize=4, color=OUR_COLORS[index % len(OUR_COLORS)])
            for key, ax in (
                ("average_reward", axes[0, column]),
                ("average_max_q", axes[1, column]),
            ):
                ax.plot(steps, table[key], label=label, **style)
            axes[0, column].errorbar(
                steps, table["average_reward"], yerr=sd, fmt="none", capsize=3, color=style["color"]
            )
            summary.append(
                {
                    "file": str(path),
                    "label": label,
                    "game": game,
                    "preset": preset,
                    "seed": int(attrs["seed"]),
                    "step": steps.tolist(),
                    "average_reward": table["average_reward"].tolist(),
                    "reward_sd": [None if np.isnan(v) else float(v) for v in sd],
                    "episodes": table["episodes"].tolist(),
                    "average_max_q": table["average_max_q"].tolist(),
                    "anchor": points,
                }
            )
        names = list(dict.fromkeys(r["anchor"] for r in points))  # in the file's order
        for index, name in enumerate(names):
            color = ANCHOR_COLORS[index % len(ANCHOR_COLORS)]
            for key, row_of_axes in (("average_reward", 0), ("average_max_q", 1)):
                for which, style in (
                    ("mean", dict(marker="D", markersize=7, linestyle="--")),
                    ("seeds", dict(marker="x", markersize=6, linestyle="none")),
                ):
                    chosen = [
                        r
                        for r in points
                        if r["anchor"] == name
                        and (r["seed"] == "mean") == (which == "mean")
                        and r[key] is not None
                    ]
                    if chosen:
                        axes[row_of_axes, column].plot(
                            [r["agent_step"] for r in chosen],
                            [r[key] for r in chosen],
                            color=color,
                            label=f"{name}: {'mean' if which == 'mean' else 'each run'}",
                            **style,
                        )
        axes[0, column].set_title(f"{game}, preset {preset}")
        axes[0, column].set_ylabel("Average reward per episode")
        axes[1, column].set_ylabel("Average max-Q, held-out states")
        for ax in axes[:, column]:
            ax.set_xlabel("Agent steps")
            ax.grid(alpha=0.3)
        # One legend a column, below it: inside, it would cover the points it names.
        named = {}
        for ax in axes[:, column]:
            named.update(zip(*reversed(ax.get_legend_handles_labels())))
        # its top a fixed distance below the axes, past their tick labels and x label
        # (a share of the axes' height would fall on the label when they are short)
        below = matplotlib.transforms.offset_copy(
            axes[1, column].transAxes, fig=figure, y=-LEGEND_BELOW_IN, units="inches"
        )
        axes[1, column].legend(
            named.values(),
            [_fit(label, LEGEND_TEXT_IN, fontsize=7) for label in named],
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, 0),
            bbox_transform=below,
        )
    figure.suptitle(
        "Our evaluations beside the published runs that anchor them\n"
        "(bars: one standard deviation over episodes)",
        fontsize=10,
    )
    return _save(
        figure,
        files,
        {"figure": "anchored_curves", "runs": summary, "lines": _drawn_lines(figure)},
        inputs,
    )


def read_paper_table(path: Path) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The paper's Table 1 as (games, {method: {game: score}}); '#' lines are comments."""
    header, rows = read_csv_rows(path, ("method",), "a Table 1 CSV")
    games = [name for name in header if name != "method"]
    return games, {
        row["method"]: {game: _number(path, line, row, game) for game in games}
        for line, row in rows
    }


def our_scores(runs: dict[str, dict[int, dict]]) -> dict[str, dict[str, dict]]:
    """Per game, our Table 1 numbers from the final snapshot of each seed.

    "DQN": the average reward per episode of the final snapshot, mean over seeds, with
    its 95% Student's t interval over seeds (None for one seed: one run).
    "DQN Best": the best single episode of those evaluations, max over seeds.
    "episodes": the fewest episodes a seed completed there (0: its average is the return
    of the one episode the evaluation cut short, docs/fidelity.md V4).
    "step": the agent steps the final snapshot was trained for (the same for every seed).
    """
    scores: dict[str, dict[str, dict]] = {"DQN": {}, "DQN Best": {}}
    for game, by_seed in runs.items():
        epoch = final_epoch(by_seed)
        finals = {
            seed: {
                k: run["arrays"][k][-1]
                for k in ("average_reward", "best_episode_reward", "episodes", "step")
            }
            for seed, run in sorted(by_seed.items())
        }
        mean, low, high = aggregates.mean_interval([f["average_reward"] for f in finals.values()])
        scores["DQN"][game] = {
            "value": mean,
            "low": low,
            "high": high,
            "seeds": list(finals),
            "epoch": epoch,
            "episodes": int(min(f["episodes"] for f in finals.values())),
            "step": int(max(f["step"] for f in finals.values())),
        }
        scores["DQN Best"][game] = {
            "value": float(max(f["best_episode_reward"] for f in finals.values())),
            "seeds": list(finals),
            "epoch": epoch,
        }
    return scores


def table1(paths: list[Path], paper: Path, table_out: Path, figure_out: Path) -> list[Path]:
    """2013 Table 1 with our rows beside the paper's, as CSV, Markdown, LaTeX and a figure."""
    inputs = [*paths, paper]
    figure_files = output_files(figure_out, FIGURE_FILES, inputs)
    table_files = output_files(table_out, TABLE_FILES, inputs, figure_files[2])
    runs = load_evaluations(paths)
    attrs_of = _attrs_by_game(runs, runs)
    changes = _preset_changes(attrs_of)
    # each game's preset, with the keys its runs changed: a row of 1M steps beside the
    # paper's 10M says so
    preset = _per_game(
        {game: presets.describe(attrs["preset"], changes[game]) for game, attrs in attrs_of.items()}
    )
    epsilon = _eval_epsilon(attrs_of)
    games, paper_rows = read_paper_table(paper)
    unknown = sorted(set(runs) - set(games))
    if unknown:
        raise DataFileError(f"{paper}: has no column for {', '.join(unknown)}")
    absent = [method for method in FIGURE_METHODS if method not in paper_rows]
    if absent:
        raise DataFileError(
            f"{paper}: has no row for {', '.join(absent)} (the figure "
            f"shows {', '.join(FIGURE_METHODS)})"
        )
    ours = our_scores(runs)
    rows = []  # (method, source, {game: value, text or None})
    for method, scores in paper_rows.items():
        rows.append((method, "2013 paper", scores))
        if method in OUR_ROWS:
            rows.append(
                (
                    OUR_ROWS[method],
                    f"this run, preset {preset}",
                    {g: ours[method][g]["value"] if g in ours[method] else None for g in games},
                )
            )
        if method == "DQN":
            rows += _rows_under_ours(ours["DQN"], games)
    shown = [g for g in games if g in runs]
    figure, axes = plt.subplots(1, len(shown), squeeze=False, figsize=(2.6 * len(shown) + 1.2, 3.6))
    labels = [*FIGURE_METHODS, OUR_ROWS["DQN"]]
    intervals = {}
    for ax, game in zip(axes[0], shown):
        values = [paper_rows[m][game] for m in FIGURE_METHODS] + [ours["DQN"][game]["value"]]
        bars = ax.barh(range(len(labels)), values, color=["0.6"] * len(FIGURE_METHODS) + ["C0"])
        intervals[game] = None
        if ours["DQN"][game]["low"] is not None:
            mean, low, high = (ours["DQN"][game][k] for k in ("value", "low", "high"))
            # below the bar's middle, clear of its label
            drawn = ax.errorbar(
                mean,
                len(labels) - 1 + 0.25,
                xerr=[[mean - low], [high - mean]],
                fmt="none",
                ecolor="black",
                capsize=3,
            )
            intervals[game] = drawn.lines[2][0].get_segments()[0][:, 0].tolist()
        ax.bar_label(bars, fmt="%g", padding=2, fontsize=7)
        ax.margins(x=0.25)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(3))
        ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [""] * len(labels))
        ax.invert_yaxis()
        ax.set_title(game)
        ax.set_xlabel("Average total reward\n(game score)")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(
        _fit(f"2013 Table 1 (grey) and ours (blue), preset {preset}:", figure.get_figwidth())
        + "\nfinal snapshot, mean over seeds (whisker: its 95% t interval)",
        fontsize=10,
    )
    figure.tight_layout()
    data = {
        "figure": "table1",
        "preset": preset,
        "presets": {game: attrs["preset"] for game, attrs in attrs_of.items()},
        "preset_changes": changes,
        "eval_epsilon": epsilon,
        "games": shown,
        "methods": labels,
        "bars": {
            game: [float(p.get_width()) for p in ax.patches] for game, ax in zip(shown, axes[0])
        },
        "intervals": intervals,
        "ours": ours,
    }
    saved = _save(figure, figure_files, data, inputs, table_files)  # its JSON lists the tables
    return _write_tables(rows, games, table_files, preset, epsilon) + saved


def _rows_under_ours(ours: dict[str, dict], games: list[str]) -> list:
    """Table 1 rows under "DQN (ours)": its 95% interval over seeds, the seeds counted, the
    fewest episodes a seed completed and the agent steps its snapshots were trained for."""
    source = "Student's t over seeds"

    def bound(game, key):
        if game not in ours:
            return None
        return "one run" if ours[game][key] is None else ours[game][key]

    return [
        (f"{OUR_ROWS['DQN']} 95% CI low", source, {g: bound(g, "low") for g in games}),
        (f"{OUR_ROWS['DQN']} 95% CI high", source, {g: bound(g, "high") for g in games}),
        (
            f"{OUR_ROWS['DQN']} seeds",
            "runs averaged",
            {g: len(ours[g]["seeds"]) if g in ours else None for g in games},
        ),
        (
            f"{OUR_ROWS['DQN']} episodes",
            "fewest completed by a seed (0: one cut short)",
            {g: ours[g]["episodes"] if g in ours else None for g in games},
        ),
        (
            f"{OUR_ROWS['DQN']} agent steps",
            "trained, final snapshot",
            {g: ours[g]["step"] if g in ours else None for g in games},
        ),
    ]


# LaTeX's special characters in text and what typesets each as itself: unescaped, `%`
# would comment out the rest of a line (a caption's closing brace, a row's end).
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SPECIAL = re.compile("|".join(re.escape(c) for c in LATEX_SPECIALS))


def latex_text(text: str) -> str:
    """`text` as LaTeX that typesets it literally (one pass, so that the braces a
    replacement adds are not escaped again)."""
    return _LATEX_SPECIAL.sub(lambda match: LATEX_SPECIALS[match.group()], text)


def _write_tables(
    rows: list, games: list[str], files: list[Path], preset: str, epsilon: str
) -> list[Path]:
    csv_file, md_file, tex_file = files  # TABLE_FILES

    def cell(value, missing, digits):
        # CSV keeps every digit (it is data); Markdown and LaTeX round to one decimal.
        # Text ("one run") stands as it is.
        if value is None:
            return missing
        if isinstance(value, str):
            return value
        return f"{value:.15g}" if digits is None else f"{round(value, digits):.15g}"

    def tex_row(cells):
        # Every cell is escaped: numbers and the dash of a missing cell come through
        # unchanged, labels and text cells ("one run") typeset as written.
        return " & ".join(latex_text(text) for text in cells) + " \\\\"

    header = ["method", "source", *games]
    lines_csv = [header] + [[m, s, *(cell(v[g], "", None) for g in games)] for m, s, v in rows]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += [
        "| " + " | ".join([m, s, *(cell(v[g], "–", 1) for g in games)]) + " |" for m, s, v in rows
    ]
    # The rows as 2013 Table 1's caption defines them (its upper and lower table).
    caption = (
        "Random to Human: average total reward per episode; HNeat Best, HNeat Pixel and "
        "DQN Best: the best single episode. Paper: Mnih et al. 2013, Table 1 (its DQN at "
        f"epsilon 0.05). Ours: preset {preset}, final snapshot at epsilon {epsilon}, "
        "mean over seeds with its 95% Student's t interval (none for one run), the seeds, "
        "the fewest episodes a seed completed (0: one cut short) and the agent steps it "
        "was trained for, and best over seeds; a dash marks a game not trained."
    )
    tex = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_text(caption)}}}",
        "\\begin{tabular}{l" + "r" * len(games) + "}",
        "\\hline",
        tex_row(["Method", *games]),
        "\\hline",
    ]
    tex += [tex_row([m, *(cell(v[g], "--", 1) for g in games)]) for m, _, v in rows]
    tex += ["\\hline", "\\end{tabular}", "\\end{table}"]

    def write_csv(path):
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows(lines_csv)

    md_text = "\n".join(md + ["", caption]) + "\n"
    tex_text = "\n".join(tex) + "\n"
    return [
        atomic_write(csv_file, write_csv),
        atomic_write(md_file, lambda path: path.write_text(md_text)),
        atomic_write(tex_file, lambda path: path.write_text(tex_text)),
    ]


# Aggregates across games and seeds (`dqn.aggregates`). They use the final snapshot of
# each run, as our Table 1 does (which snapshot the paper's Table 1 evaluated, it does
# not say): "best" would pick each run's luckiest evaluation and bias every aggregate
# upwards. The sample-efficiency curve uses every snapshot.
AGGREGATE_EVALUATION = "final snapshot of each run (its last evaluation)"
# The 2013 paper's Human row is its tester's median after about two hours (§5.3), not the
# Nature paper's, which published aggregates normalise by: not comparable with them.
NORMALISATION_NOTE = (
    "normalised by the 2013 paper's Random and Human rows (not the Nature paper's, "
    "which published aggregates use)"
)
# The figures `aggregate` writes, as PREFIX_<name>.png, .pdf and .json.
AGGREGATE_FIGURES = ("intervals", "sample_efficiency", "profile", "improvement")
PROFILE_POINTS = 101  # thresholds of the performance profile


def aggregate(paths: list[Path], paper: Path, out: Path, reps: int, seed: int = 0) -> list[Path]:
    """Human-normalised scores across games and seeds, as Agarwal et al. (2021) report
    them: PREFIX_intervals (median, IQM, mean and optimality gap of the final snapshots,
    with 95% stratified-bootstrap intervals of `reps` resamples from `seed`),
    PREFIX_sample_efficiency (IQM against agent steps), PREFIX_profile (performance
    profile) and PREFIX_improvement (the probability that one preset or config improves
    on another, where the files hold more than one).

    Games without a human score (Catch) are left out, and named in each JSON.
    """
    inputs = [*paths, paper]
    files = {
        name: output_files(out, tuple(f"_{name}{suffix}" for suffix in FIGURE_FILES), inputs)
        for name in AGGREGATE_FIGURES
    }
    _, paper_rows = read_paper_table(paper)
    games = aggregates.normalised_games(paper, paper_rows)
    methods, left_out = load_methods(paths, games)
    finals = {label: final_scores(by_game, paper_rows) for label, by_game in methods.items()}
    notes = {label: aggregates.too_few_runs(scores) for label, scores in finals.items()}
    common = {
        "evaluation": AGGREGATE_EVALUATION,
        "left_out": left_out,
        "normalisation": {
            game: {
                "random": paper_rows[aggregates.RANDOM_ROW][game],
                "human": paper_rows[aggregates.HUMAN_ROW][game],
            }
            for game in games
        },
        "confidence": aggregates.CONFIDENCE,
        "reps": reps,
        "bootstrap_seed": seed,
        "methods": {
            label: {
                "games": list(by_game),
                "notes": notes[label],
                "scores": finals[label].tolist(),
                "runs": [
                    _final_run(game, s, run, paper_rows)
                    for game, by_seed in by_game.items()
                    for s, run in sorted(by_seed.items())
                ],
            }
            for label, by_game in methods.items()
        },
    }
    # The figures' titles: what was aggregated, by which normalisation, and what the
    # shaded intervals are.
    what = (
        NORMALISATION_NOTE
        + "\n"
        + "; ".join(
            f"{label}: {_count(len(by_game), 'game')} x "
            f"{_count(len(finals[label]), 'seed')}" + (f"\n{notes[label]}" if notes[label] else "")
            for label, by_game in methods.items()
        )
    )
    if not all(notes.values()):
        what += (
            f"\nshaded: 95% stratified-bootstrap confidence interval over seeds "
            f"({reps:,} resamples)"
        )
    drawn = {
        "intervals": _interval_figure(finals, what, common, reps, seed),
        "sample_efficiency": _curve_figure(methods, paper_rows, what, common, reps, seed),
        "profile": _profile_figure(finals, what, common, reps, seed),
        "improvement": _improvement_figure(methods, finals, what, common, reps, seed),
    }
    return [
        path
        for name, (figure, data) in drawn.items()
        for path in _save(figure, files[name], {**data, "title": figure.get_suptitle()}, inputs)
    ]


def load_methods(
    paths: list[Path], games: list[str]
) -> tuple[dict[str, dict[str, dict[int, dict]]], dict[str, str]]:
    """The evaluation files of `games`, grouped by what was trained (preset and config):
    {label: {game: {seed: run}}}, games in the order of `games`; and the games of the
    other files, with why they are left out. A label is the preset's name, with the keys
    where its config differs from another config of the same preset."""
    groups: dict[tuple[str, str], list] = {}
    left_out = {}
    # runs merged first, so that the pieces of one run evaluated otherwise are refused
    # rather than taken for two methods
    for run in merged_evaluations(paths):
        attrs = run[1]
        if attrs["game"] not in games:
            left_out[attrs["game"]] = "no Random and Human score in the paper's Table 1"
            continue
        config = json.dumps(json.loads(attrs["config"]), sort_keys=True)
        groups.setdefault((attrs["preset"], config), []).append(run)
    if not groups:
        raise DataFileError(
            f"no evaluation of a game with a human score ({', '.join(games)}) "
            f"among the files, which hold {', '.join(sorted(left_out))}"
        )
    labels = config_labels([(preset, json.loads(config)) for preset, config in groups])
    methods = {}
    for label, group in zip(labels, groups.values(), strict=True):
        runs = _by_game_and_seed(group)
        methods[label] = {game: runs[game] for game in games if game in runs}
    return methods, left_out


def config_labels(trained: list[tuple[str, dict]]) -> list[str]:
    """A name for each (preset, config): the preset's, with the keys where its config
    differs from another config of the same preset, e.g. `nature2015 (network_init=he_normal)`."""
    labels = []
    for preset, config in trained:
        namesakes = [other for name, other in trained if name == preset]
        differ = [
            key
            for key in sorted(config)
            if any(other.get(key) != config[key] for other in namesakes)
        ]
        labels.append(
            f"{preset} ({presets.key_values({key: config[key] for key in differ})})"
            if differ
            else preset
        )
    return labels


def final_scores(by_game: dict[str, dict[int, dict]], paper_rows: dict) -> np.ndarray:
    """The human-normalised final scores as a (runs, games) matrix."""
    _check_run_counts(by_game)
    # Every game's at one epoch: one config ends its epochs at the same steps in each game.
    final_epoch(
        {(game, seed): run for game, by_seed in by_game.items() for seed, run in by_seed.items()}
    )
    return np.stack(
        [
            aggregates.human_normalised(
                [run["arrays"]["average_reward"][-1] for _, run in sorted(by_seed.items())],
                game,
                paper_rows,
            )
            for game, by_seed in by_game.items()
        ],
        axis=1,
    )


def score_curves(
    by_game: dict[str, dict[int, dict]], paper_rows: dict
) -> tuple[np.ndarray, np.ndarray]:
    """The agent steps of the epochs every run has evaluated, and the human-normalised
    scores there as a (runs, games, epochs) array."""
    _check_run_counts(by_game)
    runs = [run for by_seed in by_game.values() for run in by_seed.values()]
    epochs = common_epochs(runs)
    # One config trains every game alike: an epoch ends at the same step in each run.
    steps = at_epochs(runs[0]["arrays"], "step", epochs)
    return steps, np.stack(
        [
            np.stack(
                [
                    aggregates.human_normalised(
                        at_epochs(run["arrays"], "average_reward", epochs), game, paper_rows
                    )
                    for _, run in sorted(by_seed.items())
                ]
            )
            for game, by_seed in by_game.items()
        ],
        axis=1,
    )


def _check_run_counts(by_game: dict[str, dict[int, dict]]) -> None:
    # The bootstrap resamples runs within each game: the matrix needs as many of each.
    counts = {game: len(by_seed) for game, by_seed in by_game.items()}
    if len(set(counts.values())) > 1:
        raise DataFileError(
            "the aggregates need as many seeds of every game; the files hold "
            + ", ".join(f"{game}: {n}" for game, n in counts.items())
        )


def _final_run(game: str, seed: int, run: dict, paper_rows: dict) -> dict:
    """A run's final evaluation, with the spread of its episodes' returns."""
    arrays = run["arrays"]
    returns = episode_returns(arrays)[-1]  # a file's own split was checked when it was read
    return {
        "game": game,
        "seed": seed,
        "epoch": int(arrays["epoch"][-1]),
        "step": int(arrays["step"][-1]),
        "average_reward": float(arrays["average_reward"][-1]),
        "normalised": float(
            aggregates.human_normalised(arrays["average_reward"][-1], game, paper_rows)
        ),
        "episodes": len(returns),
        "episode_return_sd": return_sd(returns),
    }


def _interval_figure(
    finals: dict, what: str, common: dict, reps: int, seed: int
) -> tuple[plt.Figure, dict]:
    points, intervals = aggregates.interval_estimates(
        finals, aggregates.aggregate_metrics, reps, seed
    )
    labels = list(finals)
    figure, axes = plt.subplots(
        1,
        len(aggregates.METRICS),
        squeeze=False,
        figsize=(2.8 * len(aggregates.METRICS) + 1.5, 1.9 + 0.4 * len(labels)),
    )
    for column, (ax, metric) in enumerate(zip(axes[0], aggregates.METRICS)):
        _draw_estimates(
            ax,
            labels,
            {label: points[label][column] for label in labels},
            {
                label: None if intervals[label] is None else intervals[label][:, column]
                for label in labels
            },
            metric,
        )
        ax.set_title(
            metric + (" (lower is better)" if metric == "Optimality gap" else ""), fontsize=9
        )
        ax.set_xlabel("Human-normalised score")
        if column:
            ax.set_yticklabels([])
    figure.suptitle(f"Aggregates of human-normalised scores, final snapshot. {what}", fontsize=9)
    figure.tight_layout()
    data = {
        "figure": "aggregate_intervals",
        **common,
        "metrics": list(aggregates.METRICS),
        "points": {label: points[label].tolist() for label in labels},
        "intervals": {
            label: None if intervals[label] is None else intervals[label].tolist()
            for label in labels
        },
        "lines": _drawn_lines(figure),
    }
    return figure, data


def _curve_figure(
    methods: dict,
    paper_rows: dict,
    what: str,
    common: dict,
    reps: int,
    seed: int,
) -> tuple[plt.Figure, dict]:
    curves = {label: score_curves(by_game, paper_rows) for label, by_game in methods.items()}
    points, intervals = aggregates.interval_estimates(
        {label: scores for label, (_, scores) in curves.items()},
        aggregates.iqm_per_point,
        reps,
        seed,
    )
    figure, ax = plt.subplots(figsize=(6.4, 4.2))
    bands = []
    for index, (label, (steps, _)) in enumerate(curves.items()):
        ax.plot(
            steps, points[label], marker="o", markersize=3, color=f"C{index}", label=f"{label} IQM"
        )
        if intervals[label] is not None:
            bands.append(_band(ax, "step", steps, intervals[label], label, index))
    ax.set_xlabel("Agent steps")
    ax.set_ylabel("IQM of human-normalised score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.suptitle(f"Sample efficiency, every snapshot every run has. {what}", fontsize=9)
    figure.tight_layout()
    data = {
        "figure": "aggregate_sample_efficiency",
        **common,
        "evaluation": "every snapshot that every run has evaluated",
        "lines": _drawn_lines(figure),
        "bands": bands,
    }
    return figure, data


def _band(ax, x_name: str, x: np.ndarray, interval, label: str, index: int) -> dict:
    """Draw a method's interval as a band in its colour; return the band's record for
    the figure's JSON (its x values under `x_name`)."""
    low, high = interval
    ax.fill_between(x, low, high, color=f"C{index}", alpha=0.25, linewidth=0)
    return {"method": label, x_name: x.tolist(), "low": low.tolist(), "high": high.tolist()}


def _profile_figure(
    finals: dict, what: str, common: dict, reps: int, seed: int
) -> tuple[plt.Figure, dict]:
    every = np.concatenate([scores.ravel() for scores in finals.values()])
    taus = np.linspace(min(0.0, every.min()), max(1.0, every.max()), PROFILE_POINTS)
    points, intervals = aggregates.interval_estimates(finals, aggregates.profile(taus), reps, seed)
    figure, ax = plt.subplots(figsize=(6.4, 4.2))
    bands = []
    for index, label in enumerate(finals):
        ax.plot(taus, points[label], color=f"C{index}", label=f"{label} profile")
        if intervals[label] is not None:
            bands.append(_band(ax, "tau", taus, intervals[label], label, index))
    ax.set_xlabel("Human-normalised score (tau)")
    ax.set_ylabel("Fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.suptitle(f"Performance profile, final snapshot. {what}", fontsize=9)
    figure.tight_layout()
    data = {"figure": "aggregate_profile", **common, "lines": _drawn_lines(figure), "bands": bands}
    return figure, data


def _improvement_figure(
    methods: dict, finals: dict, what: str, common: dict, reps: int, seed: int
) -> tuple[plt.Figure, dict]:
    pairs, shared_games = {}, {}
    for x, y in itertools.combinations(finals, 2):
        shared = [game for game in methods[x] if game in methods[y]]
        if shared:
            name = f"P({x} > {y})"
            shared_games[name] = shared
            pairs[name] = [
                finals[x][:, [list(methods[x]).index(g) for g in shared]],
                finals[y][:, [list(methods[y]).index(g) for g in shared]],
            ]
    figure, ax = plt.subplots(figsize=(6.4, 1.9 + 0.4 * max(1, len(pairs))))
    data = {"figure": "aggregate_improvement", **common, "pairs": {}}
    if not pairs:
        data["note"] = (
            "one preset and config trained: no comparison"
            if len(finals) == 1
            else "no game trained by two of them: no comparison"
        )
        ax.text(
            0.5,
            0.5,
            f"Probability of improvement: {data['note']}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    else:
        points, intervals = aggregates.interval_estimates(pairs, aggregates.improvement, reps, seed)
        _draw_estimates(
            ax,
            list(pairs),
            {name: points[name][0] for name in pairs},
            {name: None if intervals[name] is None else intervals[name][:, 0] for name in pairs},
            "probability of improvement",
        )
        ax.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
        ax.set_xlim(0, 1)
        ax.set_xlabel("P(X > Y): a run of X scores above a run of Y on a game")
        data["pairs"] = {
            name: {
                "games": shared_games[name],
                "point": float(points[name][0]),
                "interval": None if intervals[name] is None else intervals[name][:, 0].tolist(),
                "note": aggregates.too_few_runs(pairs[name]),
            }
            for name in pairs
        }
        figure.suptitle(f"Probability of improvement, final snapshot. {what}", fontsize=9)
    figure.tight_layout()
    data["lines"] = _drawn_lines(figure)
    return figure, data


def _draw_estimates(
    ax: plt.Axes, names: list[str], points: dict, intervals: dict, what: str
) -> None:
    """Each name's point estimate as a tick on its row, over its interval as a bar."""
    for row, name in enumerate(names):
        if intervals[name] is not None:
            ax.plot(
                intervals[name],
                [row, row],
                color=f"C{row}",
                linewidth=8,
                alpha=0.4,
                solid_capstyle="butt",
                label=f"{name} {what}: 95% CI",
            )
        ax.plot(
            [points[name]],
            [row],
            color=f"C{row}",
            marker="|",
            markersize=16,
            markeredgewidth=2,
            linestyle="none",
            label=f"{name} {what}",
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _ranges(numbers: list[int]) -> str:
    """Sorted integers as runs: [1, 2, 3, 7] -> "1-3, 7"."""
    runs = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _attrs_by_game(runs: dict[str, dict[int, dict]], games) -> dict[str, dict]:
    """Each game's attributes, those of its first seed (load_evaluations refuses seeds of
    another preset or config)."""
    return {game: next(iter(runs[game].values()))["attrs"] for game in games}


def _eval_epsilon(attrs_of: dict[str, dict]) -> str:
    """The epsilon of the evaluations, each game's where they differ."""
    return _per_game(
        {
            game: f"{json.loads(attrs['config'])['eval_epsilon']:g}"
            for game, attrs in attrs_of.items()
        }
    )


def _preset_changes(attrs_of: dict[str, dict]) -> dict[str, dict]:
    """Each game's keys changed from its preset (dqn.presets.changes)."""
    return {
        game: presets.changes(attrs["preset"], json.loads(attrs["config"]))
        for game, attrs in attrs_of.items()
    }


def _fit(line: str, inches: float, fontsize: float = 10) -> str:
    """`line` broken into lines that fit `inches` of text in `fontsize` (at 10, a title's,
    about 12 characters an inch)."""
    return textwrap.fill(line, width=int(inches * 12 * 10 / fontsize))


def eval_length(config: dict) -> str:
    """How long each evaluation of a run with `config` played: eval_steps agent steps,
    or fewer where eval_episodes ends it first."""
    steps = f"{config['eval_steps']:,} steps"
    episodes = config["eval_episodes"]
    return steps if not episodes else f"{steps} or {episodes:,} games, whichever ends first"


def _per_game(values: dict[str, str]) -> str:
    """One value where every game has it, else each with its game."""
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{value} ({game})" for game, value in values.items())


def _drawn_lines(figure: plt.Figure) -> list[dict]:
    """The data of every labelled line as drawn, read back from the figure's artists."""
    return [
        {
            "label": line.get_label(),
            "x": np.asarray(line.get_xdata(), float).tolist(),
            "y": np.asarray(line.get_ydata(), float).tolist(),
        }
        for ax in figure.axes
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    ]


def _save(
    figure: plt.Figure,
    files: list[Path],
    data: dict,
    inputs: list[Path],
    with_files: list[Path] = (),
) -> list[Path]:
    """Write `figure` to `files` (`output_files`' of FIGURE_FILES) with `data` as JSON,
    and with it the files it was drawn from (`inputs`, as the command was given them)
    and the code that drew it. The JSON goes first and lists these files and
    `with_files`, the command's others (`output_files`' manifest): a command stopped
    halfway is let to replace them."""
    png, pdf, json_file = files
    outputs = [_relative(file, json_file) for file in [*with_files, *files]]
    record = {"inputs": [str(path) for path in inputs], "drawn_by": provenance.figure_record()}
    json_text = json.dumps({**data, **record, OUTPUTS_KEY: outputs}, indent=1) + "\n"
    atomic_write(json_file, lambda p: p.write_text(json_text))
    # Fixed metadata: the same data gives the same PDF bytes.
    atomic_write(png, lambda p: figure.savefig(p, format="png", dpi=150))
    atomic_write(
        pdf,
        lambda p: figure.savefig(p, format="pdf", metadata={"CreationDate": None, "ModDate": None}),
    )
    plt.close(figure)
    return files
