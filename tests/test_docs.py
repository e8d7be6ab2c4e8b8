"""The README and docs/ against the code: the tables that scripts/generate-docs writes
from dqn/presets.py, dqn/layouts.py, config/, the workflow's schema and the reference
runs are current,
every relative link leads to a file, and every `dqn` command they show names a command
and options that `dqn` has."""

import argparse
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dqn import cli, layouts
from dqn.presets import PRESETS, Config

from conftest import ROOT, load_script

GENERATE = load_script("generate-docs")
PAGES = GENERATE.pages()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_blocks_are_current(page):
    text = page.read_text()
    assert GENERATE.render(text, page.name) == text, (
        f"{page.relative_to(ROOT)}: a generated block is stale; run "
        f".venv/bin/python scripts/generate-docs"
    )


def test_every_generated_block_appears_somewhere():
    names = {match[1] for page in PAGES for match in GENERATE.BLOCK.findall(page.read_text())}
    assert names == set(GENERATE.blocks())


def test_a_stale_block_is_rewritten():
    text = "before\n<!-- generated: presets -->\n| old |\n<!-- end generated -->\nafter\n"
    new = GENERATE.render(text, "x.md")
    assert "| old |" not in new and "`paper2013`" in new and new.endswith("after\n")


def test_an_unknown_block_is_refused():
    with pytest.raises(SystemExit, match="x.md: unknown generated block 'nope'"):
        GENERATE.render("<!-- generated: nope -->\n<!-- end generated -->", "x.md")


def _anchor_rows(*points):
    return [
        {"agent_step": step, "seed": seed, "average_reward": reward, "average_max_q": max_q}
        for step, seed, reward, max_q in points
    ]


def test_an_anchor_is_read_at_our_step_or_at_its_two_around_it():
    # deep_q_rl evaluates every 40k steps, a `paper2013` epoch ends 100 steps past 250k
    anchor = _anchor_rows(
        (240_000, "run", 0.0, 0.193), (280_000, "run", 12.75, None), (1_000_000, "run", 22.69, 0.4)
    )
    assert GENERATE._anchor_cell(anchor, 250_100, "average_reward") == "0 (240k), 12.75 (280k)"
    assert GENERATE._anchor_cell(anchor, 1_000_100, "average_reward") == "22.69"
    assert GENERATE._anchor_cell(anchor, 2_000_000, "average_reward") == "22.69 (1M)"
    assert GENERATE._anchor_cell(anchor, 100_000, "average_reward") == "0 (240k)"
    # where it publishes no max-Q, nothing is said of it
    assert GENERATE._anchor_cell(anchor, 250_100, "average_max_q") == "0.193 (240k)"


def test_an_anchor_of_several_seeds_gives_its_mean_then_each_seed():
    anchor = _anchor_rows(
        (250_000, "mean", 0.925, None), (250_000, "1", 0.32, None), (250_000, "10", 2.3, None)
    )
    assert GENERATE._anchor_cell(anchor, 250_000, "average_reward") == "0.925 (0.32, 2.3)"
    mean_alone = _anchor_rows((250_000, "mean", 0.925, None))
    assert GENERATE._anchor_cell(mean_alone, 250_000, "average_reward") == "0.925"


def test_the_papers_figure2_table_is_kept_for_runs_of_its_epochs_and_evaluation(monkeypatch):
    paper = PRESETS["paper2013"]
    runs = {
        "as-paper": paper,
        "short-epochs": paper.with_values(epoch_updates=12_500),
        "long-evaluation": paper.with_values(eval_steps=125_000),
        "longer-run": paper.with_values(train_steps=1_000_000),
    }
    monkeypatch.setattr(GENERATE, "_committed_runs", lambda kinds: [Path(n) for n in runs])
    monkeypatch.setattr(
        GENERATE,
        "_evaluations",
        lambda run: ({"preset": "paper2013", "config": json.dumps(runs[run.name].as_dict())}, {}),
    )
    assert [run.name for run in GENERATE._figure2_runs()] == ["as-paper", "longer-run"]


def test_steps_are_named_to_the_thousand():
    names = [GENERATE._steps(s) for s in (250_100, 999_600, 1_000_100, 1_250_100, 40_000)]
    assert names == ["250k", "1M", "1M", "1.25M", "40k"]


def test_a_snapshots_games_and_one_with_no_game_ended():
    games = GENERATE._games(np.array([0.0, 2.0, 4.0]), 2.0, 300)
    assert games == ["2.00 (sd 2.00, 3 games; best 4, worst 0)", "67%", "100", "2, 3, 3.6"]
    assert GENERATE._games(np.array([5.0]), 5.0, None)[:3] == [
        "5.00 (1 game; best 5, worst 5)",
        "100%",
        "",
    ]
    assert GENERATE._games(np.array([]), -3.0, 300) == [
        "-3.00 (no game ended: the one cut short)",
        "",
        "",
        "",
    ]


# [text](target#anchor) in markdown: the target and the anchor, either may be empty.
LINK = re.compile(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)")


def _anchors(page: Path) -> set[str]:
    # GitHub's: a heading lower-cased, its punctuation dropped, its spaces hyphens.
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings(page):
    broken = []
    for target, anchor in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path = page.parent / target if target else page
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}#{anchor} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


# A citation in inline code, `file:N` or `file:N-M`; a bare `:N` cites the file named
# last before it (`dqn/atari.py:72`, `:176-178`). Followed by "at <commit>", it cites that
# commit's file, not the worktree's.
CITATION = re.compile(r"`([\w./-]*):(\d+)(?:-(\d+))?`( at [0-9a-f]{7,40}\b)?")
OUR_CODE = ("dqn/", "config/", "scripts/", "workflow/")


def _our_citations(text: str):
    """Each citation of our code in `text` not pinned to a commit, as (where it is on the
    page, path, first line, last line, `path:lines` as written)."""
    path = None
    for match in CITATION.finditer(text):
        path = match[1] or path  # another project's file too, so its `:N` is skipped
        if not path or not path.startswith(OUR_CODE) or match[4]:
            continue
        first, last = int(match[2]), int(match[3] or match[2])
        where = f"{path}:{match[2]}{'-' + match[3] if match[3] else ''}"
        yield "line " + str(text.count("\n", 0, match.start()) + 1), path, first, last, where


def _bad_citations(text: str) -> list[str]:
    wrong = []
    for at, path, first, last, where in _our_citations(text):
        if not (ROOT / path).is_file():
            wrong.append(f"{at}: {where} (no such file)")
            continue
        count = len((ROOT / path).read_text().splitlines())
        if not 1 <= first <= last <= count:
            wrong.append(f"{at}: {where} (the file has {count} lines)")
    return wrong


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_citations_of_our_code_point_inside_their_files(page):
    # fidelity.md cites our code by file and line (`dqn/train.py:237-240`). This catches
    # a file renamed or moved and lines past its end on every page; that a cited line
    # still holds what it held, the test after it checks on fidelity.md, the page that
    # names the commit its citations give.
    wrong = _bad_citations(page.read_text())
    assert not wrong, f"{page.relative_to(ROOT)}: citations outside their files: {wrong}"


def test_a_citation_outside_its_file_is_caught():
    good = "(`dqn/atari.py:1`, `:2-3`; `config/cpu_breakout.yaml:1`)"
    assert _bad_citations(good) == []
    count = len((ROOT / "dqn/atari.py").read_text().splitlines())
    assert _bad_citations("`dqn/atari.py:1`, `:99999`") == [
        f"line 1: dqn/atari.py:99999 (the file has {count} lines)"
    ]
    assert _bad_citations("x\n`dqn/nope.py:4-5`") == ["line 2: dqn/nope.py:4-5 (no such file)"]
    assert _bad_citations("`dqn/atari.py:0`") and _bad_citations("`dqn/atari.py:5-3`")
    # Another project's lines, and ours at an old commit, are not checked.
    assert _bad_citations("`NeuralQLearner.lua:139`, `:99999`; `run_gpu:31`") == []
    assert _bad_citations("(`dqn/networks.py:99999` at 7f3cf11)") == []


# "Our code as of commit <hash>": the commit whose lines a page's citations of our code give
AS_OF = re.compile(r"Our code as of commit ([0-9a-f]{7,40})\b")


def _moved_citations(text: str, lines_at) -> list[str]:
    """The citations of our code (not pinned to a commit) whose lines differ between the
    commit `text` says it cites and the worktree, each with where those lines are now when
    they are found whole. `lines_at(path)` gives the cited commit's lines of a file, None
    where the commit lacks it; a file the worktree lacks is the test above's to name."""
    moved = []
    for at, path, first, last, where in _our_citations(text):
        if not (ROOT / path).is_file():
            continue
        then, now = lines_at(path), (ROOT / path).read_text().splitlines()
        cited = None if then is None else then[first - 1 : last]
        if cited is not None and len(cited) == last - first + 1 and now[first - 1 : last] == cited:
            continue
        if then is None:
            how = "no such file at the commit cited"
        elif len(cited) != last - first + 1:
            how = f"the file had {len(then)} lines at the commit cited"
        else:
            found = [
                f"{start + 1}-{start + len(cited)}" if len(cited) > 1 else str(start + 1)
                for start in range(len(now) - len(cited) + 1)
                if now[start : start + len(cited)] == cited
            ]
            how = "changed" if not found else "now " + " or ".join(found[:3])
            how += f", {len(found)} places" if len(found) > 3 else ""
        moved.append(f"{at}: {where} ({how})")
    return moved


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_citations_of_our_code_still_show_the_lines_of_the_commit_they_cite():
    # fidelity.md cites our code by line as of a commit it names; code added above a cited
    # line since then pushes it down, so the sentence would point at other code. Refresh
    # the citations (and the commit named) when this fails.
    page = ROOT / "docs" / "fidelity.md"
    text = page.read_text()
    (commit,) = AS_OF.findall(text)
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode:
        pytest.skip(f"commit {commit} is not here (a shallow clone, or no git history)")
    shown = {}

    def lines_at(path):
        if path not in shown:
            done = _git("show", f"{commit}:{path}")
            shown[path] = None if done.returncode else done.stdout.splitlines()
        return shown[path]

    moved = _moved_citations(text, lines_at)
    assert not moved, f"docs/fidelity.md: citations of {commit}'s lines that moved: {moved}"


def test_a_citation_whose_lines_moved_is_caught():
    now = (ROOT / "dqn/atari.py").read_text().splitlines()
    pushed_down = lambda path: now[2:]  # noqa: E731 (two lines were added above since)
    assert _moved_citations("`dqn/atari.py:1-2`", lambda path: now) == []
    assert _moved_citations("`dqn/atari.py:1-2`", pushed_down) == [
        "line 1: dqn/atari.py:1-2 (now 3-4)"
    ]
    assert _moved_citations("`dqn/atari.py:5` at 7f3cf11", pushed_down) == []
    # past the end of the file then, or a file the commit lacks
    assert _moved_citations("`dqn/atari.py:1-2`", lambda path: now[:1]) == [
        "line 1: dqn/atari.py:1-2 (the file had 1 lines at the commit cited)"
    ]
    assert _moved_citations("x\n`dqn/atari.py:1`", lambda path: None) == [
        "line 2: dqn/atari.py:1 (no such file at the commit cited)"
    ]
    # a moved blank line is found in many places: three are named, and the count
    (moved,) = _moved_citations("`dqn/atari.py:1`", lambda path: [""])
    assert moved.endswith(f"{now.count('')} places)") and moved.count(" or ") == 2


def test_outputs_page_names_the_file_of_every_kind():
    # The file-to-kind table is written by hand (the paths live in the code that writes
    # them); each kind of dqn/layouts.py must have its row.
    text = (ROOT / "docs/outputs.md").read_text()
    rows = re.findall(r"^\| `[^|]+\.h5`[^|]* \| `(\w+)` \|$", text, re.M)
    assert sorted(rows) == sorted(layouts.LAYOUTS)


def test_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


# A `dqn` invocation in inline code or on a code block's line (a trailing backslash
# continues it); it ends at the code span's end, a pipe, `&&`, a redirect or a comment.
INVOCATION = re.compile(r"(?:^|(?<=[\s`(/]))dqn(?:\.cli)? ([a-z][\w-]*)([^`|;>#&\n]*)")


# What a synopsis writes for any key: `--set key=value`, `--set eval_key=value`.
SET_WORDS = ("key", "eval_key", "KEY")


def _code(text: str) -> list[str]:
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    spans = re.findall(r"`([^`]+)`", prose)  # a span may wrap onto the next line
    return lines + [span.replace("\n", " ") for span in spans if "\n\n" not in span]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _misnamed(snippet: str, commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    wrong = []
    for command, rest in INVOCATION.findall(snippet):
        if command not in commands:
            wrong.append(f"dqn {command} (no such command)")
            continue
        words = rest.split()
        parser = commands[command]
        figures = _subcommands(parser)
        if figures and words and not words[0].startswith("-"):
            if words[0] not in figures:
                wrong.append(f"dqn {command} {words[0]} (no such {command} command)")
                continue
            command, parser = f"{command} {words[0]}", figures[words[0]]
        words = [word.strip("[]").rstrip(").,:") for word in words]  # [--opt X] in a synopsis
        for word in words:
            option = word.split("=")[0]
            if option.startswith("-") and option not in parser._option_string_actions:
                wrong.append(f"dqn {command} {option} (no such option)")
    return wrong


# `--set key=value` anywhere (a command, a config's keys quoted in prose), and any bare
# key=value words that follow it, which argparse would refuse: one --set per key.
SET = re.compile(r"--set(?:=|\s+)(\w+)=\S*((?:\s+\w+=\S*)*)")


def _bad_sets(snippet: str) -> list[str]:
    wrong = []
    for key, more in SET.findall(snippet):
        if key not in {*Config.model_fields, *SET_WORDS}:
            wrong.append(f"--set {key} (no such preset key)")
        if more.split():
            wrong.append(f"--set {key}=... {more.split()[0]} (one --set per key)")
    return wrong


@pytest.mark.parametrize(
    "page", [*PAGES, ROOT / "reference-runs/README.md"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_dqn_command_written_in_the_docs_names_real_options(page):
    # Options are renamed in the code; a guide that still shows the old name fails here,
    # not in a reader's shell.
    commands = _subcommands(cli.parser())
    snippets = _code(page.read_text())
    wrong = sorted({w for snippet in snippets for w in _misnamed(snippet, commands)})
    wrong += sorted({w for snippet in snippets for w in _bad_sets(snippet)})
    assert not wrong, f"{page.relative_to(ROOT)}: {wrong}"


def test_a_misnamed_option_or_command_in_the_docs_is_caught():
    commands = _subcommands(cli.parser())
    assert _misnamed("dqn evaluate --run R --out F --epoch 4", commands) == [
        "dqn evaluate --epoch (no such option)"
    ]
    assert _misnamed("dqn plot anchors --evals E --out P", commands) == [
        "dqn plot anchors --evals (no such option)"
    ]
    assert _misnamed("dqn plot curves --eval E", commands) == [
        "dqn plot curves (no such plot command)"
    ]
    assert _misnamed(".venv/bin/dqn evalute --run R", commands) == ["dqn evalute (no such command)"]
    assert _misnamed("dqn bench [--secs S]", commands) == ["dqn bench --secs (no such option)"]
    assert _bad_sets("dqn train --set gamma=0.9 --out R") == ["--set gamma (no such preset key)"]
    assert _bad_sets("--set=discount=1 and --set target_period=2500") == [
        "--set target_period (no such preset key)"
    ]
    assert _bad_sets("--set    gamma=0.9") == ["--set gamma (no such preset key)"]  # wrapped
    assert _bad_sets("--set optimizer=adam learning_rate=0.0001") == [
        "--set optimizer=... learning_rate=0.0001 (one --set per key)"
    ]
    assert _misnamed("dqn evaluate --run R && dqn plot anchors --evals E", commands) == [
        "dqn plot anchors --evals (no such option)"
    ]
    good = "dqn train --game Pong --set discount=1 --progress-s 5 --out R"
    assert _misnamed(good, commands) == [] == _bad_sets(good)
