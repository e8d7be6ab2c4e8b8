"""The package's import graph runs with the data flow (environment -> replay -> learner
-> snapshot -> evaluation -> figure) and has no cycles."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dqn"

# Each module's place in the data flow; a module may import its own stage or earlier.
STAGES = [
    # shared by every stage: errors, shapes, seeds, the presets, file and device plumbing
    {"__init__", "errors", "frames", "seeding", "presets", "atomic", "provenance", "devices"},
    {"atari", "catch", "games", "explore", "play"},  # environment
    {"replay"},
    {"networks", "learner"},
    {"layouts", "h5io", "rundir", "trainlog", "checkpoint", "progress", "events", "train"},  # snapshot
    {"evaluate"},
    {"aggregates", "plots", "video"},  # figure
    # entry points, which nothing else imports; wheels (the standard library only) runs
    # before the packages it installs for devicecheck can be imported
    {"bench", "wheels", "devicecheck"},
    {"cli"},
    {"__main__"},
]
STAGE = {module: index for index, stage in enumerate(STAGES) for module in stage}


def imports_of(path: Path) -> set[str]:
    """The dqn modules `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "dqn":
            names = [f"dqn.{alias.name}" for alias in node.names]  # from dqn import h5io
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "dqn":
                continue
            module = parts[1] if len(parts) > 1 else "__init__"
            if module == "__init__" or (PACKAGE / f"{module}.py").exists():
                found.add(module)  # not a name defined in dqn/__init__.py
    return found


GRAPH = {path.stem: imports_of(path) - {path.stem} for path in sorted(PACKAGE.glob("*.py"))}


def test_every_module_has_a_place_in_the_data_flow():
    assert sorted(set(GRAPH) - set(STAGE)) == []
    assert sorted(set(STAGE) - set(GRAPH)) == []  # no stale names


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_one_later_in_the_data_flow(module):
    later = sorted(name for name in GRAPH[module] if STAGE[name] > STAGE[module])
    assert later == [], f"dqn.{module} imports {later}, which come later in the data flow"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as a path that ends where it starts, or None (depth-first)."""
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            if cycle := visit(imported):
                return cycle
        path.pop()
        done.add(module)
        return None

    return next((cycle for module in sorted(graph) if (cycle := visit(module))), None)


def test_the_package_has_no_import_cycles():
    assert find_cycle(GRAPH) is None


def test_the_checks_see_a_cycle_and_imports_inside_functions(tmp_path):
    assert find_cycle({"cli": {"bench"}, "bench": {"train"}, "train": {"cli"}}) == [
        "bench", "train", "cli", "bench"]
    assert find_cycle({"cli": {"bench"}, "bench": {"train"}, "train": set()}) is None
    # Function-level imports and the `from dqn import x` form are imports too.
    source = tmp_path / "example.py"
    source.write_text("from dqn import h5io\n\ndef f():\n    from dqn.plots import table1\n")
    assert imports_of(source) == {"h5io", "plots"}
