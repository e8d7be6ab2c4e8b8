"""profiles/slurm on a real SLURM: scripts/slurm-local starts Debian's slurmctld, slurmd
and munge as a one-node cluster, and the `ci` workflow runs through the profile, every
job submitted with sbatch, queued by slurmctld and run by slurmd."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dqn.rundir import RunDir

from conftest import (
    ROOT,
    assert_same_weights,
    copy_workflow,
    snakemake,
    start_breakout_training,
    wait_for,
)

# A SLURM cluster started and the ci workflow run on it: not in make test-fast.
pytestmark = pytest.mark.slow

SLURM_LOCAL = ROOT / "scripts" / "slurm-local"
PROFILE = ROOT / "profiles" / "slurm"
# Where scripts/slurm-local keeps the cluster's config, state and logs.
CLUSTER_DIR = Path(os.environ.get("SLURM_LOCAL_DIR", "/tmp/slurm-local"))
# Every job through the profile. Its first status check comes 40 s after a submission,
# then every 10 s more: right for real jobs, minutes of waiting for the ci jobs, which
# last seconds. The two status-check flags only make the test faster; everything else is
# the profile unchanged (this cluster needs no site setting: its partition is the default
# one, and it has no accounts).
ON_SLURM = (
    "--profile",
    PROFILE,
    "--slurm-init-seconds-before-status-checks",
    "5",
    "--seconds-between-status-checks",
    "5",
)
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
CI_RULES = {
    "train",
    "evaluate",
    "trace_value_function",
    "video",
    "figure_training_curves",
    "figure_value_function",
    "table1",
    "figure_aggregate",
}


def skip_reason():
    installed = all(
        shutil.which(name, path=os.environ["PATH"] + ":/usr/sbin:/sbin")
        for name in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")
    )
    if os.geteuid() != 0:
        return "scripts/slurm-local must run as root (slurmd starts jobs as their user)" + (
            "" if installed else "; SLURM is not installed either"
        )
    if not installed and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


def slurm_local(command, **kwargs):
    return subprocess.run(
        [SLURM_LOCAL, command], capture_output=True, text=True, check=False, **kwargs
    )


def ci_through_slurm(directory, *args, timeout):
    """Snakemake on the ci config in `directory`, a copied workflow, every job through the
    profile; `args` follow `--configfile config/ci.yaml` (more config files first)."""
    return snakemake(directory, *ON_SLURM, "--configfile", "config/ci.yaml", *args, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    """A running one-node SLURM; stopped at the end unless it was running before."""
    if reason := skip_reason():
        pytest.skip(reason)
    was_running = slurm_local("status").returncode == 0
    # apt-get may install the packages first on a fresh machine.
    started = slurm_local("start", timeout=900)
    assert started.returncode == 0, started.stdout + started.stderr
    yield
    if not was_running:
        stopped = slurm_local("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def ci_on_slurm(cluster, tmp_path_factory):
    """The ci config, one seed (every rule; the workflow test runs both seeds), run once
    with `--profile profiles/slurm`; its directory and output."""
    directory = copy_workflow(tmp_path_factory.mktemp("slurm_ci"))
    (directory / "seed0.yaml").write_text("seeds: [0]\n")  # --config would give '0', text
    # Keep the SLURM log of every job, not only of failed ones, to check them below.
    result = ci_through_slurm(directory, "seed0.yaml", "--slurm-keep-successful-logs", timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    return directory, output


def scontrol_job(job_id):
    result = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job_id],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, f"slurmctld does not know job {job_id}: {result.stderr}"
    return dict(re.findall(r"(\w+)=(\S*)", result.stdout))


def test_ci_workflow_on_slurm_writes_every_figure_and_table(ci_on_slurm):
    directory, _ = ci_on_slurm
    for name in (
        "training_curves_figure2",
        "training_curves_all_games",
        "value_function",
        "table1",
        "aggregate_intervals",
        "aggregate_sample_efficiency",
        "aggregate_profile",
        "aggregate_improvement",
    ):
        for suffix in ("png", "pdf", "json"):
            assert (directory / f"results/figures/{name}.{suffix}").stat().st_size > 0
    for suffix in ("csv", "md", "tex"):
        assert (directory / f"results/tables/table1.{suffix}").stat().st_size > 0
    for game in ("Breakout", "Seaquest"):
        assert (directory / f"results/eval/{game}/seed0.h5").stat().st_size > 0


def test_every_ci_job_ran_as_a_slurm_job(ci_on_slurm):
    directory, output = ci_on_slurm
    submitted = SUBMITTED.findall(output)
    # Every job but the target rule `all` (which runs nothing) went through sbatch: train,
    # evaluate and video for 2 games x 1 seed, a trace, 2 training-curve figures, Figure
    # 3, Table 1 and the aggregates.
    assert len(submitted) == 12, output[-8000:]
    (run_id,) = re.findall(r"SLURM run ID: (\S+)", output)
    # squeue, not sacct (which this cluster lacks), told the plugin that jobs ended.
    assert "Falling back to 'sacct'" not in output
    rules = set()
    for _, slurm_id, log in submitted:
        job = scontrol_job(slurm_id)  # MinJobAge=3600 keeps finished jobs in slurmctld
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["JobName"] == run_id and job["WorkDir"] == str(directory), job
        rule = re.match(r"rule_(\w+?)(_wildcards_|$)", job["Comment"]).group(1)
        rules.add(rule)
        # The job's own log, written by slurmd's step on the node, not by this process.
        log_path = directory / ".snakemake/slurm_logs" / f"rule_{rule}"
        assert log.startswith(str(log_path)) and log.endswith(f"/{slurm_id}.log")
        text = (directory / log).read_text()
        assert f"rule {rule}:" in text and "1 of 1 steps (100%) done" in text, text
    assert rules == CI_RULES
    # slurmctld's job completion log has a line for each of them.
    completions = (CLUSTER_DIR / "jobcomp.log").read_text()
    for _, slurm_id, _ in submitted:
        assert re.search(rf"JobId={slurm_id} .*JobState=COMPLETED", completions)


def test_a_gpu_job_asks_sbatch_for_a_gpu(cluster, tmp_path):
    # With device: auto the training job declares gpu=1; the profile must turn that
    # into an sbatch GPU request. This cluster has no GPUs, so slurmctld refuses it
    # at submission, which is what shows that the request reached SLURM.
    directory = copy_workflow(tmp_path)
    target = "results/runs/Breakout/seed0/complete.h5"
    result = ci_through_slurm(
        directory, "--config", "device=auto", "--retries", "0", target, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # The plugin names the refused sbatch call (in its error and again in the summary).
    calls = set(re.findall(r"^\s*(sbatch --parsable .*)$", output, flags=re.MULTILINE))
    assert len(calls) == 1, output[-5000:]
    (call,) = calls
    assert " --gpus=1 " in call and "--cpus-per-task=1" in call, call
    assert "Invalid generic resource (gres) specification" in output, output[-5000:]


def test_a_training_job_sent_sigterm_by_slurm_is_retried_and_continues(ci_on_slurm, tmp_path):
    """Preemption or a time limit, as SLURM does it: SIGTERM to the running train job
    (`scancel --signal=TERM`). dqn saves and exits 143, the job fails, the profile's
    retries resubmit it with sbatch, and the new job continues from the saved step to the
    weights of the uninterrupted run."""
    directory = copy_workflow(tmp_path)
    run = directory / "results/runs/Breakout/seed0"
    output = tmp_path / "snakemake.out"
    with open(output, "w") as sink:
        workflow = start_breakout_training(directory, *ON_SLURM, stdout=sink)
    try:
        wait_for(run / "snapshots/epoch_0001.h5", workflow, timeout_s=300)
        (first,) = SUBMITTED.findall(output.read_text())
        signalled = subprocess.run(
            ["scancel", "--signal=TERM", first[1]], capture_output=True, text=True, timeout=30
        )
        assert signalled.returncode == 0, signalled.stderr
        workflow.wait(timeout=600)
    finally:
        workflow.kill()
    text = output.read_text()
    assert workflow.returncode == 0, text[-8000:]
    submitted = SUBMITTED.findall(text)
    assert len(submitted) == 2, text[-8000:]  # the job, and its retry
    assert scontrol_job(first[1])["JobState"] == "FAILED"
    train_log = (directory / "results/logs/train/Breakout/seed0.log").read_text()
    assert "resumed from results/runs/Breakout/seed0/resume/interrupted.h5" in train_log
    assert_same_weights(RunDir(run), RunDir(ci_on_slurm[0] / "results/runs/Breakout/seed0"))
