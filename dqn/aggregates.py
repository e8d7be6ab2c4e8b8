"""Results across games and seeds as deep RL reports them since Agarwal et al., "Deep
Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS 2021).

Scores are human-normalised with the 2013 paper's own Random and Human rows, not the
Nature paper's that published aggregates use (its human scores differ, e.g. Pong's), so
the values compare with other runs normalised here, not with published ones. Over a
matrix of normalised scores (one row per run, one column per game) rliable computes the
interquartile mean (IQM), median, mean and optimality gap, the performance profile and
the probability of improvement, and their stratified-bootstrap confidence intervals:
runs are resampled with replacement within each game, so an interval says how much the
aggregate could move with other seeds of the same games. Table 1's per-game mean over
seeds gets a Student's t interval instead. Numbers only; `dqn.plots` draws them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import scipy.stats
from rliable import library, metrics

from dqn.errors import DataFileError

CONFIDENCE = 0.95
# The paper's rows that define the normalisation: 0 is a random policy, 1 a human tester.
RANDOM_ROW, HUMAN_ROW = "Random", "Human"
# What `aggregate_metrics` returns, in this order (Agarwal et al.'s Figure 9 order).
METRICS = ("Median", "IQM", "Mean", "Optimality gap")


def normalised_games(paper: Path, paper_rows: dict[str, dict[str, float]]) -> list[str]:
    """The games of the paper's table (file `paper`, its rows `paper_rows`) that have a
    Random and a Human score."""
    if absent := [row for row in (RANDOM_ROW, HUMAN_ROW) if row not in paper_rows]:
        raise DataFileError(
            f"{paper}: has no row {' or '.join(absent)} (the rows {RANDOM_ROW} and "
            f"{HUMAN_ROW} normalise the scores)"
        )
    return [
        game
        for game in paper_rows[HUMAN_ROW]
        if paper_rows[HUMAN_ROW][game] != paper_rows[RANDOM_ROW][game]
    ]


def human_normalised(score, game: str, paper_rows: dict[str, dict[str, float]]):
    """(score - random) / (human - random), with the paper's rows for `game`."""
    random, human = paper_rows[RANDOM_ROW][game], paper_rows[HUMAN_ROW][game]
    return (np.asarray(score, dtype=np.float64) - random) / (human - random)


def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    """METRICS of a (runs, games) matrix of normalised scores. The optimality gap is the
    mean shortfall from human level (scores above 1 count as 1)."""
    return np.array(
        [
            metrics.aggregate_median(scores),
            metrics.aggregate_iqm(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_optimality_gap(scores),
        ]
    )


def iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """The IQM at each point of a (runs, games, points) array: a sample-efficiency curve.
    rliable's aggregate_iqm of each point's matrix, in one call for all points (the
    bootstrap calls this thousands of times, over up to 200 snapshots)."""
    return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), 0.25, axis=0)


def profile(taus: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The performance profile at `taus`: the fraction of all runs of all games whose
    normalised score exceeds tau."""
    return lambda scores: library.score_distributions(scores, taus)


def improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
    """P(X > Y): the probability that a run of X beats a run of Y on a game, averaged
    over the games (Mann-Whitney U statistic per game)."""
    return np.array([metrics.probability_of_improvement(scores_x, scores_y)])


def too_few_runs(scores: np.ndarray | list[np.ndarray]) -> str | None:
    """Why no bootstrap interval can be given for `scores`, or None.

    With one run of a game every resample of it is that run: the interval would have no
    width and claim a certainty one seed cannot give.
    """
    runs = min(len(matrix) for matrix in (scores if isinstance(scores, list) else [scores]))
    if runs >= 2:
        return None
    games = (scores[0] if isinstance(scores, list) else scores).shape[1]
    if games == 1:
        return (
            "one game and one seed: each aggregate is that run's normalised score; "
            "no interval (it needs two seeds or more)"
        )
    return "one seed per game: no interval (a bootstrap over seeds needs two or more)"


def interval_estimates(
    scores: dict[str, np.ndarray | list[np.ndarray]],
    func: Callable[..., np.ndarray],
    reps: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """rliable's point estimates of `func` and their 95% stratified-bootstrap intervals
    (percentile, `reps` resamples), per key: a (runs, games, ...) array, or a list of
    them for a function of several (each resampled on its own). The interval is None
    where `too_few_runs` says so. The same seed gives the same intervals."""
    points, intervals = {}, {}
    for key, value in scores.items():
        if too_few_runs(value):
            points[key] = func(*value) if isinstance(value, list) else func(value)
            intervals[key] = None
            continue
        with _numpy_global_seed(seed):
            point, interval = library.get_interval_estimates(
                {key: value}, func, reps=reps, confidence_interval_size=CONFIDENCE
            )
        points[key], intervals[key] = point[key], interval[key]
    return points, intervals


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    # rliable 1.2.0's StratifiedBootstrap draws its resamples with np.random.choice, NumPy's
    # global generator, whatever random_state it is given: seed that one for the
    # bootstrap, then give it back as it was.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def mean_interval(values) -> tuple[float, float | None, float | None]:
    """The mean of one game's runs and its 95% Student's t interval; no interval for one run.

    A per-game mean over a handful of seeds: t's wide quantiles at few runs (12.7 at
    two) say how little they pin the mean down, where a bootstrap of two runs could not
    reach beyond them.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    half = (
        scipy.stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1)
        * values.std(ddof=1)
        / np.sqrt(len(values))
    )
    return mean, mean - half, mean + half
