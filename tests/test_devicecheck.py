"""scripts/device-check (issue 23): its CPU form runs every section and writes its
summary, so the GPU's check cannot rot while no GPU is at hand; the wheels it carries."""

import errno
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dqn import devicecheck, presets, wheels
from dqn.rundir import RunDir

from conftest import epoch_end_step, full_epochs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device-check"
SECTIONS = ("facts", "speed", "sharing", "correctness", "resume", "learning")


@pytest.fixture(scope="module")
def cpu_form(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-check")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, out


@pytest.mark.slow
def test_the_cpu_form_runs_every_section_and_writes_its_summary_and_table(cpu_form):
    done, out = cpu_form
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # nothing warns: on the GPU machine the output's tail is all that comes back
    output = done.stdout + done.stderr
    assert "Warning" not in output, output[-3000:]
    assert sorted(path.name for path in out.iterdir()) == [devicecheck.SUMMARY, devicecheck.TABLE]
    summary = json.loads((out / devicecheck.SUMMARY).read_text())
    assert summary["form"] == "cpu"
    # the installation's record, kept: here the carried packages import, nothing is installed
    assert summary["install"]["python_version"] == platform.python_version()
    assert summary["install"]["site"] is None and "error" not in summary["install"]
    for name in SECTIONS:
        assert "error" not in summary[name], summary[name]

    facts = summary["facts"]
    assert facts["device"] == "cpu" and facts["cpu_count"] >= 1 and facts["git_commit"]
    assert facts["machine"]["device"] == "cpu" and facts["machine"]["cpu"]
    assert facts["nvidia_smi_gpu"] is None and facts["compute_mode"] is None  # no GPU in use
    assert all(row["admitted"] for row in facts["requirements"].values())

    speed = summary["speed"]
    emulator = speed["emulator_agent_steps_per_s"]
    for preset in ("paper2013", "nature2015"):
        figures = speed[preset]
        assert figures["updates_per_s"] > 0 and figures["loop_agent_steps_per_s"] > 0
        assert figures["loop_vs_emulator"] == figures["loop_agent_steps_per_s"] / emulator
    assert speed["greedy_action_ms"] > 0 and speed["sample_to_device_ms"] > 0
    # CUDA's variants run the plain path on the CPU: their code runs, their ratios mean nothing
    for variant in ("cuda_graph", "deterministic", "pageable_copies"):
        assert "error" not in speed[variant], speed[variant]["error"]
    # On the CPU no learner captures a CUDA graph (Learner.graph is None), so the "graph"
    # learner runs the plain update and its agreement says only what plain_again says:
    # the plain update repeats bit for bit. The GPU run of scripts/device-check is the
    # only coverage of the CUDA graph path (GraphedStep) and of its agreement.
    for preset in ("paper2013", "nature2015"):
        assert speed["cuda_graph"][f"{preset}_graph_captured"] is False
        assert speed["cuda_graph"][f"{preset}_plain_again_identical"]

    sharing = summary["sharing"]
    assert sharing["games"] == list(devicecheck.CPU.sharing_games)
    assert sharing["worst_shared_vs_alone"] == min(sharing["shared_vs_alone"].values()) > 0

    # On the CPU the device is the CPU: the check compares it with another thread count.
    correctness = summary["correctness"]
    assert correctness["tolerances"] == {"cpu_other_threads": devicecheck.FP32_TOLERANCE}
    assert correctness["within_tolerance"] and all(correctness["same_episodes"].values())

    assert list(summary["resume"]) == ["default", "nature2015"]  # the CUDA form adds two
    for resume in summary["resume"].values():
        assert resume["killed_mid_run"] and resume["resumed_from_snapshot"]
        assert resume["resumed_identical"] and "rerun_identical" not in resume  # CUDA only
    # nature2015's lost lives end episodes, each followed by the terminal's own step
    assert summary["resume"]["nature2015"]["lost_lives"] >= 1
    assert summary["resume"]["default"]["lost_lives"] == 0

    learning = summary["learning"]
    assert learning["bounded"] and len(learning["average_max_q"]) == 2
    assert learning["cut_short"] is False and summary["deadline_s"] == devicecheck.DEADLINE_S

    goals = {goal["check"]: goal for goal in summary["goals"]}
    assert goals["SIGKILL and resume: same weights (default)"]["met"] is True
    assert goals["SIGKILL and resume: same weights (nature2015)"]["met"] is True
    assert goals["SIGKILL and resume: same weights (deterministic)"]["met"] is None  # CUDA only
    assert goals["paper2013: updates/s"]["met"] is None  # the GPU's goals are not judged
    table = (out / devicecheck.TABLE).read_text()
    assert (
        table.startswith("# Device check (cpu form)") and "| check | value | goal | met |" in table
    )
    assert f"\n\ncpu (CPU {facts['machine']['cpu']}), torch " in table  # the facts line
    assert table in done.stdout


@pytest.mark.parametrize("name", ["GPU", "CPU"])
def test_each_forms_runs_are_valid_presets_and_its_resume_kill_lands_before_the_end(name):
    # The GPU form's sizes run nowhere else: a key misspelt there would show only on the
    # GPU machine, in its few minutes.
    sizes = getattr(devicecheck, name)
    resumed = presets.load("ci", sizes.resume_overrides)
    assert full_epochs(resumed) > sizes.resume_kill_after_epoch
    nature = presets.load("nature2015", sizes.nature_resume_overrides)
    assert full_epochs(nature) > sizes.resume_kill_after_epoch
    assert nature.train_steps % nature.epoch_steps == 0  # its last epoch a whole one
    # The snapshot the killed run resumes from holds a target network refreshed after
    # the first update and before the snapshot's step, so older than its weights: the
    # resume must restore it (Learner.after_step refreshes one step past a multiple).
    end = epoch_end_step(nature, sizes.resume_kill_after_epoch)
    period = nature.target_update_period_steps
    refreshed = (end - 1) // period * period + 1
    assert nature.replay_start_steps < refreshed < end
    glance = presets.load("paper2013", sizes.glance_overrides)
    assert glance.train_steps > glance.replay_start_steps


def test_a_summary_whose_write_fails_partway_leaves_the_one_before_whole(tmp_path, monkeypatch):
    before = {"form": "cpu", "facts": {"device": "cpu"}}
    devicecheck.write(before, tmp_path)
    write_text = Path.write_text

    def disk_full_halfway(path, text, *args, **kwargs):
        write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", disk_full_halfway)
    with pytest.raises(OSError):
        devicecheck.write({**before, "speed": {"emulator_agent_steps_per_s": 1.0}}, tmp_path)
    monkeypatch.undo()
    assert json.loads((tmp_path / devicecheck.SUMMARY).read_text()) == before
    # no temporary file left beside them: the device tool brings back what $OUT holds
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        devicecheck.SUMMARY,
        devicecheck.TABLE,
    ]


@pytest.mark.parametrize("wheel", [None, "ale_py-0.12.1-cp312-cp312-manylinux_2_28_x86_64.whl"])
def test_an_installation_that_fails_leaves_a_summary_that_says_why(tmp_path, monkeypatch, wheel):
    """No wheels to install, or one pip refuses: the summary the device tool brings back
    names the Python, the wheels and the error."""
    wheel_dir = tmp_path / "whl"
    wheel_dir.mkdir()
    if wheel:
        (wheel_dir / wheel).write_bytes(b"not a wheel")
    monkeypatch.setattr(wheels, "WHEEL_DIR", wheel_dir)
    monkeypatch.setattr(wheels, "CARRIED_MODULES", ("dqn_no_such_module",))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # pip's --target, not /tmp's
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as raised:
        wheels.install_recorded(out)
    record = json.loads((out / wheels.SUMMARY).read_text())["install"]
    assert record["python_version"] == platform.python_version()
    assert record["wheels"] == ([wheel] if wheel else [])
    assert record["error"] == str(raised.value)
    assert ("pip could not install" if wheel else "holds no wheels") in record["error"]


def fake_nvidia_smi(monkeypatch, answers: dict[str, list[list[str]]], gpus=("GPU-0a1b",)):
    """nvidia_smi answering `answers` (by query: rows, or a function that gives them) about
    the GPUs `gpus` only; the GPU of each call, in order."""
    asked = []

    def nvidia_smi(gpu, query):
        asked.append(gpu)
        answer = answers.get(query) if gpu in gpus else None
        return answer() if callable(answer) else answer

    monkeypatch.setattr(devicecheck, "nvidia_smi", nvidia_smi)
    return asked


def sampled(sampler: devicecheck.GpuSampler, samples: int) -> devicecheck.GpuSampler:
    with sampler:
        until = time.monotonic() + 10
        while sampler.samples < samples and time.monotonic() < until:
            time.sleep(0.01)
    return sampler


def test_the_gpu_sampler_reads_the_gpu_in_use_and_skips_fields_without_a_number(monkeypatch):
    """A MIG instance or a virtual GPU answers "[N/A]": the sampler's thread, which died on
    it, goes on and keeps the fields that are numbers."""
    monkeypatch.setattr(devicecheck, "SAMPLE_S", 0.01)
    asked = fake_nvidia_smi(
        monkeypatch,
        {
            "--query-gpu=utilization.gpu,memory.used": [["[N/A]", "1234"]],
            "--query-compute-apps=pid,used_memory": [["4242", "[N/A]"], ["4243", "100"]],
        },
    )
    sampler = sampled(devicecheck.GpuSampler("GPU-0a1b"), 3)
    assert sampler.samples >= 3 and set(sampler.memory_mib) == {1234.0}
    assert sampler.utilisation == [] and sampler.process_mib == {4243: 100.0}
    summary = sampler.summary()
    assert summary["utilisation_percent_mean"] is None and summary["memory_used_mib_max"] == 1234
    assert set(asked) == {"GPU-0a1b"}  # never all the GPUs at once


def test_each_jobs_gpu_memory_is_also_had_from_the_devices_memory_used(monkeypatch):
    """Where nvidia-smi's PIDs do not match the jobs' (none here), each job's memory is
    still had: (the peak of memory.used while they run - memory.used before) / jobs."""
    monkeypatch.setattr(devicecheck, "SAMPLE_S", 0.01)
    used = iter(["1000", "8000"])  # before the jobs, at their peak, then less
    fake_nvidia_smi(
        monkeypatch,
        {"--query-gpu=utilization.gpu,memory.used": lambda: [["50", next(used, "5000")]]},
    )
    sampler = sampled(devicecheck.GpuSampler("GPU-0a1b"), 3)
    assert sampler.summary()["memory_used_mib_before"] == 1000
    assert sampler.summary()["memory_used_mib_max"] == 8000
    assert sampler.memory_per_job_mib(7) == (8000 - 1000) / 7
    assert sampler.process_mib == {}  # the figure by PID is missing


@pytest.mark.parametrize(
    "known, named",
    [(("GPU-0a1b", "0"), "GPU-0a1b"), (("0",), "0"), ((), None)],
    ids=["by UUID", "by index (a MIG instance)", "no answer"],
)
def test_nvidia_smi_is_asked_about_the_gpu_in_use_by_its_uuid_or_else_its_index(
    monkeypatch, known, named
):
    monkeypatch.setattr(  # torch gives the UUID bare; nvidia-smi names it GPU-...
        torch.cuda, "get_device_properties", lambda device: SimpleNamespace(uuid="0a1b")
    )
    fake_nvidia_smi(monkeypatch, {"--query-gpu=uuid": [["GPU-0a1b"]]}, known)
    assert devicecheck.nvidia_smi_gpu(torch.device("cuda", 0)) == named
    assert devicecheck.nvidia_smi_gpu(torch.device("cpu")) is None


def test_the_facts_name_the_gpus_compute_mode(monkeypatch):
    """In Exclusive_Process every child job would fail while the check holds the GPU: the
    summary says so."""
    monkeypatch.setattr(devicecheck, "nvidia_smi_gpu", lambda device: "GPU-0a1b")
    fake_nvidia_smi(
        monkeypatch, {"--query-gpu=driver_version,compute_mode": [["580.95", "Exclusive_Process"]]}
    )
    assert devicecheck.nvidia_smi_facts(torch.device("cuda", 0)) == {
        "nvidia_smi_gpu": "GPU-0a1b",
        "driver_version": "580.95",
        "compute_mode": "Exclusive_Process",
    }


@pytest.fixture
def jobs_started(monkeypatch):
    """Every `dqn train` job the check starts."""
    started = []
    init = devicecheck.Job.__init__

    def recorded(job, *args, **kwargs):
        init(job, *args, **kwargs)
        started.append(job)

    monkeypatch.setattr(devicecheck.Job, "__init__", recorded)
    return started


@pytest.fixture
def torch_threads():
    """The CPU form's main sets this process's torch threads: put them back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def stub_sections(monkeypatch, *names: str) -> list[str]:
    """The sections `names` replaced by ones that only note that they ran."""
    ran = []
    for name in names:
        monkeypatch.setattr(
            devicecheck, name, lambda *args, name=name: ran.append(name) or {"stub": True}
        )
    return ran


@pytest.mark.slow
def test_a_failed_sharing_job_is_named_the_others_measured_and_no_job_outlives_the_check(
    tmp_path, monkeypatch, jobs_started, torch_threads
):
    """Breakout's job, the first waited for, fails: Pong's job is still waited for and
    measured (left running, it would keep its GPU slot from the jobs after it); the later
    sections run; no job is running when the check ends."""
    ran = stub_sections(monkeypatch, "speed", "correctness", "resume", "learning")
    command = devicecheck.train_command

    def breakout_shared_fails(game, preset, out, *args, **kwargs):
        shared_breakout = out.parent.name == "shared" and game == "Breakout"
        fault = ("--set", "no_such_key=1") if shared_breakout else ()
        return [*command(game, preset, out, *args, **kwargs), *fault]

    monkeypatch.setattr(devicecheck, "train_command", breakout_shared_fails)
    assert devicecheck.main("cpu", tmp_path, time.monotonic(), {}) == 1
    summary = json.loads((tmp_path / devicecheck.SUMMARY).read_text())
    sharing = summary["sharing"]
    assert sharing["error"].startswith("Breakout: ") and "no_such_key" in sharing["error"]
    assert list(sharing["shared_agent_steps_per_s"]) == ["Pong"]
    assert sharing["worst_shared_vs_alone"] is None  # not known without Breakout's
    assert ran == ["speed", "correctness", "resume", "learning"] and summary["goals"]
    # the sharing jobs and the glance (its section stubbed: nobody waited for it)
    assert len(jobs_started) == 3
    assert all(job.process.poll() is not None for job in jobs_started)


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_jobs_still_running_are_killed_as_their_block_ends(tmp_path):
    with (
        pytest.raises(RuntimeError, match="a section fails"),
        devicecheck.Jobs(time.monotonic() + 60) as group,
    ):
        job = group.start(SLEEPER, tmp_path / "log")
        raise RuntimeError("a section fails")
    assert job.process.returncode == -signal.SIGKILL


def test_past_the_deadline_no_section_starts_jobs_and_a_job_not_killed_in_time_is_stopped(
    tmp_path, jobs_started
):
    """A section begun past the check's deadline would start jobs only to kill them; a run
    C whose snapshot came too late for the kill mid-run is stopped before its rerun, which
    would otherwise find it still running in the same folder."""
    past = time.monotonic()
    for section in (devicecheck.sharing, devicecheck.resume):
        with pytest.raises(RuntimeError, match="not run: the check's deadline"):
            section(torch.device("cpu"), devicecheck.CPU, tmp_path, past)
    assert jobs_started == []
    with devicecheck.Jobs(time.monotonic() + 0.5) as group:
        job = group.start(SLEEPER, tmp_path / "log")
        assert devicecheck.kill_after_snapshot({"default": job}, 1, tmp_path) == {"default": False}
        assert job.process.returncode == -signal.SIGKILL


@pytest.mark.slow  # three dqn train processes start
def test_a_resume_whose_plain_modes_fail_is_the_sections_error(tmp_path, monkeypatch):
    """Every run fails (a key no config has): the section's error, which makes the check's
    exit status 1, names the failures of both presets' runs."""
    command = devicecheck.train_command
    monkeypatch.setattr(
        devicecheck,
        "train_command",
        lambda *args, **kwargs: [*command(*args, **kwargs), "--set", "no_such_key=1"],
    )
    results = devicecheck.resume(
        torch.device("cpu"), devicecheck.CPU, tmp_path, time.monotonic() + 120
    )
    assert "no_such_key" in results["error"]
    failed = [*results["default"]["failed"], *results["nature2015"]["failed"]]
    assert len(failed) == 4 and results["error"] == "\n\n".join(failed)


def test_a_job_is_waited_for_until_the_checks_deadline_then_killed(tmp_path):
    """Not JOB_TIMEOUT_S from the wait's start: the device tool would kill the check first."""
    with devicecheck.Jobs(time.monotonic() + 0.5) as group:
        job = group.start(SLEEPER, tmp_path / "log")
        waited = time.monotonic()
        assert "still running after" in job.failure()
        assert time.monotonic() - waited < 10 and job.process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_at_the_deadline_the_glance_is_stopped_its_snapshots_scored_and_the_summary_written(
    tmp_path, monkeypatch, jobs_started, torch_threads
):
    """The sections before it take the check to its deadline, with the glance (far longer
    than the CPU form's) past its first snapshot and running on: it is stopped with SIGTERM,
    the snapshots it made are scored, and the goals and the wall time are written."""
    monkeypatch.setattr(devicecheck, "DEADLINE_S", 0.0)
    long_glance = (*devicecheck.CPU.glance_overrides, "train_steps=100000")
    monkeypatch.setattr(devicecheck, "CPU", replace(devicecheck.CPU, glance_overrides=long_glance))
    stub_sections(monkeypatch, "speed", "sharing", "correctness")

    def resume_until_the_glances_first_snapshot(device, sizes, root, deadline):
        first = RunDir(root.parent / "glance").snapshot(1)
        until = time.monotonic() + 120
        while not first.exists() and time.monotonic() < until:
            time.sleep(0.1)
        return {"stub": True}

    monkeypatch.setattr(devicecheck, "resume", resume_until_the_glances_first_snapshot)
    assert devicecheck.main("cpu", tmp_path, time.monotonic(), {}) == 0
    summary = json.loads((tmp_path / devicecheck.SUMMARY).read_text())
    learning = summary["learning"]
    assert learning["cut_short"] is True, learning
    assert learning["stopped_with"] == 128 + signal.SIGTERM  # its interrupt file saved
    assert 1 <= len(learning["average_max_q"]) == len(learning["steps"]) and learning["bounded"]
    assert summary["goals"] and summary["wall_s"] > 0
    (glance,) = jobs_started
    assert glance.process.returncode == 128 + signal.SIGTERM


def test_a_glance_stopped_before_its_first_snapshot_is_an_error_with_its_output(tmp_path):
    # Nothing to score: the section's error says why and shows what the glance printed.
    stopped = []
    glance = SimpleNamespace(
        ended=lambda: None,  # still running when the wait ran out
        stop=lambda: stopped.append(True) or 128 + signal.SIGTERM,
        tail=lambda: "collecting 500 held-out states",
    )
    with pytest.raises(RuntimeError) as error:
        devicecheck.learning(glance, tmp_path / "glance", torch.device("cpu"))
    assert stopped == [True]
    assert "ran out" in str(error.value) and "exit 143), made no snapshot" in str(error.value)
    assert str(error.value).endswith("collecting 500 held-out states")


def test_without_out_or_dollar_out_the_check_says_what_it_needs():
    env = {key: value for key, value in os.environ.items() if key != "OUT"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--out DIR is needed where $OUT is not set" in done.stderr


def test_the_carried_wheels_are_pinned_by_the_lock():
    pins = wheels.locked_versions()
    assert set(wheels.CARRIED) <= set(pins)
    assert {"ale-py", "pydantic", "gymnasium"} <= set(wheels.CARRIED)
    assert wheels.install() is None  # here the packages import: nothing to install


@pytest.mark.skipif(
    not (ROOT / ".git").exists(), reason="not a git checkout (the container image holds none)"
)
def test_the_tree_leaves_room_for_the_wheels_in_what_travels():
    # each committed reference run adds 3 to 8 MiB to the tree that travels with the
    # device check; past this the check could not be sent to a GPU at all
    tree = wheels.tree_bytes()
    assert tree + wheels.WHEEL_ROOM_BYTES <= wheels.TREE_LIMIT_BYTES, (
        f"the working tree is {tree / 2**20:.1f} MiB: with {wheels.WHEEL_ROOM_BYTES / 2**20:.0f} "
        f"MiB for the wheels it passes the {wheels.TREE_LIMIT_BYTES / 2**20:.0f} MiB that "
        "travel to the GPU machine; keep large files out of the tree"
    )


@pytest.mark.skipif(
    not (ROOT / ".git").exists(), reason="not a git checkout (the container image holds none)"
)
def test_the_carried_wheels_are_kept_out_of_git():
    ignored = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "check-ignore",
            "-q",
            ".whl/ale_py-0.12.1-cp312-cp312-manylinux_2_28_x86_64.whl",
        ]
    )
    assert ignored.returncode == 0
