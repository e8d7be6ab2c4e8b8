"""scripts/learning-mutations, the learning test's own check (docs/learning.md): every
mutation still finds its lines in today's dqn/, and its runs import the mutated copy.
Its training runs are not made here: three minutes each."""

import subprocess
import sys

import pytest

from conftest import ROOT, load_script

mutations = load_script("learning-mutations")


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
