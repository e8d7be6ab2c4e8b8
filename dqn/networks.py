"""The Q-networks: one Q-value per valid action from a stack of 4 84x84 frames, and
their initialisations.

PyTorch's default initialisation (uniform in +-1/sqrt(fan_in) for weights and biases)
is the one Torch7 used in DeepMind's code; `initialise` gives the others a preset may
name.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dqn.frames import HISTORY_FRAMES


def build(name: str, n_actions: int) -> nn.Module:
    if name == "paper2013":
        # 2013 §4.1: 16 8x8/4, 32 4x4/2, 256 hidden units, all rectifiers.
        layers = [
            nn.Conv2d(HISTORY_FRAMES, 16, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 9 * 9, 256),
            nn.ReLU(),
            nn.Linear(256, n_actions),
        ]
    elif name in ("nature2015", "dqn3"):
        # Nature §Methods: 32 8x8/4, 64 4x4/2, 64 3x3/1, 512 hidden units. DQN 3.0's
        # convnet_atari3 pads the first layer's input by one pixel on every side
        # (convnet.lua:17-19, Torch7's padW = padH = 1), which the Nature text does not
        # say; the layers' sizes are the same (20x20, 9x9, 7x7).
        layers = [
            nn.Conv2d(HISTORY_FRAMES, 32, 8, stride=4, padding=1 if name == "dqn3" else 0),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 512),
            nn.ReLU(),
            nn.Linear(512, n_actions),
        ]
    else:
        raise ValueError(f"unknown network {name!r}")
    # Channels-last (NHWC) weights and inputs: oneDNN's convolutions, forward and
    # backward, run in this layout natively; in PyTorch's default NCHW every conv call
    # reorders its tensors first (docs/benchmark.md has the speed-up).
    # It is a memory layout only: the values, their shapes and their names are the same.
    return QNetwork(nn.Sequential(*layers)).to(memory_format=torch.channels_last)


@torch.no_grad()
def initialise(network: nn.Module, init: str) -> None:
    """Re-draw the weights and biases of every layer by `init` (the preset key
    network_init), from torch's global generator:
    - fan_in_uniform: as built (Torch7's default, DQN 3.0; PyTorch's);
    - normal_0.01: weights normal with standard deviation 0.01, biases 0.1 (deep_q_rl's
      2013 network, q_network.py:420-458);
    - he_normal: weights normal with standard deviation sqrt(2 / fan_in), biases 0
      (nnabla-rl's Atari Q-function)."""
    if init == "fan_in_uniform":
        return
    for layer in weighted_layers(network):
        if init == "normal_0.01":
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0.1)
        elif init == "he_normal":
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        else:
            raise ValueError(f"unknown network_init {init!r}")


def weighted_layers(network: nn.Module) -> list[nn.Module]:
    """The network's convolutions and linear layers, input first: the layers with
    weights and biases."""
    return [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def load_in_order(network: nn.Module, values: list, what: str) -> None:
    """Load `values`, `what`'s tensors stored without names in the order of the network's
    state_dict (a resume state's target network), into `network`."""
    names = list(network.state_dict())
    if len(values) != len(names):
        raise ValueError(f"{what} has {len(values)} tensors where the network has {len(names)}")
    network.load_state_dict({n: torch.as_tensor(np.asarray(v)) for n, v in zip(names, values)})


@torch.inference_mode()
def q_values(network: nn.Module, stack: np.ndarray, device: torch.device) -> np.ndarray:
    """Q(phi, a) for every action a, for one state phi (4x84x84 uint8), as float32."""
    return network(torch.from_numpy(stack[None]).to(device))[0].cpu().numpy()


@torch.inference_mode()
def state_max_q(network: nn.Module, states: np.ndarray, device: torch.device) -> np.ndarray:
    """max_a Q(s, a) of each state (N x 4 x 84 x 84 uint8), as float64, about 256 states
    a forward pass."""
    return np.concatenate(
        [
            network(torch.from_numpy(chunk).to(device)).max(dim=1).values.double().cpu().numpy()
            for chunk in np.array_split(states, max(1, len(states) // 256))
        ]
    )


def average_max_q(network: nn.Module, states: np.ndarray, device: torch.device) -> float:
    """2013 §5.1: the mean over held-out states of max_a Q(s, a)."""
    return float(state_max_q(network, states, device).mean())


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
