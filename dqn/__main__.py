"""`python -m dqn ...`: the `dqn` command."""

import sys

from dqn.cli import main

sys.exit(main())
