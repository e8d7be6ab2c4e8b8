import torch

# One torch thread in the test process: results then match the `--threads 1`
# subprocesses bit for bit, and two busy cores do not starve each other.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """tests/test_learning.py first: its training runs take minutes on one CPU thread
    each, so they start at once and train beside the tests of the other process (make
    test runs two)."""
    items.sort(key=lambda item: item.path.name != "test_learning.py")
