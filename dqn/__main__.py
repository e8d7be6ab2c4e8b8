"""`python -m dqn ...`: the `dqn` command."""

from dqn.cli import console

console()
