"""One run seed, many independent generators: each purpose gets its own derived seed."""

from __future__ import annotations

import numpy as np

# Each purpose's number in the derivation, fixed once given: a new purpose takes a new
# number, so that adding one changes no other purpose's seeds (no run's numbers).
PURPOSES = {
    "train_env": 0,
    "agent": 1,
    "network": 2,
    "heldout_env": 3,
    "heldout_policy": 4,
    "eval_env": 5,
    "eval_policy": 6,
}


def derive(seed: int, purpose: str, *more: int) -> int:
    """A 32-bit seed for `purpose`, independent of the others (NumPy's SeedSequence)."""
    entropy = [seed, PURPOSES[purpose], *more]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def generator(seed: int, purpose: str, *more: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(derive(seed, purpose, *more)))
