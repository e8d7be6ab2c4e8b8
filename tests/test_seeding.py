"""Seeds by purpose: each purpose's seeds are fixed, whatever purposes are added."""

import pytest

from dqn import seeding

# Seeds that runs of dqn 0.1.0 drew (format 1): a run's numbers must not move.
PINNED = {
    ("train_env", 1): 1835504127,
    ("agent", 1): 1189033389,
    ("network", 1): 1596810411,
    ("heldout_env", 1): 4010755824,
    ("heldout_policy", 1): 3549136632,
    ("eval_env", 1): 3025039489,
    ("eval_policy", 1): 1563021450,
}


@pytest.mark.parametrize("purpose,seed", PINNED)
def test_each_purpose_derives_the_seeds_it_always_has(purpose, seed):
    assert seeding.derive(seed, purpose) == PINNED[purpose, seed]


def test_an_epoch_of_evaluation_has_seeds_of_its_own():
    assert seeding.derive(7, "eval_env", 3) == 1558689951
    assert seeding.derive(7, "eval_policy", 3) == 4178234391
    assert seeding.derive(7, "eval_env", 3) != seeding.derive(7, "eval_env", 4)


def test_purposes_have_distinct_numbers_and_an_unknown_purpose_is_refused():
    assert len(set(seeding.PURPOSES.values())) == len(seeding.PURPOSES)
    with pytest.raises(KeyError):
        seeding.derive(1, "exploration")
