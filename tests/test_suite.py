"""The suite's own arrangement: make test's two processes (pytest-xdist, a file to a
process) are handed the learning runs' file first, so its runs train from the suite's
start beside the other tests (docs/tests.md) instead of lengthening its end, and then
the longest files before the short ones, which fill the end."""

from pathlib import Path

from xdist.scheduler import LoadFileScheduling

import conftest


class Worker:
    """What the scheduler asks of a worker process: its name, and the tests it is sent."""

    def __init__(self, name):
        self.gateway = type("Gateway", (), {"id": name})()
        self.sent = []
        self.shutting_down = False

    def send_runtest_some(self, indices):
        self.sent.extend(indices)

    def shutdown(self):
        self.shutting_down = True


class TwoProcesses:
    """pytest's config (its options, pyproject.toml's addopts among them) as make test's
    `-n 2` gives it to xdist, whatever `-n` this test runs under."""

    def __init__(self, config):
        self.config = config

    def getvalue(self, name):
        return ["2*popen"] if name == "tx" else self.config.getvalue(name)

    def __getattr__(self, name):
        return getattr(self.config, name)


class Item:
    def __init__(self, name, test, slow):
        self.path = Path("tests") / name
        self.nodeid = f"tests/{name}::{test}"
        self.slow = slow

    def get_closest_marker(self, name):
        return "slow" if name == "slow" and self.slow else None


def handed_out(config, files):
    """The file each of two processes is handed first, and the files in the order
    tests/conftest.py sorts them, for a collection of `files` ({name: (tests, slow
    tests)}, in the order pytest collects them), scheduled under pytest's `config`."""
    items = [
        Item(name, f"t{i}", slow=i < slow)
        for name, (count, slow) in files.items()
        for i in range(count)
    ]
    conftest.pytest_collection_modifyitems(items)
    scheduler = LoadFileScheduling(TwoProcesses(config))
    workers = [Worker("gw0"), Worker("gw1")]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, [item.nodeid for item in items])
    scheduler.schedule()
    first = [scheduler.collection[worker.sent[0]].split("::")[0] for worker in workers]
    return first, list(dict.fromkeys(item.path.as_posix() for item in items))


def test_the_learning_runs_start_first_and_the_longest_files_go_before_the_short(pytestconfig):
    # Files as pytest collects them (by name); the learning file has fewer tests than
    # others: xdist's own order (most tests first) would hand out test_replay.py first.
    first, order = handed_out(
        pytestconfig,
        {
            "test_aggregates.py": (2, 0),
            "test_learning.py": (3, 3),
            "test_replay.py": (9, 0),
            "test_train.py": (4, 4),
            "test_workflow.py": (5, 2),
        },
    )
    assert first == ["tests/test_learning.py", "tests/test_train.py"], first
    assert order == [
        "tests/test_learning.py",
        "tests/test_train.py",  # the most slow tests
        "tests/test_workflow.py",
        "tests/test_replay.py",  # the most tests
        "tests/test_aggregates.py",
    ]
