import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from dqn import networks, presets
from dqn.learner import Adam, Learner, RMSProp, td_loss, td_targets
from dqn.replay import Minibatch

from conftest import ROOT, load_script


def test_td_target_by_hand():
    rewards = torch.tensor([0.0, 3.0, -2.0, 1.0])
    terminals = torch.tensor([False, False, True, True])
    next_max_q = torch.tensor([2.0, 10.0, 5.0, 4.0])
    clipped = td_targets(rewards, terminals, next_max_q, 0.99, reward_clip=True)
    # r clipped to sign(r); terminal transitions get no bootstrap term
    assert clipped.tolist() == pytest.approx([0 + 0.99 * 2, 1 + 0.99 * 10, -1, 1])
    raw = td_targets(rewards, terminals, next_max_q, 0.5, reward_clip=False)
    assert raw.tolist() == pytest.approx([1.0, 8.0, -2.0, 1.0])


@pytest.mark.parametrize("reduction, scale", [("sum", 1.0), ("mean", 1 / 3)])
def test_loss_reduction_and_huber_clips_the_error_gradient(reduction, scale):
    q = torch.tensor([0.0, 0.0, 0.0], requires_grad=True)
    targets = torch.tensor([0.5, 3.0, -4.0])
    td_loss(q, targets, "squared", reduction).backward()
    # -(y - Q): summed over the minibatch as DQN 3.0 does, or averaged as deep_q_rl does
    assert q.grad.tolist() == pytest.approx([-0.5 * scale, -3.0 * scale, 4.0 * scale])
    q.grad = None
    td_loss(q, targets, "huber", reduction).backward()
    assert q.grad.tolist() == pytest.approx([-0.5 * scale, -1.0 * scale, 1.0 * scale])


@pytest.mark.parametrize("centered", [True, False])
def test_two_rmsprop_steps_by_hand(centered):
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    decay, epsilon = (0.95, 0.01) if centered else (0.99, 1e-6)
    optimizer = RMSProp([w], lr=0.1, decay=decay, epsilon=epsilon, centered=centered)
    for grad in ([0.5, -1.0], [0.3, 2.0]):
        w.grad = torch.tensor(grad)
        optimizer.step()
    # by hand, per coordinate: g = decay g + (1 - decay) d; g2 = decay g2 + (1 - decay) d^2;
    # w -= lr d / sqrt(g2 - g^2 + eps) (DQN 3.0), or / sqrt(g2 + eps) (deep_q_rl)
    expected = []
    for w0, (d1, d2) in zip([1.0, -2.0], [(0.5, 0.3), (-1.0, 2.0)]):
        g, g2, value = 0.0, 0.0, w0
        for d in (d1, d2):
            g = decay * g + (1 - decay) * d
            g2 = decay * g2 + (1 - decay) * d * d
            value -= 0.1 * d / math.sqrt(g2 - (g * g if centered else 0.0) + epsilon)
        expected.append(value)
    assert w.detach().tolist() == pytest.approx(expected, rel=1e-6)
    assert sorted(optimizer.state()) == (["g", "g2"] if centered else ["g2"])


def test_three_adam_steps_by_hand_and_as_torch_takes_them():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    reference = torch.nn.Parameter(w.detach().clone())
    optimizer = Adam([w], lr=0.1, epsilon=1e-3)
    torch_adam = torch.optim.Adam([reference], lr=0.1, eps=1e-3)
    grads = ([0.5, -1.0], [0.3, 2.0], [-0.2, 0.0])
    for grad in grads:
        w.grad, reference.grad = torch.tensor(grad), torch.tensor(grad)
        optimizer.step()
        torch_adam.step()
    # by hand, per coordinate, at step t = 1, 2, 3: m = 0.9 m + 0.1 d; v = 0.999 v + 0.001 d^2;
    # w -= lr m / (1 - 0.9^t) / (sqrt(v / (1 - 0.999^t)) + eps)
    expected = []
    for i, w0 in enumerate([1.0, -2.0]):
        m, v, value = 0.0, 0.0, w0
        for t, grad in enumerate(grads, start=1):
            m = 0.9 * m + 0.1 * grad[i]
            v = 0.999 * v + 0.001 * grad[i] ** 2
            value -= 0.1 * m / (1 - 0.9**t) / (math.sqrt(v / (1 - 0.999**t)) + 1e-3)
        expected.append(value)
    assert w.detach().tolist() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(w, reference, rtol=1e-6, atol=0)
    assert sorted(optimizer.state()) == ["m", "v"] and optimizer.steps == 3


def test_network_sizes_match_the_papers():
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(networks.build("paper2013", 4)) == 677_172  # ~0.68M (2013)
    assert count(networks.build("nature2015", 18)) == 1_693_362  # ~1.69M (Nature)
    out = networks.build("paper2013", 6)(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert out.shape == (2, 6)


def test_dqn3_network_is_natures_with_its_first_input_padded_by_one_pixel():
    # DQN 3.0's convnet.lua:17-19 passes padW = 1 (and so padH = 1) to the first layer
    nature, dqn3 = networks.build("nature2015", 4), networks.build("dqn3", 4)
    dqn3.load_state_dict(nature.state_dict())  # the same parameters, by name and shape
    first = dqn3.body[0]
    assert (first.padding, nature.body[0].padding) == ((1, 1), (0, 0))
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert not torch.equal(nature(frames), dqn3(frames))
    # the padding's zeros are the border of the input: the same as padding it by hand
    padded = torch.nn.functional.pad(frames.float() / 255.0, (1, 1, 1, 1))
    expected = torch.nn.functional.conv2d(padded, first.weight, first.bias, stride=4)
    assert torch.allclose(
        dqn3.body[1](dqn3.body[0](frames.float() / 255.0)), expected.relu(), atol=1e-6
    )


def _batch(rng, n_actions, size=32):
    return Minibatch(
        states=rng.integers(0, 256, (size, 4, 84, 84), dtype=np.uint8),
        actions=rng.integers(0, n_actions, size).astype(np.int64),
        rewards=rng.normal(size=size).astype(np.float32),
        next_states=rng.integers(0, 256, (size, 4, 84, 84), dtype=np.uint8),
        terminals=rng.random(size) < 0.1,
    )


@pytest.mark.slow  # hundreds of updates for each initialisation
@pytest.mark.parametrize("init", ["fan_in_uniform", "normal_0.01", "he_normal"])
def test_updates_fit_q_to_fixed_targets(init):
    # All transitions terminal: the targets are the clipped rewards and do not move,
    # so repeated updates must fit them (regression, no bootstrapping). deep_q_rl's
    # small initial weights start slowly: 60 updates leave it at 80% of its first loss.
    config = presets.load("ci", [f"network_init={init}"])
    learner = Learner(config, 4, torch.device("cpu"), seed=0)
    batch = _batch(np.random.default_rng(0), 4)
    batch.terminals[:] = True
    losses = [float(learner.update(batch)) for _ in range(250)]
    assert losses[-1] < 0.25 * losses[0]
    assert learner.updates == 250


def test_each_initialisation_draws_its_distribution():
    def layers(init):
        config = presets.load("ci", [f"network_init={init}"])
        network = Learner(config, 4, torch.device("cpu"), seed=0).network.requires_grad_(False)
        return networks.weighted_layers(network)

    for layer in layers("normal_0.01"):  # deep_q_rl q_network.py:420-458
        assert abs(float(layer.weight.std()) - 0.01) < 0.002 and torch.all(layer.bias == 0.1)
    for layer in layers("he_normal"):
        fan_in = layer.weight[0].numel()
        assert abs(float(layer.weight.std()) / (2 / fan_in) ** 0.5 - 1) < 0.2
        assert torch.all(layer.bias == 0)
    for layer in layers("fan_in_uniform"):  # Torch7's default, DQN 3.0's
        bound = 1 / layer.weight[0].numel() ** 0.5
        assert (
            float(layer.weight.abs().max()) <= bound
            and float(layer.weight.abs().max()) > 0.9 * bound
        )
        assert float(layer.bias.abs().max()) <= bound


@pytest.mark.parametrize("max_norm", [0.0, 1e-3])
def test_max_grad_norm_clips_the_gradient_the_optimiser_steps_with(max_norm):
    config = presets.load("ci", [f"max_grad_norm={max_norm}"])
    learner = Learner(config, 4, torch.device("cpu"), seed=0)
    norms = []
    take_step = learner.optimizer.step

    def step():
        grads = [p.grad for p in learner.network.parameters()]
        norms.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))
        take_step()

    learner.optimizer.step = step
    learner.update(_batch(np.random.default_rng(2), 4))
    if max_norm:
        assert norms == [pytest.approx(max_norm, rel=1e-5)]
    else:
        assert norms[0] > 1e-2  # the same batch's gradient, unclipped


def test_target_network_is_refreshed_after_agent_step_10001_and_every_10000_steps():
    # DQN 3.0 (NeuralQLearner.lua:349-358): numSteps counts agent steps, and the copy is
    # made when numSteps % target_q == 1, after that step's update.
    config = presets.load("ci", ["target_update_period_steps=10000", "loss=huber"])
    learner = Learner(config, 4, torch.device("cpu"), seed=0)
    weight, target_weight = next(learner.network.parameters()), next(learner.target.parameters())
    refreshed = []
    for step in range(1, 20_002):
        with torch.no_grad():
            weight.add_(1.0)  # stands for the step's update
        learner.after_step(step)
        if torch.equal(weight, target_weight):
            refreshed.append(step)
    assert refreshed == [1, 10_001, 20_001]
    assert learner.updates == 0  # counted in steps, whatever the updates


def test_a_target_period_of_one_step_refreshes_every_step():
    config = presets.load("ci", ["target_update_period_steps=1", "loss=huber"])
    learner = Learner(config, 4, torch.device("cpu"), seed=0)
    learner.update(_batch(np.random.default_rng(1), 4))
    assert not torch.equal(next(learner.network.parameters()), next(learner.target.parameters()))
    learner.after_step(2)
    assert torch.equal(next(learner.network.parameters()), next(learner.target.parameters()))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["target_update_period_steps=3", "loss=huber"],
        ["rmsprop_centered=false", "loss_reduction=mean"],
        ["optimizer=adam", "learning_rate=0.001"],
    ],
)
def test_same_seed_same_initial_weights_and_state_round_trip(overrides):
    config = presets.load("ci", overrides)
    a = Learner(config, 4, torch.device("cpu"), seed=5)
    b = Learner(config, 4, torch.device("cpu"), seed=5)
    other = Learner(config, 4, torch.device("cpu"), seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.network.parameters(), b.network.parameters()))
    assert not torch.equal(next(a.network.parameters()), next(other.network.parameters()))
    batch = _batch(np.random.default_rng(2), 4)
    a.update(batch)
    b.network.load_state_dict(a.network.state_dict())  # the snapshot's part of a resume
    b.load_state(
        {
            "tensors": {k: [t.numpy().copy() for t in v] for k, v in a.state()["tensors"].items()},
            "updates": a.updates,
        }
    )
    for step in range(2, 6):  # across a target network copy too
        a.update(batch)
        b.update(batch)
        a.after_step(step)
        b.after_step(step)
    assert all(torch.equal(x, y) for x, y in zip(a.network.parameters(), b.network.parameters()))


def test_update_fingerprint_is_the_same_for_the_same_updates_and_not_for_more():
    # scripts/update-fingerprint: two machines compare their kernels by it
    # (docs/pong-reference.md), so it must depend on nothing but the updates.
    module = load_script("update-fingerprint")
    threads = torch.get_num_threads()
    try:
        first, again, more = (module.fingerprint("ci", n, 0, 1) for n in (3, 3, 4))
    finally:
        torch.set_num_threads(threads)
    assert first["fingerprint"] == again["fingerprint"] != more["fingerprint"]
    assert first["machine"]["device"] == "cpu" and first["machine"]["torch_cpu_capability"]
    refused = subprocess.run(
        [sys.executable, str(ROOT / "scripts/update-fingerprint"), "--updates", "0"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "--updates 0" in refused.stderr


@pytest.mark.parametrize(
    "overrides, bootstraps_from_target",
    [
        # Nature: max over the target network's Q(s'), Huber loss summed (DQN 3.0)
        (["target_update_period_steps=10000", "loss=huber", "loss_reduction=sum"], True),
        # 2013: no target network, the network being trained bootstraps; squared, mean
        (["target_update_period_steps=0", "loss=squared", "loss_reduction=mean"], False),
    ],
)
def test_update_returns_the_loss_of_algorithm_1_computed_by_hand(overrides, bootstraps_from_target):
    # A discount no preset uses, so that one written in as a constant cannot agree.
    config = presets.load("ci", [*overrides, "discount=0.8", "reward_clip=true"])
    learner = Learner(config, 4, torch.device("cpu"), seed=0)
    assert (learner.target is not None) == bootstraps_from_target
    if learner.target is not None:
        # The online network drifts from the target between refreshes; here by noise.
        torch.manual_seed(1)
        with torch.no_grad():
            for p in learner.network.parameters():
                p.add_(0.02 * torch.randn_like(p))
    batch = _batch(np.random.default_rng(3), 4, size=2)
    batch.rewards[:] = [3.0, -2.0]  # clipped to 1 and -1
    batch.terminals[:] = [False, True]
    # Q before the update, by hand from the networks as they stand
    frames = lambda a: torch.from_numpy(a)  # noqa: E731
    with torch.no_grad():
        q = learner.network(frames(batch.states)).double()
        online_next = learner.network(frames(batch.next_states)).double()
        target_next = (
            learner.target(frames(batch.next_states)).double()
            if learner.target is not None
            else online_next
        )
    if learner.target is not None:  # the two networks disagree on y, so the test can tell
        assert abs(float(online_next[0].max() - target_next[0].max())) > 1e-3
    # y = clip(r) + gamma * max_a Q'(s', a) * (1 - terminal)
    y = [1.0 + 0.8 * float(target_next[0].max()), -1.0]
    errors = [y[i] - float(q[i, batch.actions[i]]) for i in range(2)]
    if config.loss == "huber":  # quadratic within [-1, 1], linear beyond
        losses = [0.5 * d * d if abs(d) < 1 else abs(d) - 0.5 for d in errors]
    else:
        losses = [0.5 * d * d for d in errors]
    expected = sum(losses) if config.loss_reduction == "sum" else sum(losses) / 2
    assert float(learner.update(batch)) == pytest.approx(expected, rel=1e-5)
