"""What a training run reports as it goes: the epoch's throughput and loss (rows of the
training log) and the progress line, through the `logging` module (`dqn.cli` prints its
records to stderr, each with the time)."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from dqn.trainlog import Counters, TrainLog

LOG = logging.getLogger("dqn")


class Meter:
    """Throughput, loss and the progress line (steps, episodes, return, epsilon, ETA)."""

    def __init__(self, counters: Counters, updates: int, device: torch.device):
        self.report_time = time.monotonic()
        self.epoch_start = (time.monotonic(), counters.step, updates)
        self.report_step = counters.step
        # Summed on the device: reading a GPU loss every update would wait for the GPU.
        self.loss_sum = torch.zeros((), device=device)
        self.losses = 0

    def epoch_in_progress(self) -> dict:
        """The epoch in progress (its losses, time and start), for an interrupt file."""
        start_time, start_step, start_updates = self.epoch_start
        return {
            "loss_sum": float(self.loss_sum),
            "losses": self.losses,
            "epoch_elapsed_s": time.monotonic() - start_time,
            "epoch_start_step": start_step,
            "epoch_start_update": start_updates,
        }

    def continue_epoch(self, epoch: dict) -> None:
        """Continue the epoch in progress that `epoch_in_progress` gave: its loss mean
        stays exact, and its throughput counts the time before the stop, not the time
        the run was stopped."""
        self.loss_sum.fill_(epoch["loss_sum"])
        self.losses = int(epoch["losses"])
        self.epoch_start = (
            time.monotonic() - epoch["epoch_elapsed_s"],
            int(epoch["epoch_start_step"]),
            int(epoch["epoch_start_update"]),
        )

    def add_loss(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.losses += 1

    def end_epoch(self, log: TrainLog, counters: Counters, updates: int, eps: float) -> None:
        """Add the epoch's row to `log` and report it."""
        now = time.monotonic()
        start_time, start_step, start_updates = self.epoch_start
        wall = max(now - start_time, 1e-9)
        log.add_epoch(
            {
                "epoch": counters.epoch,
                "step": counters.step,
                "update": updates,
                "episodes": len(log.episodes["return"]),
                "loss_mean": float(self.loss_sum) / max(1, self.losses),
                "epsilon": eps,
                "steps_per_s": (counters.step - start_step) / wall,
                "updates_per_s": (updates - start_updates) / wall,
                "wall_s": wall,
            }
        )
        self.epoch_start = (now, counters.step, updates)
        self.loss_sum.zero_()
        self.losses = 0
        e = {name: values[-1] for name, values in log.epochs.items()}
        LOG.info(
            f"epoch {e['epoch']} done: step {e['step']:,} update {e['update']:,} "
            f"loss {e['loss_mean']:.4g} epsilon {e['epsilon']:.3f} "
            f"{e['steps_per_s']:.0f} steps/s {e['updates_per_s']:.0f} updates/s"
        )

    def maybe_report(
        self, counters: Counters, eps: float, log: TrainLog, total_steps: int, interval_s: float
    ) -> None:
        now = time.monotonic()
        # At the last step the final epoch's line has just said all: a progress line
        # would name an epoch that does not exist.
        if now - self.report_time < interval_s or counters.step >= total_steps:
            return
        rate = (counters.step - self.report_step) / (now - self.report_time)
        recent = log.episodes["return"][-20:]
        mean_return = f"{np.mean(recent):.1f}" if recent else "-"
        eta_s = (total_steps - counters.step) / max(rate, 1e-9)
        LOG.info(
            f"step {counters.step:,}/{total_steps:,} ({100 * counters.step / total_steps:.1f}%) "
            f"epoch {counters.epoch + 1} episodes {len(log.episodes['return'])} "
            f"mean return (last {len(recent)}) {mean_return} epsilon {eps:.3f} "
            f"{rate:.0f} steps/s ETA {_duration(eta_s)}"
        )
        self.report_time, self.report_step = now, counters.step


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"
