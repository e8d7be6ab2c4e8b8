"""The progress meter (dqn.progress): each epoch's row of the training log, timed over a
stop and a resume, and the progress line."""

import logging
import time

import pytest
import torch

from dqn.progress import Meter
from dqn.trainlog import Counters, TrainLog

CPU = torch.device("cpu")


def test_an_epoch_continued_after_a_stop_is_timed_over_both_parts():
    counters = Counters(step=500)
    before = Meter(counters, 300, CPU)  # the epoch started at step 500, update 300
    before.add_loss(torch.tensor(2.0))
    time.sleep(0.05)
    counters.step = 620
    after = Meter(counters, 420, CPU)  # the continued run starts at the saved step
    after.continue_epoch(before.epoch_in_progress())
    after.add_loss(torch.tensor(4.0))
    counters.step, counters.epoch = 700, 1
    log = TrainLog()
    after.end_epoch(log, counters, 500, 0.5)
    assert log.epochs["loss_mean"] == [3.0]
    assert log.epochs["wall_s"][0] >= 0.05  # the time before the stop counts
    assert log.epochs["steps_per_s"][0] == pytest.approx(200 / log.epochs["wall_s"][0])


def test_the_progress_line_names_the_epoch_in_progress_and_none_after_the_last(caplog):
    counters = Counters(epoch=2, step=900)
    meter = Meter(counters, 400, CPU)
    with caplog.at_level(logging.INFO, logger="dqn"):
        meter.maybe_report(counters, 0.1, TrainLog(), 1000, interval_s=0)
        counters.step, counters.epoch = 1000, 3  # the last step, its epoch just ended
        meter.maybe_report(counters, 0.1, TrainLog(), 1000, interval_s=0)
    assert [r.getMessage().split(" episodes")[0] for r in caplog.records] == [
        "step 900/1,000 (90.0%) epoch 3"
    ]
