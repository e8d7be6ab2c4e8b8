"""One run seed, many independent generators: each purpose gets its own derived seed."""

from __future__ import annotations

import numpy as np

PURPOSES = ("train_env", "agent", "network", "heldout_env", "heldout_policy",
            "eval_env", "eval_policy")


def derive(seed: int, purpose: str, *more: int) -> int:
    """A 32-bit seed for `purpose`, independent of the others (NumPy's SeedSequence)."""
    entropy = [seed, PURPOSES.index(purpose), *more]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def generator(seed: int, purpose: str, *more: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(derive(seed, purpose, *more)))
