"""The Q-networks: one Q-value per valid action from a stack of 4 84x84 frames.

PyTorch's default initialisation (uniform in +-1/sqrt(fan_in) for weights and biases)
is the one Torch7 used in DeepMind's code, so it is kept.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from dqn.frames import HISTORY_FRAMES


def build(name: str, n_actions: int) -> nn.Module:
    if name == "paper2013":
        # 2013 §4.1: 16 8x8/4, 32 4x4/2, 256 hidden units, all rectifiers.
        layers = [
            nn.Conv2d(HISTORY_FRAMES, 16, 8, stride=4), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 9 * 9, 256), nn.ReLU(),
            nn.Linear(256, n_actions),
        ]
    elif name == "nature2015":
        # Nature §Methods: 32 8x8/4, 64 4x4/2, 64 3x3/1, 512 hidden units.
        layers = [
            nn.Conv2d(HISTORY_FRAMES, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
            nn.Linear(512, n_actions),
        ]
    else:
        raise ValueError(f"unknown network {name!r}")
    # Channels-last (NHWC) weights and inputs: oneDNN's convolutions, forward and
    # backward, run in this layout natively; in PyTorch's default NCHW every conv call
    # reorders its tensors first (README, "Benchmark", has the speed-up).
    # It is a memory layout only: the values, their shapes and their names are the same.
    return QNetwork(nn.Sequential(*layers)).to(memory_format=torch.channels_last)


@torch.inference_mode()
def q_values(network: nn.Module, stack: np.ndarray, device: torch.device) -> np.ndarray:
    """Q(phi, a) for every action a, for one state phi (4x84x84 uint8), as float32."""
    return network(torch.from_numpy(stack[None]).to(device))[0].cpu().numpy()


@torch.inference_mode()
def queue_q_values(network: nn.Module, stack: np.ndarray, device: torch.device
                   ) -> Callable[[], np.ndarray]:
    """`q_values`, to be read later: on a GPU the forward pass and the copy back to the
    host are queued behind the work queued before them, and the function returned waits
    for them; work queued after this call (an update) cannot change them. On the CPU
    they are computed at once."""
    if device.type != "cuda":
        values = q_values(network, stack, device)
        return lambda: values
    # Pinned host memory on both ends: neither copy waits for the GPU's queue to drain.
    on_device = network(torch.from_numpy(stack[None]).pin_memory().to(device, non_blocking=True))[0]
    host = torch.empty(on_device.shape, dtype=on_device.dtype, pin_memory=True)
    host.copy_(on_device, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def read() -> np.ndarray:
        copied.synchronize()
        return host.numpy()
    return read


@torch.inference_mode()
def average_max_q(network: nn.Module, states: np.ndarray, device: torch.device) -> float:
    """2013 §5.1: the mean over held-out states of max_a Q(s, a)."""
    maxima = [network(torch.from_numpy(chunk).to(device)).max(dim=1).values.double().sum().item()
              for chunk in np.array_split(states, max(1, len(states) // 256))]
    return sum(maxima) / len(states)


class QNetwork(nn.Module):
    """Takes uint8 frames; DQN 3.0 scales pixels to [0, 1] before the first layer."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Reordered to channels-last while still uint8 (a quarter of the bytes); then
        # scaled in place on the fresh float copy: `/ 255.0` would allocate a second
        # float batch per forward, and div_ gives the same bits without it.
        nhwc = frames.contiguous(memory_format=torch.channels_last)
        # copy=True: a float32 input would otherwise come back as itself from .to, and
        # div_ would scale the caller's tensor.
        return self.body(nhwc.to(torch.float32, copy=True).div_(255.0))
