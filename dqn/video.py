"""Gameplay videos of a snapshot with its value overlay (`dqn watch`).

The epsilon = 0.05 policy of one snapshot plays (2013 §5.1), and each agent step becomes
one frame: the emulator's full-colour 210x160 screen, scaled up, beside a panel with the
predicted value max_a Q over the episode so far (2013 Figure 3's curve, growing as the
video plays), each action's Q-value with the chosen action marked, the score and the
emulator frame number. The video runs as the game does: 60 emulator frames per second
divided by the frame skip (2013 §5: 4, so 15 agent steps per second).

The play has seeds of its own (a stream beside the evaluation's and the trace's), so the
same snapshot gives the same frames. MP4 is written by imageio's ffmpeg plugin (the
imageio-ffmpeg wheel ships the ffmpeg binary), GIF by imageio's Pillow plugin; the
panel is drawn with Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from dqn.atomic import atomic_write, check_writable
from dqn.errors import ConfigError
from dqn.evaluate import TrainedRun, play_with_values, snapshot_play

# A fourth seed element of its own: the video's play is neither the evaluation's nor
# the trace's (dqn.evaluate.TRACE_STREAM = 1) of the same epoch.
VIDEO_STREAM = 2
EMULATOR_FRAMES_PER_S = 60  # the Atari 2600's NTSC frame rate
FORMATS = (".mp4", ".gif")

SCALE = 3  # screen pixels per emulator pixel, each way
PANEL_WIDTH_PIXELS = 320
# Both sides a multiple of 16, H.264's macroblock: no player has to pad or scale.
HEIGHT_PIXELS = 640
WIDTH_PIXELS = 160 * SCALE + PANEL_WIDTH_PIXELS
MARGIN_PIXELS = 14
CURVE_STEPS_SHOWN_AT_LEAST = 60  # the curve's x axis grows from this many steps
BACKGROUND, TEXT, FAINT = (18, 18, 24), (235, 235, 235), (140, 140, 150)
CURVE, BAR, CHOSEN = (90, 170, 255), (95, 95, 115), (255, 190, 40)


def checked_request(
    run_dir: Path, out: Path, epoch: int | None, episodes: int, max_steps: int
) -> tuple[TrainedRun, int]:
    """What `watch` is asked, refused by name where it cannot be done: the run, the
    snapshot's epoch, the output file and the lengths. `dqn watch` asks it before it
    claims a GPU, which may wait for one."""
    out = Path(out)
    run = TrainedRun.open(run_dir)
    if out.suffix not in FORMATS:
        raise ConfigError(f"--out {out}: must end in {' or '.join(FORMATS)}")
    for name, value in (("episodes", episodes), ("max-steps", max_steps)):
        if value < 1:
            raise ConfigError(f"--{name} {value}: must be >= 1")
    epoch = run.chosen(None if epoch is None else [epoch])[-1]
    run.dir.check_outside(out)
    if out.exists():  # a video carries no kind to tell ours from a user's: none is replaced
        raise ConfigError(
            f"--out {out}: exists; dqn watch replaces no file, so remove it or give another --out"
        )
    check_writable(out)  # a read-only place fails now, not after the work
    return run, epoch


def watch(
    run_dir: Path,
    out: Path,
    device: torch.device,
    epoch: int | None = None,
    episodes: int = 1,
    max_steps: int = 4500,
) -> int:
    """Write the video of snapshot `epoch` (default: the newest) playing `episodes`
    episodes, or `max_steps` agent steps if they end first; return its frame count."""
    out = Path(out)
    run, epoch = checked_request(run_dir, out, epoch, episodes, max_steps)
    env, rng, network, _ = snapshot_play(run, epoch, VIDEO_STREAM, device)
    panel = Panel(
        f"{run.game}  epoch {epoch}  seed {run.seed}",
        f"epsilon-greedy, epsilon {run.config.eval_epsilon:g}",
        env.action_names,
    )
    frames = 0

    def write(path: Path) -> None:
        nonlocal frames
        with video_writer(path, out.suffix, EMULATOR_FRAMES_PER_S / env.frame_skip) as append:
            score, history, episode = 0.0, [], 1
            for seen in play_with_values(
                network, env, run.config.eval_epsilon, rng, device, max_steps, episodes
            ):
                history.append(seen.q.max())
                append(
                    panel.draw(
                        seen.screen,
                        seen.q,
                        seen.step.action,
                        history,
                        score,
                        (len(history) - 1) * env.frame_skip,
                        episode,
                        episodes,
                    )
                )
                frames += 1
                score += seen.step.reward
                if seen.step.episode:  # the next frame is the next episode's first
                    score, history, episode = 0.0, [], episode + 1

    atomic_write(out, write)
    return frames


@contextmanager
def video_writer(path: Path, suffix: str, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """A function that appends an RGB frame to the video at `path` (any name: the
    format is `suffix`'s), which is complete when the block ends."""
    with iio.imopen(
        path, "w", extension=suffix, plugin="FFMPEG" if suffix == ".mp4" else "pillow"
    ) as file:
        if suffix == ".mp4":
            # H.264 in yuv420p, which every player plays; ffmpeg is told the container
            # because the name (atomic_write's temporary one) does not end in .mp4.
            writer = file.legacy_get_writer(
                fps=fps,
                codec="libx264",
                macro_block_size=16,
                ffmpeg_log_level="error",
                output_params=["-f", "mp4"],
            )
            yield writer.append_data
            writer.close()
        else:
            # GIF keeps every frame until the file is written: for short clips. Its delays
            # are in hundredths of a second: the nearest to 1/fps (15 fps: 70 ms).
            duration_ms = 10 * round(100 / fps)
            yield lambda frame: file.write(frame, duration=duration_ms, loop=0)


class Panel:
    """Draws one video frame: the scaled screen, and the panel beside it."""

    def __init__(self, title: str, policy: str, action_names: list[str]):
        self.title, self.policy, self.action_names = title, policy, action_names
        self.font = ImageFont.load_default(size=15)
        self.small = ImageFont.load_default(size=12)
        self.left = 160 * SCALE + MARGIN_PIXELS  # the panel's left edge
        self.width = PANEL_WIDTH_PIXELS - 2 * MARGIN_PIXELS
        self.screen_top = (HEIGHT_PIXELS - 210 * SCALE) // 2

    def draw(
        self,
        screen: np.ndarray,
        q: np.ndarray,
        action: int,
        history: list[float],
        score: float,
        frame_number: int,
        episode: int,
        episodes: int,
    ) -> np.ndarray:
        """The frame of a state: `screen` and Q-values `q`, the `action` taken from it,
        max-Q over the episode so far (`history`, this state's last) and the score and
        emulator frame number of the episode at this state."""
        image = Image.new("RGB", (WIDTH_PIXELS, HEIGHT_PIXELS), BACKGROUND)
        # Nearest-neighbour: each emulator pixel a sharp SCALE x SCALE block.
        image.paste(
            Image.fromarray(screen).resize((160 * SCALE, 210 * SCALE), Image.Resampling.NEAREST),
            (0, self.screen_top),
        )
        draw = ImageDraw.Draw(image)
        x, y = self.left, MARGIN_PIXELS
        draw.text((x, y), self.title, TEXT, self.font)
        draw.text((x, y + 20), self.policy, FAINT, self.small)
        draw.text((x, y + 46), f"score {score:g}", TEXT, self.font)
        draw.text(
            (x, y + 66), f"frame {frame_number:,}   episode {episode}/{episodes}", TEXT, self.font
        )
        self._curve(draw, history, y + 100, 170)
        self._q_bars(draw, q, action, y + 300, HEIGHT_PIXELS - MARGIN_PIXELS)
        return np.asarray(image)

    def _curve(
        self, draw: ImageDraw.ImageDraw, history: list[float], top: int, height: int
    ) -> None:
        """2013 Figure 3's curve: max_a Q(s, a) at each step of the episode so far."""
        draw.text((self.left, top), "predicted value max_a Q(s, a)", FAINT, self.small)
        box = (self.left, top + 18, self.left + self.width, top + height)
        draw.rectangle(box, outline=FAINT)
        low, high = min(history), max(history)
        span = (high - low) or 1.0
        steps = max(len(history), CURVE_STEPS_SHOWN_AT_LEAST) - 1
        points = [
            (
                box[0] + 2 + (box[2] - box[0] - 4) * i / steps,
                box[3] - 2 - (box[3] - box[1] - 4) * (value - low) / span,
            )
            for i, value in enumerate(history)
        ]
        if len(points) > 1:
            draw.line(points, CURVE, width=2)
        px, py = points[-1]
        draw.ellipse((px - 3, py - 3, px + 3, py + 3), CHOSEN)
        draw.text((box[0] + 4, box[1] + 2), f"{high:.3g}", FAINT, self.small)
        draw.text((box[0] + 4, box[3] - 16), f"{low:.3g}", FAINT, self.small)
        draw.text((box[2] - 90, box[1] + 2), f"now {history[-1]:.3g}", CURVE, self.small)

    def _q_bars(
        self, draw: ImageDraw.ImageDraw, q: np.ndarray, action: int, top: int, bottom: int
    ) -> None:
        """Q(s, a) of each action, as bars from zero; the chosen action in colour."""
        draw.text((self.left, top), "Q(s, a) now; chosen action marked", FAINT, self.small)
        top += 18
        row = min(22, (bottom - top) // len(q))
        label_width, value_width = 104, 52
        bar_left = self.left + label_width
        bar_width = self.width - label_width - value_width
        low, high = min(q.min(), 0.0), max(q.max(), 0.0)
        zero = bar_left + bar_width * (0 - low) / ((high - low) or 1.0)
        for a, (name, value) in enumerate(zip(self.action_names, q)):
            y = top + a * row
            chosen = a == action
            colour = CHOSEN if chosen else TEXT
            draw.text((self.left, y), ("> " if chosen else "  ") + name, colour, self.small)
            end = bar_left + bar_width * (value - low) / ((high - low) or 1.0)
            draw.rectangle(
                (min(zero, end), y + 2, max(zero, end), y + row - 4), fill=CHOSEN if chosen else BAR
            )
            draw.text((bar_left + bar_width + 4, y), f"{value:.3f}", colour, self.small)
