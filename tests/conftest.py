import torch

# One torch thread in the test process: results then match the `--threads 1`
# subprocesses bit for bit, and two busy cores do not starve each other.
torch.set_num_threads(1)

