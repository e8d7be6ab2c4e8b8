"""The README and docs/ against the code: the tables that scripts/generate-docs writes
from dqn/presets.py, dqn/layouts.py, config/ and the workflow's schema are current, and
every relative link leads to a file."""

import importlib.machinery
import importlib.util
import re
from pathlib import Path

import pytest

from dqn import layouts

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    loader = importlib.machinery.SourceFileLoader(
        "generate_docs", str(ROOT / "scripts/generate-docs")
    )
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


GENERATE = _generator()
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
    assert names == set(GENERATE.BLOCKS)


def test_a_stale_block_is_rewritten():
    text = "before\n<!-- generated: presets -->\n| old |\n<!-- end generated -->\nafter\n"
    new = GENERATE.render(text, "x.md")
    assert "| old |" not in new and "`paper2013`" in new and new.endswith("after\n")


def test_an_unknown_block_is_refused():
    with pytest.raises(SystemExit, match="x.md: unknown generated block 'nope'"):
        GENERATE.render("<!-- generated: nope -->\n<!-- end generated -->", "x.md")


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


def test_outputs_page_names_the_file_of_every_kind():
    # The file-to-kind table is written by hand (the paths live in the code that writes
    # them); each kind of dqn/layouts.py must have its row.
    text = (ROOT / "docs/outputs.md").read_text()
    rows = re.findall(r"^\| `[^|]+\.h5`[^|]* \| `(\w+)` \|$", text, re.M)
    assert sorted(rows) == sorted(layouts.LAYOUTS)


def test_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
