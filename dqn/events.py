"""A live view of a training run: TensorBoard event files in the run directory.

`tensorboard --logdir results/runs` shows a run while it trains. The view is drawn from
the training log (`dqn.trainlog`, which stays the record of truth) as rows are added to
it: each episode's return and length at the agent step it ended, and each epoch's loss,
epsilon and throughput at the step it ended, with the average max-Q of the held-out
states (2013 §5.1, Figure 2's lower row) measured then. The evaluation reward is not
known while training: `dqn evaluate` measures it afterwards, into its own file.

A resumed run shows each step once. Everything up to a step is flushed before that step
is committed (an epoch's snapshot, an interrupt file), and a resumed run opens its
writer with `purge_step` one past the step it resumes from: TensorBoard's reader then
drops what the stopped process wrote after that step, which the resumed run writes again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from dqn.networks import average_max_q
from dqn.trainlog import TrainLog

EVENTS_DIR = "events"  # inside the run directory
FLUSH_S = 30  # the view is at most this far behind the run
EPOCH_SCALARS = ("loss_mean", "epsilon", "steps_per_s", "updates_per_s")


class LiveView:
    """Writes the rows a training log gains, as TensorBoard scalars."""

    def __init__(
        self,
        run_root: Path,
        log: TrainLog,
        step: int,
        heldout_states: np.ndarray,
        device: torch.device,
    ):
        """`log` and `step`: where the run starts (or resumes); what `log` holds up to
        `step` was written and flushed by the process that committed it."""
        self.writer = SummaryWriter(
            str(Path(run_root) / EVENTS_DIR), purge_step=step + 1, flush_secs=FLUSH_S
        )
        self.heldout_states, self.device = heldout_states, device
        self.episodes_written = len(log.episodes["return"])
        self.epochs_written = len(log.epochs["epoch"])

    def write(self, log: TrainLog) -> None:
        """The rows added to `log` since the last call (the writer's thread writes them
        out; it flushes every FLUSH_S seconds)."""
        episodes = log.episodes
        for i in range(self.episodes_written, len(episodes["return"])):
            step = episodes["end_step"][i]
            self.writer.add_scalar("episode/return", episodes["return"][i], step)
            self.writer.add_scalar("episode/length_steps", episodes["length_steps"][i], step)
        self.episodes_written = len(episodes["return"])
        epochs = log.epochs
        for i in range(self.epochs_written, len(epochs["epoch"])):
            for name in EPOCH_SCALARS:
                self.writer.add_scalar(f"train/{name}", epochs[name][i], epochs["step"][i])
        self.epochs_written = len(epochs["epoch"])

    def end_epoch(self, log: TrainLog, network: torch.nn.Module) -> None:
        """The epoch just added to `log`, with its average max-Q, on disk before the
        epoch is committed."""
        self.writer.add_scalar(
            "train/average_max_q",
            average_max_q(network, self.heldout_states, self.device),
            log.epochs["step"][-1],
        )
        self.flush(log)

    def flush(self, log: TrainLog) -> None:
        """Everything `log` holds, on disk (before a step is committed)."""
        self.write(log)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
