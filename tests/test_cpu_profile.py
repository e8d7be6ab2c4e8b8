"""tests/cpu_profile.py, the plugin of `make test-profile`: each test's CPU time counts
what the subprocesses it waited for spent, and the summary ranks the files by it."""

import json
import os
import subprocess
import sys

from conftest import ROOT

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\n"
SAMPLE = f"""
import subprocess, sys, time

def test_burns_in_a_child():
    subprocess.run([sys.executable, "-c", {BURN!r}], check=True)

def test_sleeps():
    time.sleep(0.5)
"""


def test_a_childs_cpu_counts_for_its_test_and_a_sleep_does_not(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    profile = tmp_path / "profile"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "tests.cpu_profile"]
        + ["-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=ROOT,  # where `-p tests.cpu_profile` is found, as in make test-profile
        env={**os.environ, "DQN_CPU_PROFILE": str(profile)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [json.loads(line) for path in profile.glob("*.jsonl") for line in path.open()]
    tests = {line["test"].split("::")[1]: line for line in lines}
    assert len(lines) == 2 and set(tests) == {"test_burns_in_a_child", "test_sleeps"}
    # recorded by the workers, not by the controller as well
    assert {line["worker"] for line in lines} <= {"gw0", "gw1"}
    assert tests["test_burns_in_a_child"]["cpu_s"] >= 0.5
    assert tests["test_sleeps"]["cpu_s"] < 0.2 and tests["test_sleeps"]["wall_s"] >= 0.5
    summary = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "cpu_profile.py"), str(profile), "--top", "1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert summary.startswith("2 tests, ")
    assert "test_sample.py" in summary and summary.rstrip().endswith("test_burns_in_a_child")
