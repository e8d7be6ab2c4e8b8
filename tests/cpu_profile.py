"""Where the suite's CPU time goes, test by test: `make test-profile`.

The suite is bound by its CPU work on a 2-core machine (docs/tests.md), and most of that
work is done in subprocesses (training runs, Snakemake and its jobs) that --durations
does not see. Loaded with `-p tests.cpu_profile`, this plugin writes a line per test to
$DQN_CPU_PROFILE/<worker>.jsonl: its wall time and the CPU time (user + system) of the
test's process and of the children it reaped during the test, which count their own
reaped descendants (a training run, a workflow's jobs). Jobs that SLURM's daemons run are
not this process's descendants and are not counted.

    python tests/cpu_profile.py DIR [--top N]   # per file, then the N costliest tests
"""

import argparse
import collections
import json
import os
import resource
import sys
import time
from pathlib import Path

ENV = "DQN_CPU_PROFILE"
_started: dict[str, tuple[float, float, float]] = {}
_worker: str | None = None  # the xdist worker's id, or "main" without xdist


def _cpu_s() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def pytest_configure(config):
    # Under xdist the controller sees every test's start and end as well, but the tests
    # run (and spend) in the workers: only they record. (Not PYTEST_XDIST_WORKER: a
    # pytest started by a test inherits it.)
    global _worker
    if hasattr(config, "workerinput"):
        _worker = config.workerinput["workerid"]
    elif not getattr(config.option, "numprocesses", None):
        _worker = "main"


def pytest_runtest_logstart(nodeid, location):
    if _worker:
        _started[nodeid] = (time.time(), *_cpu_s())


def pytest_runtest_logfinish(nodeid, location):
    if not _worker:
        return
    start, own, children = _started.pop(nodeid)
    own_now, children_now = _cpu_s()
    line = {
        "test": nodeid,
        "worker": _worker,
        "start": start,
        "wall_s": time.time() - start,
        "cpu_s": (own_now - own) + (children_now - children),
    }
    directory = Path(os.environ.get(ENV, ".cpu-profile"))
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{_worker}.jsonl", "a") as out:
        out.write(json.dumps(line) + "\n")


def summary(directory: Path, top: int) -> str:
    tests = [json.loads(line) for path in sorted(directory.glob("*.jsonl")) for line in path.open()]
    if not tests:
        raise SystemExit(f"cpu_profile: {directory}: no *.jsonl of tests")
    begin = min(t["start"] for t in tests)
    files = collections.defaultdict(list)
    for t in tests:
        files[t["test"].split("::")[0]].append(t)
    total_cpu = sum(t["cpu_s"] for t in tests)
    end = max(t["start"] + t["wall_s"] for t in tests)
    lines = [
        f"{len(tests)} tests, {end - begin:.0f} s from the first start to the last end, "
        f"{total_cpu:.0f} CPU s counted",
        "",
        f"{'file':34} {'CPU s':>7} {'share':>6} {'wall s':>7} {'from s':>7} {'to s':>6}  worker",
    ]
    by_cost = sorted(files.items(), key=lambda item: -sum(t["cpu_s"] for t in item[1]))
    for name, ran in by_cost:
        cpu = sum(t["cpu_s"] for t in ran)
        first = min(t["start"] for t in ran) - begin
        last = max(t["start"] + t["wall_s"] for t in ran) - begin
        workers = ",".join(sorted({t["worker"] for t in ran}))
        share, wall = cpu / (total_cpu or 1), sum(t["wall_s"] for t in ran)
        lines.append(
            f"{name:34} {cpu:7.0f} {share:6.1%} {wall:7.0f} {first:7.0f} {last:6.0f}  {workers}"
        )
    lines += ["", f"the {top} costliest tests (CPU s, wall s):"]
    for t in sorted(tests, key=lambda t: -t["cpu_s"])[:top]:
        lines.append(f"{t['cpu_s']:7.1f} {t['wall_s']:7.1f}  {t['test']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Summarise a `-p tests.cpu_profile` run.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    print(summary(args.directory, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
