"""The learner: Q-learning targets, the loss, RMSProp in its DQN forms (2013 Algorithm 1),
and Adam, the optimiser of the PyTorch DQN libraries, to compare with."""

from __future__ import annotations

import copy

import numpy as np
import torch

from dqn import networks
from dqn.presets import Config
from dqn.replay import Minibatch


def td_targets(rewards: torch.Tensor, terminals: torch.Tensor, next_max_q: torch.Tensor,
               discount: float, reward_clip: bool) -> torch.Tensor:
    """y = r for terminal transitions, else r + discount * max_a' Q(s', a') (Algorithm 1).

    2013 §5: in training, positive rewards become 1 and negative ones -1.
    """
    if reward_clip:
        rewards = torch.sign(rewards)
    return rewards + discount * (~terminals).to(next_max_q.dtype) * next_max_q


def td_loss(q_taken: torch.Tensor, targets: torch.Tensor, kind: str,
            reduction: str) -> torch.Tensor:
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

    def load_state(self, state: dict[str, list[np.ndarray]], steps: int) -> None:
        """Put the moving averages back (`steps`, the updates so far, is Adam's concern)."""
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
        torch._foreach_div_(denominators, (1 - self.BETA2 ** self.steps) ** 0.5)
        torch._foreach_add_(denominators, self.epsilon)
        torch._foreach_addcdiv_(self.params, self.m, denominators,
                                value=-self.lr / (1 - self.BETA1 ** self.steps))

    def state(self) -> dict[str, list[torch.Tensor]]:
        return {"m": self.m, "v": self.v}

    def load_state(self, state: dict[str, list[np.ndarray]], steps: int) -> None:
        _copy_into(self.state(), state)
        self.steps = steps


def _copy_into(buffers: dict[str, list[torch.Tensor]], values: dict[str, list[np.ndarray]]
               ) -> None:
    for name, tensors in buffers.items():
        for tensor, value in zip(tensors, values[name], strict=True):
            tensor.copy_(torch.as_tensor(value))


class Learner:
    def __init__(self, config: Config, n_actions: int, device: torch.device, seed: int):
        self.config = config
        self.device = device
        torch.manual_seed(seed)  # the initial weights
        self.network = networks.build(config.network, n_actions)
        networks.initialise(self.network, config.network_init)
        self.network.to(device)
        # Nature §Methods: a target network, copied every C steps (`after_step`); 2013 has
        # none and takes the max over next actions from the network being trained.
        self.target = copy.deepcopy(self.network) if config.target_update_period_steps else None
        params = self.network.parameters()
        self.optimizer = {
            "rmsprop": lambda: RMSProp(params, config.learning_rate, config.rmsprop_decay,
                                       config.rmsprop_epsilon, config.rmsprop_centered),
            "adam": lambda: Adam(params, config.learning_rate, config.adam_epsilon),
        }[config.optimizer]()
        self.updates = 0

    def update(self, batch: Minibatch) -> torch.Tensor:
        """One minibatch step of Algorithm 1; returns the loss (on the device, no sync)."""
        to = lambda a: torch.from_numpy(a).to(self.device, non_blocking=True)  # noqa: E731
        states, actions, rewards = to(batch.states), to(batch.actions), to(batch.rewards)
        next_states, terminals = to(batch.next_states), to(batch.terminals)
        with torch.no_grad():
            bootstrap = self.network if self.target is None else self.target
            next_max_q = bootstrap(next_states).max(dim=1).values
            targets = td_targets(rewards, terminals, next_max_q, self.config.discount,
                                 self.config.reward_clip)
        q_taken = self.network(states).gather(1, actions[:, None]).squeeze(1)
        loss = td_loss(q_taken, targets, self.config.loss, self.config.loss_reduction)
        for p in self.network.parameters():
            p.grad = None
        loss.backward()
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
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
        names = [name for name, value in self.network.state_dict().items()
                 if not torch.isfinite(value).all()]
        problems = ([f"mean loss {loss_mean}"] if not np.isfinite(loss_mean) else []) + (
            [f"non-finite weights in {', '.join(names)}"] if names else [])
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
            load_weights(self.target, tensors["target"])
        self.updates = int(state["updates"])
        self.optimizer.load_state(tensors, self.updates)


def load_weights(network: torch.nn.Module, values: list[np.ndarray]) -> None:
    keys = list(network.state_dict())
    if len(keys) != len(values):
        raise ValueError(f"expected {len(keys)} weight tensors, got {len(values)}")
    network.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in zip(keys, values)})
