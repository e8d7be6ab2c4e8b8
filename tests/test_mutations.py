"""scripts/learning-mutations, the learning test's own check (docs/learning.md): every
mutation still finds its lines in today's dqn/, its runs import the mutated copy, and the
learning test's checks refuse the runs it made, each at the check that caught it. Its
training runs are not made here (three minutes each): what they wrote is read from
tests/data/learning-mutations/."""

import subprocess
import sys

import pytest

from conftest import ROOT, load_script

mutations = load_script("learning-mutations")

# The runs the script made, as far as the learning test reads them (their README).
RUNS = ROOT / "tests" / "data" / "learning-mutations"
# The learning test's checks (tests/test_learning.py, check_catch), as its asserts read.
REWARD = "assert rewards[0] < 0.5 and rewards[-1] >= 0.8, rewards"
BOUNDED = "assert np.all(np.abs(max_q) <= 1.5), max_q"
NEAR_OPTIMAL = "assert error <= MAX_VALUE_ERROR, error"
FIRST_FAILING = {
    "reward-one-step-off": REWARD,
    "next-state-is-state": REWARD,
    "terminal-bootstrapped-2013": BOUNDED,
    "target-never-refreshed": REWARD,
    # the case the checks before the distance from V* let through (docs/learning.md)
    "terminal-bootstrapped-Nature": NEAR_OPTIMAL,
}


@pytest.mark.parametrize("name", list(mutations.MUTATIONS))
def test_each_mutation_changes_its_lines_in_a_copy_and_only_there(tmp_path, name):
    copy = mutations.mutated_copy(name, tmp_path)
    changes = mutations.MUTATIONS[name].changes
    for file, old, new in changes:
        text = (copy / file).read_text()
        assert old not in text and new in text
        assert old in (ROOT / "dqn" / file).read_text()  # the checkout's is untouched
    differ = subprocess.run(
        ["diff", "-rq", "-x", "__pycache__", ROOT / "dqn", copy], capture_output=True, text=True
    )
    changed = {line.split()[1] for line in differ.stdout.splitlines() if line.startswith("Files")}
    assert changed == {str(ROOT / "dqn" / file) for file, _, _ in changes}
    assert "Only in" not in differ.stdout


def test_a_mutation_whose_line_is_gone_is_refused_by_name(tmp_path, monkeypatch):
    gone = mutations.Mutation("2013", "a line no longer there", (("learner.py", "no such", "x"),))
    monkeypatch.setitem(mutations.MUTATIONS, "gone", gone)
    with pytest.raises(SystemExit, match="gone: dqn/learner.py holds 'no such' 0 times"):
        mutations.mutated_copy("gone", tmp_path)


def test_the_runs_import_the_mutated_copy_not_the_checkout(tmp_path):
    copy = mutations.mutated_copy("target-never-refreshed", tmp_path)
    elsewhere = tmp_path / "elsewhere"  # not the copy's folder: its environment alone decides
    elsewhere.mkdir()
    imported = subprocess.run(
        [sys.executable, "-c", "import dqn.learner; print(dqn.learner.__file__)"],
        cwd=elsewhere,
        env=mutations.environment(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == str(copy / "learner.py")


@pytest.mark.parametrize("name", FIRST_FAILING)
def test_the_learning_tests_checks_refuse_each_mutations_run_where_they_caught_it(name):
    assert mutations.verdict(RUNS / name) == f"fails: {FIRST_FAILING[name]}"


def test_every_mutation_but_the_paths_as_they_are_has_its_run_kept():
    broken = {name for name, mutation in mutations.MUTATIONS.items() if mutation.changes}
    assert set(FIRST_FAILING) == broken == {p.name for p in RUNS.iterdir() if p.is_dir()}
