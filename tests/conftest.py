import torch

# One torch thread in the test process: results then match the `--threads 1`
# subprocesses bit for bit, and two busy cores do not starve each other.
torch.set_num_threads(1)


def pytest_collection_finish(session):
    """Let a test module start long work as soon as its tests are selected, so that it
    runs beside the tests collected before it (tests/test_learning.py: its training runs,
    minutes on one CPU thread each)."""
    modules = {item.module for item in session.items if hasattr(item.module, "start_early")}
    for module in modules:
        module.start_early([item.name for item in session.items if item.module is module])


def pytest_sessionfinish(session):
    for module in {item.module for item in session.items if hasattr(item.module, "stop_early")}:
        module.stop_early()
