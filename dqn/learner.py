"""The learner: Q-learning targets, the loss, RMSProp in its DQN forms (2013 Algorithm 1),
and Adam, the optimiser of the PyTorch DQN libraries, to compare with."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch

from dqn import networks
from dqn.presets import Config
from dqn.replay import Minibatch


def td_targets(
    rewards: torch.Tensor,
    terminals: torch.Tensor,
    next_max_q: torch.Tensor,
    discount: float,
    reward_clip: bool,
) -> torch.Tensor:
    """y = r for terminal transitions, else r + discount * max_a' Q(s', a') (Algorithm 1).

    2013 §5: in training, positive rewards become 1 and negative ones -1.
    """
    if reward_clip:
        rewards = torch.sign(rewards)
    return rewards + discount * (~terminals).to(next_max_q.dtype) * next_max_q


def td_loss(
    q_taken: torch.Tensor, targets: torch.Tensor, kind: str, reduction: str
) -> torch.Tensor:
    """The minibatch's loss: half the squared TD error, or "huber", whose gradient is the
    TD error clipped to [-1, 1] (Nature §Methods; DQN 3.0's clip_delta).

    "sum" is what DQN 3.0 backpropagates (no division by 32), "mean" what deep_q_rl does.
    The two differ by more than a factor in the step: RMSProp's epsilon is added to the
    squared gradients, so the gradient's scale changes how far a step goes.
    """
    if kind == "huber":
        return torch.nn.functional.smooth_l1_loss(q_taken, targets, reduction=reduction, beta=1.0)
    squared = 0.5 * (targets - q_taken) ** 2
    return squared.sum() if reduction == "sum" else squared.mean()


class RMSProp:
    """RMSProp with epsilon inside the square root, in its two published DQN forms:

    centered (DQN 3.0, NeuralQLearner:qLearnMinibatch):
        g  = decay * g  + (1 - decay) * grad
        g2 = decay * g2 + (1 - decay) * grad^2
        w -= lr * grad / sqrt(g2 - g^2 + epsilon)
    uncentered (deep_q_rl's "rmsprop", the 2013 reproduction's run_nips.py):
        g2 = decay * g2 + (1 - decay) * grad^2
        w -= lr * grad / sqrt(g2 + epsilon)

    torch.optim.RMSprop differs from both: it adds epsilon outside the square root.
    """

    def __init__(self, params, lr: float, decay: float, epsilon: float, centered: bool):
        self.params = list(params)
        self.lr, self.decay, self.epsilon, self.centered = lr, decay, epsilon, centered
        self.g = [torch.zeros_like(p) for p in self.params] if centered else []
        self.g2 = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        torch._foreach_mul_(self.g2, self.decay)
        torch._foreach_addcmul_(self.g2, grads, grads, value=1 - self.decay)
        if self.centered:
            torch._foreach_mul_(self.g, self.decay)
            torch._foreach_add_(self.g, grads, alpha=1 - self.decay)
            denominators = torch._foreach_addcmul(self.g2, self.g, self.g, value=-1)
            torch._foreach_add_(denominators, self.epsilon)
        else:
            denominators = torch._foreach_add(self.g2, self.epsilon)
        torch._foreach_sqrt_(denominators)
        torch._foreach_addcdiv_(self.params, grads, denominators, value=-self.lr)

    def state(self) -> dict[str, list[torch.Tensor]]:
        return {"g": self.g, "g2": self.g2} if self.centered else {"g2": self.g2}

    def load_state(self, state: dict[str, list[np.ndarray]]) -> None:
        """Put the moving averages back."""
        _copy_into(self.state(), state)


class Adam:
    """Adam (Kingma and Ba 2015) with torch.optim.Adam's defaults, as Stable-Baselines3's
    and CleanRL's DQN use it:
        m = 0.9 m + 0.1 grad;  v = 0.999 v + 0.001 grad^2   (t: the steps so far, from 1)
        w -= lr / (1 - 0.9^t) * m / (sqrt(v) / sqrt(1 - 0.999^t) + epsilon)
    Written out like RMSProp above, so that its state is two lists of tensors and t is the
    learner's update count (a resume restores both)."""

    BETA1, BETA2 = 0.9, 0.999

    def __init__(self, params, lr: float, epsilon: float):
        self.params = list(params)
        self.lr, self.epsilon = lr, epsilon
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        self.steps += 1
        torch._foreach_lerp_(self.m, grads, 1 - self.BETA1)
        torch._foreach_mul_(self.v, self.BETA2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - self.BETA2)
        denominators = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denominators, (1 - self.BETA2**self.steps) ** 0.5)
        torch._foreach_add_(denominators, self.epsilon)
        torch._foreach_addcdiv_(
            self.params, self.m, denominators, value=-self.lr / (1 - self.BETA1**self.steps)
        )

    def state(self) -> dict[str, list[torch.Tensor]]:
        return {"m": self.m, "v": self.v}

    def load_state(self, state: dict[str, list[np.ndarray]]) -> None:
        """Put the moments back; the learner restores `steps`, its update count."""
        _copy_into(self.state(), state)


def _copy_into(buffers: dict[str, list[torch.Tensor]], values: dict[str, list[np.ndarray]]) -> None:
    for name, tensors in buffers.items():
        for tensor, value in zip(tensors, values[name], strict=True):
            tensor.copy_(torch.as_tensor(value))


# cuda_deterministic: cuBLAS is deterministic with a fixed workspace (its documentation's
# "Results reproducibility"); torch refuses cuBLAS calls in deterministic mode without it.
CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"
# cuda_graph_update: plain updates before the capture, in each process (a resumed one
# too): cuDNN, cuBLAS and the autograd engine set themselves up on the stream the graph
# is then captured on, as torch's notes on CUDA graphs ask. Being the run's own updates,
# they change nothing in it.
GRAPH_WARMUP_UPDATES = 3


class Learner:
    # Whether a GPU's minibatches travel through pinned memory (the device check turns it
    # off to measure what pinning gains).
    pin_minibatches = True

    def __init__(self, config: Config, n_actions: int, device: torch.device, seed: int):
        self.config = config
        self.device = device
        self.on_gpu = device.type == "cuda"
        if self.on_gpu and config.cuda_deterministic:
            # cuBLAS reads its workspace setting when it first starts in the process,
            # which in `dqn train` is in this learner's first update.
            os.environ.setdefault(CUBLAS_WORKSPACE, CUBLAS_DETERMINISTIC_WORKSPACE)
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(seed)  # the initial weights
        self.network = networks.build(config.network, n_actions)
        networks.initialise(self.network, config.network_init)
        self.network.to(device)
        # Nature §Methods: a target network, copied every C steps (`after_step`); 2013 has
        # none and takes the max over next actions from the network being trained.
        self.target = copy.deepcopy(self.network) if config.target_update_period_steps else None
        params = self.network.parameters()
        self.optimizer = {
            "rmsprop": lambda: RMSProp(
                params,
                config.learning_rate,
                config.rmsprop_decay,
                config.rmsprop_epsilon,
                config.rmsprop_centered,
            ),
            "adam": lambda: Adam(params, config.learning_rate, config.adam_epsilon),
        }[config.optimizer]()
        self.updates = 0
        self.graph = (
            GraphedStep(self._step, device) if self.on_gpu and config.cuda_graph_update else None
        )

    def update(self, batch: Minibatch) -> torch.Tensor:
        """One minibatch step of Algorithm 1; returns the loss (on the device, no sync)."""
        if self.graph is not None:
            loss = self.graph(self.host_arrays(batch))
        else:
            loss = self._step(*self.to_device(batch))
        self.updates += 1
        return loss

    def host_arrays(self, batch: Minibatch) -> list[torch.Tensor]:
        """The minibatch's arrays as tensors on the host, in `_step`'s order. On a GPU they
        are copied to pinned (page-locked) memory: a copy from there to the GPU is queued
        and returns at once, where one from pageable memory waits for the GPU to reach it."""
        arrays = (batch.states, batch.actions, batch.rewards, batch.next_states, batch.terminals)
        tensors = [torch.from_numpy(a) for a in arrays]
        return (
            [t.pin_memory() for t in tensors] if self.on_gpu and self.pin_minibatches else tensors
        )

    def to_device(self, batch: Minibatch) -> list[torch.Tensor]:
        """The minibatch on the learner's device, copies queued without waiting; the
        frames travel as uint8 (a quarter of float32's bytes) and become floats on the
        device, in the network's forward pass."""
        return [t.to(self.device, non_blocking=True) for t in self.host_arrays(batch)]

    def _step(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_states: torch.Tensor,
        terminals: torch.Tensor,
    ) -> torch.Tensor:
        with torch.no_grad():
            bootstrap = self.network if self.target is None else self.target
            next_max_q = bootstrap(next_states).max(dim=1).values
            targets = td_targets(
                rewards, terminals, next_max_q, self.config.discount, self.config.reward_clip
            )
        q_taken = self.network(states).gather(1, actions[:, None]).squeeze(1)
        loss = td_loss(q_taken, targets, self.config.loss, self.config.loss_reduction)
        for p in self.network.parameters():
            p.grad = None
        loss.backward()
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return loss.detach()

    def after_step(self, step: int) -> None:
        """Agent step `step` (counted from 1) is done, its update too: refresh the target
        network if the step is one past a multiple of the period. DQN 3.0 counts the
        step after its update and then copies when numSteps % target_q == 1
        (NeuralQLearner.lua:341-358); written as (step - 1) % period so that a period
        of 1 refreshes every step."""
        period = self.config.target_update_period_steps
        if self.target is not None and (step - 1) % period == 0:
            self.target.load_state_dict(self.network.state_dict())

    def non_finite(self, loss_mean: float) -> str | None:
        """What is not finite (the epoch's mean loss, the weights), or None if all is."""
        names = [
            name
            for name, value in self.network.state_dict().items()
            if not torch.isfinite(value).all()
        ]
        problems = ([f"mean loss {loss_mean}"] if not np.isfinite(loss_mean) else []) + (
            [f"non-finite weights in {', '.join(names)}"] if names else []
        )
        return "; ".join(problems) or None

    # -- snapshots and resume --
    def state(self) -> dict:
        # The network itself is in the epoch's snapshot; these are what a resume adds.
        tensors = dict(self.optimizer.state())
        if self.target is not None:
            tensors["target"] = list(self.target.state_dict().values())
        return {"tensors": tensors, "updates": self.updates}

    def load_state(self, state: dict) -> None:
        tensors = state["tensors"]
        if self.target is not None:
            # Stored in the network's order (`state`), without names.
            networks.load_in_order(self.target, tensors["target"], "its target network")
        self.updates = int(state["updates"])
        self.optimizer.load_state(tensors)
        if isinstance(self.optimizer, Adam):
            self.optimizer.steps = self.updates  # t of Adam's bias correction


class GraphedStep:
    """A learner's step (`Learner._step`) as one CUDA graph (cuda_graph_update): captured
    once, then replayed on fixed input tensors, into which each minibatch is copied. The
    weights, the optimiser's moving averages and the target network are updated in place
    (a resume and a target refresh copy into them), so the graph's addresses stay theirs.
    The first GRAPH_WARMUP_UPDATES calls run the step as usual, on the capture's stream."""

    def __init__(self, step, device: torch.device):
        self.step, self.device = step, device
        self.stream = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: list[torch.Tensor] = []
        self.loss: torch.Tensor | None = None
        self.calls = 0

    def __call__(self, host: list[torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if self.calls <= GRAPH_WARMUP_UPDATES:
            inputs = [t.to(self.device, non_blocking=True) for t in host]
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                loss = self.step(*inputs)
            torch.cuda.current_stream().wait_stream(self.stream)
            return loss
        if self.graph is None:
            self.inputs = [t.to(self.device) for t in host]
            self.graph = torch.cuda.CUDAGraph()
            # Captured, not run: the replay below runs it.
            with torch.cuda.graph(self.graph, stream=self.stream):
                self.loss = self.step(*self.inputs)
        for fixed, values in zip(self.inputs, host):
            fixed.copy_(values, non_blocking=True)
        self.graph.replay()
        return self.loss
