"""The device a `dqn` process computes on: one GPU of its own, or the CPU with a warning.

`snakemake --resources gpu=N` caps how many GPU jobs run at once but does not say which
GPU each one takes: Snakemake sets no CUDA_VISIBLE_DEVICES, so every job would start
on GPU 0. Each process therefore claims a GPU itself: it holds an exclusive lock on a
file named after the GPU's UUID, in a directory local to the node, for as long as it
lives (the kernel drops the lock when the process ends, SIGKILL included). Two `dqn`
processes of one user never share a GPU; one that finds every visible GPU taken waits
until one is free. UUIDs, not indices, name the locks, because on a SLURM node each
job may see its own GPU as index 0: there the allocation decides, and the lock only
keeps the jobs of one allocation apart.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from dqn.errors import ConfigError

# Where the locks live: a fixed path (not $TMPDIR, which may differ between two jobs of
# one node), per user, since the lock files of another user could not be opened.
LOCK_DIR = Path("/tmp") / f"dqn-gpu-locks-{os.getuid()}"
WAIT_REPORT_S = 60.0

_claimed: list[tuple[int, object]] = []  # (index, open lock file): closing it frees the GPU


def resolve_device(name: str) -> torch.device:
    """`--device auto|cpu|cuda` as a torch device; a GPU is claimed for this process."""
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if name == "cuda":
            raise ConfigError("--device cuda: no CUDA device is available (try --device auto)")
        print("dqn: no CUDA device found, computing on the CPU", file=sys.stderr)
        return torch.device("cpu")
    uuids = [str(torch.cuda.get_device_properties(i).uuid)
             for i in range(torch.cuda.device_count())]
    index = claim_gpu(uuids, LOCK_DIR)
    torch.cuda.set_device(index)
    print(f"dqn: using GPU {index} ({torch.cuda.get_device_name(index)}, {uuids[index]})",
          file=sys.stderr)
    return torch.device("cuda", index)


def claim_gpu(gpus: list[str], lock_dir: Path, poll_s: float = 1.0,
              say: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
              ) -> int:
    """Lock the first free GPU of `gpus` (their UUIDs, in index order) and return its
    index; hold the lock until the process exits. Wait while all are taken. A process
    claims one GPU: asked again, it returns the one it holds."""
    if _claimed:
        return _claimed[0][0]
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if lock_dir.stat().st_uid != os.getuid():
        raise ConfigError(f"{lock_dir}: the GPU lock directory belongs to another user "
                          f"(uid {lock_dir.stat().st_uid}); remove it")
    reported_at = None
    while True:
        for index, gpu in enumerate(gpus):
            handle = open(lock_dir / f"{gpu}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")  # who holds it, for a user who looks
            handle.flush()
            _claimed.append((index, handle))
            return index
        now = time.monotonic()
        if reported_at is None or now - reported_at >= WAIT_REPORT_S:
            say(f"dqn: all {len(gpus)} GPUs are taken by other dqn processes (locks in "
                f"{lock_dir}); waiting for one. Run Snakemake with --resources gpu=N, "
                f"N at most {len(gpus)}, to avoid waiting.")
            reported_at = now
        time.sleep(poll_s)
