import tracemalloc

import numpy as np
import pytest

from dqn import checkpoint, h5io, presets
from dqn.play import Step
from dqn.replay import ENTRY_BYTES, ReplayMemory, save_bytes, training_bytes

from conftest import provenance_of


def frame(value):
    return np.full((84, 84), value, np.uint8)


def fill(memory, episodes):
    """Add episodes given as lists of frame values; returns the value of each entry."""
    values = []
    for episode in episodes:
        for i, value in enumerate(episode):
            memory.store(
                Step(
                    frame(value),
                    episode_start=i == 0,
                    action=value % 4,
                    reward=float(value),
                    terminal=i == len(episode) - 1,
                    episode=None,
                )
            )
            values.append(value)
    return values


def stack_values(stack):
    return [int(f[0, 0]) for f in stack]


def test_stack_never_crosses_episode_start():
    memory = ReplayMemory(100)
    fill(memory, [[1, 2, 3, 4, 5], [11, 12, 13, 14], [21]])
    batch = memory.sample(500, np.random.default_rng(4))
    states = {int(r): stack_values(s) for r, s in zip(batch.rewards, batch.states)}
    next_states = {int(r): stack_values(s) for r, s in zip(batch.rewards, batch.next_states)}
    assert states[11] == [0, 0, 0, 11]  # first frame of episode 2
    assert states[12] == [0, 0, 11, 12]
    assert states[14] == [11, 12, 13, 14]
    assert states[5] == [2, 3, 4, 5]
    assert states[1] == [0, 0, 0, 1]
    assert next_states[5] == [0, 0, 0, 11]  # after a terminal: the next episode's start
    assert next_states[13] == [11, 12, 13, 14]


def test_sampled_states_and_next_states_respect_episode_starts_and_terminals():
    memory = ReplayMemory(64)
    fill(memory, [[1, 2, 3], [11, 12, 13, 14, 15], [21, 22]])
    batch = memory.sample(2000, np.random.default_rng(0))
    for state, next_state, reward, terminal in zip(
        batch.states, batch.next_states, batch.rewards, batch.terminals
    ):
        s, n = stack_values(state), stack_values(next_state)
        assert s[-1] == reward  # the entry's own frame is the state's newest frame
        episode = s[-1] // 10
        assert all(v == 0 or v // 10 == episode for v in s)
        if not terminal:
            assert n[:-1] == s[1:] and n[-1] == s[-1] + 1
        # the newest entry (22) has no successor yet and is never drawn
        assert s[-1] != 22
    assert set(batch.rewards.tolist()) == {1, 2, 3, 11, 12, 13, 14, 15, 21}


def test_ring_wrap_around_keeps_the_newest_and_never_uses_overwritten_history():
    memory = ReplayMemory(10)
    fill(memory, [list(range(1, 26))])  # one long episode, 25 entries in 10 slots
    assert memory.size == 10 and memory.added == 25
    batch = memory.sample(3000, np.random.default_rng(1))
    drawn = set(batch.rewards.tolist())
    # entries 16..25 are in the ring; 16..18 lack three older frames, 25 lacks a successor
    assert drawn == set(range(19, 25))
    for state, next_state in zip(batch.states, batch.next_states):
        s = stack_values(state)
        assert s == list(range(s[-1] - 3, s[-1] + 1))
        assert stack_values(next_state) == [v + 1 for v in s]


def test_sampling_is_uniform_over_valid_entries():
    memory = ReplayMemory(1000)
    fill(memory, [list(range(1, 201))])
    rng = np.random.default_rng(2)
    rewards = np.concatenate([memory.sample(2_000, rng).rewards for _ in range(20)])
    counts = np.bincount(rewards.astype(int), minlength=201)  # 201 per entry expected
    assert counts[200] == 0 and counts[1:200].min() > 130 and counts[1:200].max() < 270


def test_bytes_per_transition_at_one_million_is_about_one_frame():
    memory = ReplayMemory(1_000_000)  # zero pages: nothing is touched
    per_transition = memory.nbytes() / 1_000_000
    assert 84 * 84 <= per_transition <= 7_200
    assert per_transition == ENTRY_BYTES  # what the check against the machine's memory counts


def test_the_memory_check_budgets_the_first_epochs_save_or_a_shorter_runs():
    # The first epoch's save is the largest (tests/test_train.py holds a run to it); a run
    # that ends before its first epoch would end saves its steps' entries, a ring its
    # capacity at most.
    config = presets.load("ci")  # replay start 200, first epoch's end at step 300
    for changes, entries in (
        ({}, 300),
        ({"train_steps": 250}, 250),
        ({"replay_capacity_transitions": 280}, 280),
    ):
        changed = config.with_values(**changes)
        ring = changed.replay_capacity_transitions * ENTRY_BYTES
        assert training_bytes(changed) == ring + save_bytes(entries), changes


def test_a_save_and_a_resume_of_replay_entries_take_no_more_memory_than_save_bytes(tmp_path):
    # What a training job's memory request adds for its saves (workflow/rules/common.smk),
    # held to the memory a save and a resume take, at their worst: frames that do not
    # compress. A save copies the entries and builds their file in memory (dqn.h5io).
    memory = ReplayMemory(30_000)
    memory.frames[:] = np.random.default_rng(0).integers(0, 256, memory.frames.shape, np.uint8)
    memory.added = 45_000  # wrapped: the entries since the last save lie in two pieces
    start, stop = 25_000, 45_000
    attrs = {
        **provenance_of("Pong", 0),
        **{"epoch": 1, "step": stop, "update": 1, "start": start, "stop": stop},
    }
    path = tmp_path / "delta.h5"
    tracemalloc.start()
    try:
        h5io.write(path, "replay_delta", attrs, memory.entries(start, stop), compress=True)
        saved = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        memory.put_entries(start, h5io.read(path, "replay_delta")[1])
        resumed = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    entries_bytes = (stop - start) * ENTRY_BYTES
    assert entries_bytes < saved <= save_bytes(stop - start), saved / entries_bytes
    assert entries_bytes < resumed <= save_bytes(stop - start), resumed / entries_bytes


def test_a_resume_holds_one_replay_part_at_a_time(tmp_path):
    # A resume reads the parts of its ring one by one (dqn.checkpoint.put_replay_deltas):
    # the memory it takes is one part's, as save_bytes budgets, however many there are.
    memory, part = ReplayMemory(40_000), 10_000
    memory.frames[:] = np.random.default_rng(0).integers(0, 256, memory.frames.shape, np.uint8)
    memory.added = 4 * part
    paths = []
    for start in range(0, memory.added, part):
        stop = start + part
        attrs = {
            **provenance_of("Pong", 0),
            **{"epoch": 1, "step": stop, "update": 1, "start": start, "stop": stop},
        }
        paths.append(tmp_path / f"delta_{start}.h5")
        h5io.write(paths[-1], "replay_delta", attrs, memory.entries(start, stop), compress=True)
    expected = memory.frames.copy()

    def peak_of_putting(parts):
        restored = ReplayMemory(memory.capacity)
        read = ((path, *h5io.read(path, "replay_delta")) for path in paths[:parts])
        tracemalloc.start()
        try:
            assert checkpoint.put_replay_deltas(restored, 0, read) == parts * part
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert np.array_equal(restored.frames[: parts * part], expected[: parts * part])
        return peak

    one, four = peak_of_putting(1), peak_of_putting(4)
    assert one <= save_bytes(part) and four < 1.1 * one, (one, four)


def test_entries_round_trip_through_put_entries_gives_the_same_samples():
    memory = ReplayMemory(50)
    fill(memory, [list(range(1, 31)), list(range(101, 141))])  # 70 entries, wrapped
    restored = ReplayMemory(50)
    restored.put_entries(20, memory.entries(20, 45))
    restored.put_entries(45, memory.entries(45, 70))
    a = memory.sample(500, np.random.default_rng(3))
    b = restored.sample(500, np.random.default_rng(3))
    for field in ("states", "actions", "rewards", "next_states", "terminals"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    with pytest.raises(ValueError, match="not in the ring"):
        memory.entries(10, 30)


def test_too_few_entries_to_sample_is_an_error():
    memory = ReplayMemory(10)
    fill(memory, [[1]])
    with pytest.raises(ValueError, match="too few"):
        memory.sample(1, np.random.default_rng(0))


def test_the_newest_entry_is_never_drawn_until_the_next_one_is_stored():
    # Its next state ends with the frame of the entry after it.
    memory = ReplayMemory(10)
    for value in (1, 2, 3):
        memory.store(Step(frame(value), value == 1, 0, float(value), False, None))
    assert set(memory.sample(200, np.random.default_rng(0)).rewards.tolist()) == {1, 2}
    memory.store(Step(frame(4), False, 0, 4.0, False, None))
    batch = memory.sample(200, np.random.default_rng(0))
    assert set(batch.rewards.tolist()) == {1, 2, 3}
    next_of_3 = [stack_values(n) for n, r in zip(batch.next_states, batch.rewards) if r == 3]
    assert next_of_3 and next_of_3[0] == [1, 2, 3, 4]
