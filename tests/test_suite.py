"""The suite's own arrangement: make test's two processes (pytest-xdist, a file to a
process) are handed the learning runs' file first, so its runs train from the suite's
start beside the other tests (docs/tests.md) instead of lengthening its end."""

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
    def __init__(self, name, test):
        self.path = Path("tests") / name
        self.nodeid = f"tests/{name}::{test}"


def test_the_learning_runs_file_is_the_first_one_handed_out(pytestconfig):
    # Files as pytest collects them (by name), the learning file with fewer tests than
    # another: xdist's default order (most tests first) would send test_workflow.py first.
    counts = {"test_aggregates.py": 2, "test_learning.py": 3, "test_workflow.py": 9}
    items = [Item(name, f"t{i}") for name, count in counts.items() for i in range(count)]
    conftest.pytest_collection_modifyitems(items)
    scheduler = LoadFileScheduling(TwoProcesses(pytestconfig))
    workers = [Worker("gw0"), Worker("gw1")]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, [item.nodeid for item in items])
    scheduler.schedule()
    first = scheduler.collection[workers[0].sent[0]]
    assert first.startswith("tests/test_learning.py::"), first
