"""The `dqn` command: parse, validate, call one module. Errors become one line and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path

from dqn import presets
from dqn.errors import ConfigError, DqnError, Stopped, os_error_line

DESCRIPTION = """\
Train DQN (Mnih et al. 2013, or the Nature 2015 variant) on an Atari game, evaluate
its snapshots, and draw the paper's figures and table from the results. Each command
does one stage; the Snakemake workflow (Snakefile) runs them all for the paper's games."""

EXAMPLES = """\
examples:
  dqn train --game Breakout --preset quick --seed 0 --out runs/Breakout/seed0
  dqn evaluate --run runs/Breakout/seed0 --out eval/Breakout/seed0.h5
  dqn plot training-curves --eval eval/Breakout/seed0.h5 --out figures/curves
  dqn presets quick           # the preset's keys and values, as JSON

`dqn COMMAND --help` describes a command's options."""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Progress and status lines (dqn.progress, dqn.train) go to stderr with the time.
    logging.basicConfig(
        format="[%(asctime)s] %(message)s",
        datefmt="%H:%M:%S",
        level=logging.INFO,
        stream=sys.stderr,
        force=True,
    )
    try:
        return _run(args)
    except DqnError as error:
        print(f"dqn {args.command}: error: {error}", file=sys.stderr)
        return getattr(error, "exit_status", 2)
    except Stopped as stop:
        # 128 + signal, as a shell reports a process the signal ended: a failure to
        # Snakemake and SLURM, so the job is retried, and the retry continues.
        print(f"dqn {args.command}: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        # Ctrl-C in a command that saves nothing on the way (train saves, by Stopped):
        # its outputs are written whole at its end or not at all. `console` ends the
        # process; a caller of main in the same process (a test) sees the interrupt.
        print(f"dqn {args.command}: stopped by SIGINT (Ctrl-C)", file=sys.stderr, flush=True)
        raise
    except OSError as error:
        print(f"dqn {args.command}: error: {os_error_line(error)}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    """The command line, every command and option; tests/test_docs.py holds the docs to it."""
    parser = argparse.ArgumentParser(
        prog="dqn",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one game from one seed")
    train.add_argument(
        "--game",
        required=True,
        help="BeamRider, Breakout, Enduro, Pong, "
        "Qbert, Seaquest, SpaceInvaders (the paper's) or Catch (a test task)",
    )
    train.add_argument(
        "--preset",
        default="paper2013",
        help=f"one of {', '.join(presets.PRESETS)} (default paper2013: the 2013 paper's 10M steps)",
    )
    train.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    train.add_argument("--out", type=Path, required=True, help="the run directory")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset key (repeatable)",
    )
    _device_arguments(train)
    train.add_argument(
        "--progress-s", type=float, default=10.0, help="seconds between progress lines"
    )
    train.add_argument(
        "--no-tensorboard",
        dest="live_view",
        action="store_false",
        help="write no TensorBoard event files (the live view of the run; "
        "`tensorboard --logdir` on the run directories shows them)",
    )

    evaluate = commands.add_parser("evaluate", help="evaluate every snapshot of a run")
    evaluate.add_argument("--run", type=Path, required=True, help="a run directory")
    evaluate.add_argument("--out", type=Path, required=True, help="the evaluation file (.h5)")
    evaluate.add_argument("--workers", type=int, default=1, help="snapshots evaluated at once")
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an evaluation key of the run's "
        "config (eval_steps, eval_episodes, eval_epsilon, "
        "eval_max_episode_frames; repeatable)",
    )
    evaluate.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=[],
        metavar="N",
        help="evaluate these snapshots only (default: every one)",
    )
    _device_arguments(evaluate, threads=1)

    trace = commands.add_parser(
        "trace", help="max-Q along one episode of the final snapshot (Figure 3's data)"
    )
    trace.add_argument("--run", type=Path, required=True, help="a run directory")
    trace.add_argument("--out", type=Path, required=True, help="the value-trace file (.h5)")
    trace.add_argument(
        "--steps",
        type=int,
        default=1000,
        help="agent steps to play at most (the episode may end first)",
    )
    _device_arguments(trace, threads=1)

    watch = commands.add_parser(
        "watch", help="a video of a snapshot playing, with its predicted values beside the screen"
    )
    watch.add_argument("--run", type=Path, required=True, help="a run directory")
    watch.add_argument("--epoch", type=int, help="the snapshot's epoch (default: the newest)")
    watch.add_argument(
        "--out", type=Path, required=True, help="the video: .mp4 (H.264), or .gif (for short clips)"
    )
    watch.add_argument("--episodes", type=int, default=1, help="episodes to play at most")
    watch.add_argument(
        "--max-steps",
        type=int,
        default=4500,
        help="agent steps to play at most (a frame each; 4500: 5 minutes at frame skip 4)",
    )
    _device_arguments(watch, threads=1)

    plot = commands.add_parser(
        "plot",
        help="the paper's figures and table, and the aggregates "
        "across games and seeds, from evaluation files",
    )
    figures = plot.add_subparsers(dest="figure", required=True)
    curves = figures.add_parser(
        "training-curves", help="Figure 2: reward and average max-Q per epoch, a column per game"
    )
    curves.add_argument("--eval", type=Path, nargs="+", required=True, help="evaluation files")
    curves.add_argument(
        "--games", nargs="+", help="games to show, in this order (default: every game of the files)"
    )
    curves.add_argument(
        "--paper",
        type=Path,
        help="the paper's Figure 2 points (workflow/data/figure2_paper2013.csv), drawn "
        "beside ours where our epochs are the paper's",
    )
    curves.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output prefix: writes PREFIX.png, PREFIX.pdf, PREFIX.json",
    )
    value = figures.add_parser("value-function", help="Figure 3: max-Q along 30 frames")
    value.add_argument("--trace", type=Path, required=True, help="a value-trace file")
    value.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output prefix: writes PREFIX.png, PREFIX.pdf, PREFIX.json",
    )
    table = figures.add_parser("table1", help="Table 1: our scores beside the paper's")
    table.add_argument("--eval", type=Path, nargs="+", required=True, help="evaluation files")
    table.add_argument("--paper", type=Path, required=True, help="the paper's Table 1 (CSV)")
    table.add_argument(
        "--table",
        type=Path,
        required=True,
        help="output prefix: writes PREFIX.csv, PREFIX.md, PREFIX.tex",
    )
    table.add_argument(
        "--figure",
        type=Path,
        required=True,
        help="output prefix: writes PREFIX.png, PREFIX.pdf, PREFIX.json",
    )

    anchored = figures.add_parser(
        "anchors",
        help="each run's evaluation beside the published points of a public "
        "reproduction of its game and preset (docs/breakout-reference.md)",
    )
    anchored.add_argument(
        "--eval",
        type=Path,
        nargs="+",
        required=True,
        help="evaluation files (a run's several files, each of other snapshots, make one curve)",
    )
    anchored.add_argument(
        "--anchors",
        type=Path,
        required=True,
        help="the reproductions' points (CSV, e.g. reference-runs/anchors.csv)",
    )
    anchored.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output prefix: writes PREFIX.png, PREFIX.pdf, PREFIX.json",
    )
    aggregate = figures.add_parser(
        "aggregate",
        help="human-normalised scores across games and seeds (Agarwal et al. "
        "2021): median, IQM, mean and optimality gap with stratified-bootstrap confidence "
        "intervals, IQM against agent steps, performance profile, probability of improvement",
    )
    aggregate.add_argument(
        "--eval",
        type=Path,
        nargs="+",
        required=True,
        help="evaluation files: their final snapshots (the curve: every "
        "snapshot); files of two presets or configs are compared",
    )
    aggregate.add_argument(
        "--paper",
        type=Path,
        required=True,
        help="the paper's Table 1 (CSV): its Random and Human rows normalise",
    )
    aggregate.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    aggregate.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    aggregate.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output prefix: writes PREFIX_intervals, "
        "PREFIX_sample_efficiency, PREFIX_profile and PREFIX_improvement, "
        "each .png, .pdf and .json",
    )

    info = commands.add_parser("info", help="what an HDF5 file holds and its provenance")
    info.add_argument("files", type=Path, nargs="+")

    show = commands.add_parser("presets", help="print the presets (or one) as JSON")
    show.add_argument("name", nargs="?")

    bench = commands.add_parser("bench", help="print throughput and memory figures as JSON")
    bench.add_argument("--game", default="Breakout")
    bench.add_argument("--seconds", type=float, default=5.0, help="length of each timing")
    _device_arguments(bench)
    return parser


def _device_arguments(parser: argparse.ArgumentParser, threads: int = 0) -> None:
    """--device, --threads (default `threads`) and --jobs-per-gpu. The commands that play
    one state at a time (evaluate, trace, watch) default to one thread: a second gains
    them nothing and, beside other work, costs them several times their time
    (docs/breakout-reference.md, "Re-checking")."""
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--threads",
        type=int,
        default=threads,
        help=f"CPU threads for torch (0: torch's default; default {threads})",
    )
    parser.add_argument(
        "--jobs-per-gpu",
        type=int,
        default=1,
        metavar="K",
        help="dqn processes that may share one GPU (default 1: a GPU of "
        "its own; give every job the same K)",
    )


# Seeds are 32-bit, as the workflow's schema and NumPy's global seed (the bootstrap's
# np.random.seed) have them. Refused up front: a train seed of 2**63 or more would fail
# only when heldout.h5 is written (HDF5 attributes are 64-bit), minutes into the run.
SEED_LIMIT = 2**32


def check_seed(seed: int) -> None:
    """Refuse a seed outside [0, SEED_LIMIT), naming --seed."""
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"--seed {seed}: must be in [0, {SEED_LIMIT - 1}]")


def _run(args: argparse.Namespace) -> int:
    if (seed := getattr(args, "seed", None)) is not None:  # train's and plot aggregate's
        check_seed(seed)
    if args.command == "presets":
        chosen = (
            {args.name: presets.load(args.name)}
            if args.name
            else {name: presets.load(name) for name in presets.PRESETS}
        )
        print(json.dumps({name: config.as_dict() for name, config in chosen.items()}, indent=2))
        return 0
    if args.command == "info":
        from dqn import h5io

        print("\n\n".join(h5io.describe(path) for path in args.files))
        return 0
    if args.command == "plot":
        # Plots read evaluation and trace files only: no torch, no emulator.
        from dqn import plots

        if args.figure == "training-curves":
            written = plots.training_curves(args.eval, args.out, args.games, args.paper)
        elif args.figure == "value-function":
            written = plots.value_function(args.trace, args.out)
        elif args.figure == "anchors":
            written = plots.anchored_curves(args.eval, args.anchors, args.out)
        elif args.figure == "aggregate":
            if args.reps < 1:
                raise ConfigError(f"--reps {args.reps}: must be >= 1")
            written = plots.aggregate(args.eval, args.paper, args.out, args.reps, args.seed)
        else:
            written = plots.table1(args.eval, args.paper, args.table, args.figure)
        print("\n".join(str(path) for path in written))
        return 0

    for name, least in (
        ("threads", 0),
        ("workers", 1),
        ("seconds", 0.1),
        ("progress_s", 0.1),
        ("jobs_per_gpu", 1),
    ):
        value = getattr(args, name, least)
        if not least <= value < math.inf:  # nan fails both comparisons
            raise ConfigError(
                f"--{name.replace('_', '-')} {value}: must be a finite number >= {least}"
            )

    import torch

    from dqn.devices import resolve_device

    # The request is checked before the device is chosen: --device auto and cuda claim a
    # GPU, and wait while every GPU is taken.
    if args.command == "train":
        from dqn.games import check_game

        config = presets.load(args.preset, args.overrides)
        game = check_game(args.game)
    elif args.command == "evaluate":
        from dqn.evaluate import checked_request

        checked_request(args.run, args.out, args.overrides, args.epochs)
    elif args.command == "trace":
        from dqn.evaluate import TrainedRun

        if args.steps < 1:
            raise ConfigError(f"--steps {args.steps}: must be >= 1")
        TrainedRun.open(args.run).dir.check_output(args.out, "value_trace")
    elif args.command == "watch":
        from dqn import video

        video.checked_request(args.run, args.out, args.epoch, args.episodes, args.max_steps)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, args.jobs_per_gpu)
    if args.command == "train":
        from dqn.train import train

        train(
            game,
            args.preset,
            config,
            args.seed,
            args.out,
            device,
            args.progress_s,
            args.live_view,
        )
    elif args.command == "evaluate":
        from dqn.evaluate import evaluate_run
        from dqn.layouts import episode_returns, return_sd

        table = evaluate_run(args.run, args.out, device, args.workers, args.overrides, args.epochs)
        print(f"{args.out}: {len(table['epoch'])} snapshots evaluated")
        for step, average, returns in zip(
            table["step"], table["average_reward"], episode_returns(table)
        ):
            if (sd := return_sd(returns)) is not None:
                spread = f"{sd:.2f} sd over {len(returns)} episodes"
            elif len(returns) == 1:
                spread = "1 episode"
            else:  # dqn.evaluate.play: the one episode cut short stands alone
                spread = "no episode ended: the score of the one cut short"
            print(f"step {step:>10,}: average reward {average:.2f} ({spread})")
    elif args.command == "trace":
        from dqn.evaluate import trace_run

        table = trace_run(args.run, args.out, device, args.steps)
        print(f"{args.out}: {len(table['max_q'])} steps traced")
    elif args.command == "watch":
        from dqn.video import watch

        frames = watch(args.run, args.out, device, args.epoch, args.episodes, args.max_steps)
        print(f"{args.out}: {frames} frames")
    elif args.command == "bench":
        from dqn.bench import run_benchmarks

        print(json.dumps(run_benchmarks(args.game, device, args.seconds), indent=2))
    return 0


def console() -> None:
    """The `dqn` command as a process (its console script, `python -m dqn`): `main`'s
    status is the exit status. Ctrl-C ends the process at once, with 128 + SIGINT,
    without waiting for the evaluation threads still playing."""
    try:
        status = main()
    except KeyboardInterrupt:
        os._exit(128 + signal.SIGINT)
    sys.exit(status)


if __name__ == "__main__":
    console()
