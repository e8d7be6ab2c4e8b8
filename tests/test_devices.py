"""One GPU per process: claims on a faked list of GPUs, in separate processes as
Snakemake's jobs are; the CPU fallback; the machine a file records."""

import os
import select
import signal
import subprocess
import sys

import pytest
import torch

from dqn.devices import GPU_ALLOCATION_VARIABLES, machine, resolve_device
from dqn.errors import ConfigError

FAKE_GPUS = "GPU-1d5c-aaaa,GPU-77e0-bbbb"  # UUIDs as torch reports them, in index order

# A job: claim a GPU of the faked list, print its index, hold it until stdin closes.
JOB = (
    "import sys; from pathlib import Path; from dqn.devices import claim_gpu; "
    "print(claim_gpu(sys.argv[2].split(','), Path(sys.argv[1]), int(sys.argv[3]), "
    "poll_s=0.05), flush=True); sys.stdin.read()"
)


def start_job(lock_dir, jobs_per_gpu=1):
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(lock_dir), FAKE_GPUS, str(jobs_per_gpu)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def claimed(job, timeout_s):
    """The index `job` printed within `timeout_s`, or None if it is still waiting."""
    ready, _, _ = select.select([job.stdout], [], [], timeout_s)
    return int(job.stdout.readline()) if ready else None


@pytest.mark.slow  # processes that wait for each other
def test_concurrent_jobs_never_share_a_gpu_and_a_third_waits_for_a_free_one(tmp_path):
    first, second = start_job(tmp_path), start_job(tmp_path)
    try:
        assert {claimed(first, 30), claimed(second, 30)} == {0, 1}
        third = start_job(tmp_path)
        # Both GPUs are held: it waits and says so, it does not share.
        assert "all 2 GPUs (1 job(s) each) are taken by other dqn processes" in waiting(third, 30)
        assert claimed(third, 0.5) is None
        first.stdin.close()  # the first job ends normally...
        first.wait(timeout=10)
        first_index = 1 - claimed_index_of(second, tmp_path)
        assert claimed(third, 30) == first_index  # ...and the waiting one takes its GPU
        fourth = start_job(tmp_path)
        assert "--resources gpu=N, N at most 2" in waiting(fourth, 30)
        assert claimed(fourth, 0.5) is None
        second.send_signal(signal.SIGKILL)  # a killed job frees its GPU too
        second.wait(timeout=10)
        assert claimed(fourth, 30) == 1 - first_index
        third.stdin.close()
        fourth.stdin.close()
        third.wait(timeout=10)
        fourth.wait(timeout=10)
    finally:
        for job in (first, second):
            if job.poll() is None:
                job.kill()


def waiting(job, timeout_s):
    """The first line `job` wrote to stderr within `timeout_s` (its report that it waits);
    waiting for the report, not a fixed time, keeps a slow start from passing as a wait."""
    ready, _, _ = select.select([job.stderr], [], [], timeout_s)
    assert ready, f"process {job.pid} neither claimed a GPU nor reported waiting"
    return job.stderr.readline()


def claimed_index_of(job, lock_dir):
    """The index whose lock file names `job`'s process id."""
    for index, gpu in enumerate(FAKE_GPUS.split(",")):
        if (lock_dir / f"{gpu}.slot0.lock").read_text().strip() == str(job.pid):
            return index
    raise AssertionError(f"no lock file in {lock_dir} names process {job.pid}")


@pytest.mark.slow  # processes that wait for each other
def test_jobs_per_gpu_shares_each_gpu_by_that_many_jobs_spread_across_gpus(tmp_path):
    # Seven games on one large GPU is --jobs-per-gpu 7; here 2 GPUs with 2 slots each.
    jobs, indices = [], []
    try:
        for _ in range(4):
            jobs.append(start_job(tmp_path, jobs_per_gpu=2))
            indices.append(claimed(jobs[-1], 30))  # one at a time: the order is known
        assert indices == [0, 1, 0, 1]  # every GPU's first slot before any GPU's second
        jobs.append(start_job(tmp_path, jobs_per_gpu=2))
        assert "--resources gpu=N, N at most 4" in waiting(jobs[-1], 30)  # all 4 slots taken
        assert claimed(jobs[-1], 0.5) is None
    finally:
        for job in jobs:
            job.kill()
    assert sorted(p.name for p in tmp_path.glob("*.lock")) == sorted(
        f"{gpu}.slot{slot}.lock" for gpu in FAKE_GPUS.split(",") for slot in (0, 1)
    )


def test_the_cpu_is_used_when_asked_for():
    assert resolve_device("cpu") == torch.device("cpu")


def test_the_machine_names_the_gpu_a_process_computes_on(monkeypatch):
    names = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA H200"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: names[device.index])
    assert machine(torch.device("cuda", 1))["device"] == "NVIDIA H200"
    assert machine(torch.device("cpu"))["device"] == "cpu"


def test_the_machine_records_the_instruction_set_that_aten_was_held_to():
    # ATEN_CPU_CAPABILITY=default changes an update's bits on an AVX2 or AVX-512 CPU;
    # the record says so.
    read = "import torch; from dqn.devices import machine; print(machine(torch.device('cpu')))"
    result = subprocess.run(
        [sys.executable, "-c", read],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'torch_cpu_capability': 'DEFAULT'" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_auto_warns_and_uses_the_cpu_and_cuda_is_refused(capsys, monkeypatch):
    for variable in GPU_ALLOCATION_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # a GPU hidden on purpose
    assert resolve_device("auto") == torch.device("cpu")
    assert "no CUDA device found, computing on the CPU" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device is available"):
        resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("variable", GPU_ALLOCATION_VARIABLES)
def test_auto_refuses_the_cpu_where_a_gpu_was_allocated_that_torch_cannot_use(
    monkeypatch, variable
):
    """A SLURM job given a GPU whose driver is too old for torch's CUDA would otherwise
    train for hours on the CPU beside the idle GPU."""
    for other in GPU_ALLOCATION_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(variable, "0")
    with pytest.raises(ConfigError, match=f"--device auto: {variable}=0 gives this process a GPU"):
        resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")  # asked for, the CPU is used


def test_a_process_asked_twice_keeps_its_one_gpu(tmp_path):
    # flock refuses a second lock of the same file even within one process: a second
    # claim must not wait for the GPU the process holds itself.
    twice = (
        "import sys; from pathlib import Path; from dqn.devices import claim_gpu; "
        "gpus, where = sys.argv[2].split(','), Path(sys.argv[1]); "
        "print(claim_gpu(gpus, where), claim_gpu(gpus, where))"
    )
    result = subprocess.run(
        [sys.executable, "-c", twice, str(tmp_path), FAKE_GPUS],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.split() == ["0", "0"], result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_lock_directory_of_another_user_is_refused_by_name(tmp_path):
    from dqn.devices import claim_gpu

    os.chown(tmp_path, 12345, 12345)
    with pytest.raises(
        ConfigError, match=f"{tmp_path}: the GPU lock directory belongs to another user"
    ):
        claim_gpu(FAKE_GPUS.split(","), tmp_path)
