"""The package's import graph follows the layers that docs/architecture.md declares,
and has no cycles."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dqn"
DECLARATION = ROOT / "docs" / "architecture.md"
MARKER = "<!-- layers: read by tests/test_imports.py -->"


def declared_order(text: str) -> list[list[str]]:
    """The layers of the table after MARKER, each a list of its modules in order."""
    layers = []
    for line in text.split(MARKER, 1)[1].strip().splitlines()[2:]:  # past header, rule
        if not line.startswith("|"):
            break
        modules = line.split("|")[2]
        layers.append(re.findall(r"`([\w]+)`", modules))
    return layers


LAYERS = declared_order(DECLARATION.read_text())
# A module's place: (layer, position in its layer); it may import only smaller places.
PLACE = {module: (i, j) for i, layer in enumerate(LAYERS) for j, module in enumerate(layer)}


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


def test_every_module_is_declared_once_in_the_layers():
    listed = [module for layer in LAYERS for module in layer]
    assert len(LAYERS) == 10 and len(listed) == len(set(listed))
    assert sorted(set(GRAPH) - set(listed)) == []
    assert sorted(set(listed) - set(GRAPH)) == []  # no stale names


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_modules_declared_before_it(module):
    later = sorted(name for name in GRAPH[module] if PLACE[name] > PLACE[module])
    assert later == [], (
        f"dqn.{module} imports {later}, declared after it in {DECLARATION.relative_to(ROOT)}"
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as a path that ends where it starts, or None (depth-first)."""
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module) :] + [module]
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


def packages_of(path: Path) -> set[str]:
    """The top-level packages other than dqn that `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found - {"dqn"}


def closure(module: str) -> set[str]:
    """`module` and every dqn module it imports, directly or not."""
    seen, todo = {module}, [module]
    while todo:
        for imported in GRAPH[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


@pytest.mark.parametrize("module", ["h5io", "trainlog", "rundir", "plots"])
def test_what_reads_a_runs_files_needs_no_emulator_replay_or_network(module):
    # The figures and a run directory's bookkeeping read files only: neither the emulator
    # nor torch is loaded for them.
    reached = closure(module)
    assert reached & {"atari", "games", "replay", "networks", "learner"} == set()
    packages = set().union(*(packages_of(PACKAGE / f"{m}.py") for m in reached))
    assert packages & {"torch", "ale_py", "cv2"} == set()


def test_the_checks_see_a_cycle_a_late_import_and_imports_inside_functions(tmp_path):
    assert find_cycle({"cli": {"bench"}, "bench": {"train"}, "train": {"cli"}}) == [
        "bench",
        "train",
        "cli",
        "bench",
    ]
    assert find_cycle({"cli": {"bench"}, "bench": {"train"}, "train": set()}) is None
    table = (
        f"{MARKER}\n| layer | modules | holds |\n|---|---|---|\n"
        "| 1 a | `x`, `y` | . |\n| 2 b | `z` | . |\n\nmore"
    )
    assert declared_order(table) == [["x", "y"], ["z"]]
    # Function-level imports and the `from dqn import x` form are imports too.
    source = tmp_path / "example.py"
    source.write_text("from dqn import h5io\n\ndef f():\n    from dqn.plots import table1\n")
    assert imports_of(source) == {"h5io", "plots"}
