"""The device a `dqn` process computes on: one GPU of its own, or the CPU with a warning.

`snakemake --resources gpu=N` caps how many GPU jobs run at once but does not say which
GPU each one takes: Snakemake sets no CUDA_VISIBLE_DEVICES, so every job would start
on GPU 0. Each process therefore claims a GPU itself: it holds an exclusive lock on a
file named after the GPU's UUID, in a directory local to the node, for as long as it
lives (the kernel drops the lock when the process ends, SIGKILL included). Two `dqn`
processes of one user never share a GPU; one that finds every visible GPU taken waits
until one is free. Several jobs may share a GPU on purpose (`--jobs-per-gpu K`: seven
games on one large GPU): each GPU then has K slots, each a lock of its own, filled
across the GPUs first. UUIDs, not indices, name the locks, because on a SLURM node each
job may see its own GPU as index 0: there the allocation decides, and the lock only
keeps the jobs of one allocation apart.

What computes on the device is recorded in every file (`machine`): the bits of a
training update depend on the kernels MKL, oneDNN and ATen choose for the CPU, so the
same run on another CPU model can take another course from its first updates.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

import torch

from dqn import provenance
from dqn.errors import ConfigError

# Where the locks live: a fixed path (not $TMPDIR, which may differ between two jobs of
# one node), per user, since the lock files of another user could not be opened.
LOCK_DIR = Path("/tmp") / f"dqn-gpu-locks-{os.getuid()}"
WAIT_REPORT_S = 60.0

_claimed: list[tuple[int, object]] = []  # (index, open lock file): closing it frees the slot


# What says that a GPU was given to this process: SLURM's allocation of a job or step
# (--gpus), or CUDA's device list as a scheduler or a shell set it ("-1" and "NoDevFiles"
# give none).
GPU_ALLOCATION_VARIABLES = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES")


def allocated_gpu() -> str | None:
    """NAME=VALUE of the variable that gives this process a GPU, if one does: there
    "auto" must not fall back to the CPU, a run many times slower beside an idle GPU."""
    for variable in GPU_ALLOCATION_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value and value not in ("-1", "NoDevFiles"):
            return f"{variable}={value}"
    return None


def resolve_device(name: str, jobs_per_gpu: int = 1) -> torch.device:
    """`--device auto|cpu|cuda` as a torch device; a GPU (a slot of one, with
    `jobs_per_gpu` > 1) is claimed for this process."""
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if name == "cuda":
            raise ConfigError("--device cuda: no CUDA device is available (try --device auto)")
        allocated = allocated_gpu()
        if allocated:
            raise ConfigError(
                f"--device auto: {allocated} gives this process a GPU, but torch "
                f"{torch.__version__} finds no CUDA device (its CUDA {torch.version.cuda} "
                "needs an NVIDIA driver new enough for it: docs/cluster.md); --device cpu "
                "computes on the CPU"
            )
        print("dqn: no CUDA device found, computing on the CPU", file=sys.stderr)
        return torch.device("cpu")
    uuids = [
        str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())
    ]
    index = claim_gpu(uuids, LOCK_DIR, jobs_per_gpu)
    torch.cuda.set_device(index)
    print(
        f"dqn: using GPU {index} ({torch.cuda.get_device_name(index)}, {uuids[index]})",
        file=sys.stderr,
    )
    return torch.device("cuda", index)


# Environment variables that make torch's libraries choose other kernels on the same
# machine, and so other bits (scripts/update-fingerprint shows each).
KERNEL_SETTINGS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "CUBLAS_WORKSPACE_CONFIG",
)


def machine(device: torch.device) -> dict:
    """The machine that computes on `device` in this process, as a file's provenance
    records it (`dqn.layouts.MACHINE`): the CPU, the instruction set ATen's kernels use
    on it, torch's CPU threads (bit-exact runs need the same count), the settings of
    KERNEL_SETTINGS that are set, and the device ("cpu", or the GPU's name)."""
    return {
        "cpu": provenance.cpu_model(),
        "cpu_vendor": provenance.cpu_vendor(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "kernel_settings": {
            name: os.environ[name] for name in KERNEL_SETTINGS if name in os.environ
        },
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
    }


def claim_gpu(gpus: list[str], lock_dir: Path, jobs_per_gpu: int = 1, poll_s: float = 1.0) -> int:
    """Lock the first free slot of the GPUs `gpus` (their UUIDs, in index order), each
    with `jobs_per_gpu` slots, and return the GPU's index; hold the lock until the
    process exits. Wait while all are taken. A process claims one slot: asked again, it
    returns the GPU it holds."""
    if _claimed:
        return _claimed[0][0]
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if lock_dir.stat().st_uid != os.getuid():
        raise ConfigError(
            f"{lock_dir}: the GPU lock directory belongs to another user "
            f"(uid {lock_dir.stat().st_uid}); remove it"
        )
    reported_at = None
    # Slot-major: every GPU's first slot before any GPU's second, so jobs spread out.
    slots = [(index, gpu, slot) for slot in range(jobs_per_gpu) for index, gpu in enumerate(gpus)]
    while True:
        for index, gpu, slot in slots:
            handle = open(lock_dir / f"{gpu}.slot{slot}.lock", "a+")
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
            print(
                f"dqn: all {len(gpus)} GPUs ({jobs_per_gpu} job(s) each) are taken by "
                f"other dqn processes (locks in {lock_dir}); waiting for one. Run Snakemake "
                f"with --resources gpu=N, N at most {len(slots)}, to avoid waiting.",
                file=sys.stderr,
            )
            reported_at = now
        time.sleep(poll_s)
