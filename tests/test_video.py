"""dqn watch: a video of a snapshot of a real Atari run, a frame per agent step at the
game's speed, that decodes, is the same each time, and shows the screen unchanged."""

import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from dqn import cli, presets
from dqn.errors import ConfigError, DataFileError
from dqn.rundir import RunDir
from dqn.train import train
from dqn.video import BAR, HEIGHT_PIXELS, SCALE, WIDTH_PIXELS, Panel, watch

# A run trained and its videos encoded: not in make test-fast.
pytestmark = pytest.mark.slow

CPU = torch.device("cpu")
STEPS = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Breakout, three epochs of 20 updates: snapshots to play, in seconds."""
    out = tmp_path_factory.mktemp("video") / "run"
    config = presets.load(
        "ci",
        [
            "train_steps=260",
            "epoch_updates=20",
            "replay_start_steps=200",
            "heldout_collect_steps=100",
        ],
    )
    train("Breakout", "ci", config, 0, out, CPU, progress_s=float("inf"), live_view=False)
    return out


def test_an_mp4_has_a_frame_per_agent_step_at_the_games_speed_and_decodes(run, tmp_path):
    out = tmp_path / "breakout.mp4"
    assert watch(run, out, CPU, max_steps=STEPS) == STEPS
    frames = iio.imread(out)
    assert frames.shape == (STEPS, HEIGHT_PIXELS, WIDTH_PIXELS, 3)
    assert iio.immeta(out)["fps"] == 60 / 4  # 2013 §5: frame skip 4
    assert frames[:, :, : 160 * SCALE].std() > 10  # the game's screen, not a blank


def test_the_same_snapshot_and_seed_give_the_same_video(run, tmp_path):
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    watch(run, first, CPU, epoch=2, max_steps=STEPS)
    watch(run, second, CPU, epoch=2, max_steps=STEPS)
    np.testing.assert_array_equal(iio.imread(first), iio.imread(second))
    assert first.read_bytes() == second.read_bytes()


def test_a_gif_holds_the_same_frames_at_the_games_speed(run, tmp_path):
    out = tmp_path / "breakout.gif"
    assert (
        cli.main(
            [
                "watch",
                "--run",
                str(run),
                "--out",
                str(out),
                "--max-steps",
                "12",
                "--device",
                "cpu",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    frames = iio.imread(out)
    assert frames.shape[:3] == (12, HEIGHT_PIXELS, WIDTH_PIXELS)
    assert iio.immeta(out)["duration"] == 70  # 1/15 s in GIF's hundredths of a second


def test_the_frame_shows_the_full_colour_screen_scaled_and_the_chosen_action():
    screen = np.random.default_rng(0).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    panel = Panel("Breakout", "epsilon 0.05", ["NOOP", "FIRE", "RIGHT", "LEFT"])
    q = np.array([0.1, 0.4, -0.2, 0.3])
    frame = panel.draw(screen, q, 2, [0.2, 0.4], 3.0, 4, 1, 1)
    top = (HEIGHT_PIXELS - 210 * SCALE) // 2
    shown = frame[top : top + 210 * SCALE, : 160 * SCALE]
    np.testing.assert_array_equal(shown, screen.repeat(SCALE, axis=0).repeat(SCALE, axis=1))
    again = panel.draw(screen, q, 1, [0.2, 0.4], 3.0, 4, 1, 1)
    assert not np.array_equal(frame, again)  # the mark moves with the chosen action
    np.testing.assert_array_equal(again, panel.draw(screen, q, 1, [0.2, 0.4], 3.0, 4, 1, 1))
    # The bars show the values: LEFT's lower value (the scale, -0.2 to 0.4, unchanged)
    # draws a shorter bar. Counted in the bars' own colour, which no text is drawn in,
    # so the value printed beside the bar cannot stand in for it.
    bar_pixels = lambda frame: int((frame == BAR).all(axis=-1).sum())  # noqa: E731
    lower = panel.draw(screen, q - [0, 0, 0, 0.15], 2, [0.2, 0.4], 3.0, 4, 1, 1)
    assert 0 < bar_pixels(lower) < bar_pixels(frame)


@pytest.mark.parametrize(
    "out,kwargs,message",
    [
        ("video.avi", {}, "--out {tmp}/video.avi: must end in .mp4 or .gif"),
        ("video.mp4", {"max_steps": 0}, "--max-steps 0: must be >= 1"),
    ],
)
def test_a_bad_request_is_refused_naming_the_option(run, tmp_path, out, kwargs, message):
    with pytest.raises(ConfigError) as error:
        watch(run, tmp_path / out, CPU, **kwargs)
    assert str(error.value) == message.format(tmp=tmp_path)


def test_a_missing_epoch_is_refused_naming_those_the_run_has(run, tmp_path):
    with pytest.raises(DataFileError) as error:
        watch(run, tmp_path / "video.mp4", CPU, epoch=9)
    assert str(error.value) == f"{run / 'snapshots'}: no snapshot of epoch 9 (it has 1-3)"
    assert not (tmp_path / "video.mp4").exists()
    gap = shutil.copytree(run, tmp_path / "gap")
    RunDir(gap).snapshot(2).unlink()
    with pytest.raises(DataFileError) as error:
        watch(gap, tmp_path / "video.mp4", CPU, epoch=2)
    assert str(error.value) == f"{gap / 'snapshots'}: no snapshot of epoch 2 (it has 1, 3)"


def test_a_video_is_never_written_into_the_run_it_shows(run):
    with pytest.raises(ConfigError, match="inside the run directory"):
        watch(run, run / "video.mp4", CPU, max_steps=1)


def test_an_existing_file_is_never_replaced(run, tmp_path):
    mine = tmp_path / "holiday.mp4"
    mine.write_bytes(b"my own video")
    with pytest.raises(ConfigError, match=f"--out {mine}: exists; dqn watch replaces no file"):
        watch(run, mine, CPU, max_steps=1)
    assert mine.read_bytes() == b"my own video"
