"""The package's structure (docs/architecture.md, "The layers"): which layer may import which, no import cycle
between layers, pure-numpy metrics, and no overlong source file.

Everything is read from the source with ``ast``; nothing of cellsynth is imported. Every import counts,
those inside functions included: a lazy import is a dependency all the same.
"""

from __future__ import annotations

import ast
import functools
import itertools
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cellsynth"
ROOT = "cellsynth"  # the package's own __init__: __version__, the error classes and load()

FOUNDATION = {"errors", "geo"}  # import nothing of cellsynth's
# Which layers each layer may import, down the list of docs/architecture.md. A layer is a top-level module
# or subpackage of cellsynth; every one must be listed here.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "geo": set(),
    "seeds": {"errors"},
    "outputs": {"errors"},
    "data": FOUNDATION | {"outputs", "seeds"},
    "transforms": FOUNDATION | {"outputs", "seeds"},
    "metrics": FOUNDATION,  # and numpy/scipy only: test_metrics_use_numpy_and_scipy_only
    "graphs": FOUNDATION | {"outputs", "seeds", "data"},
    "placement": FOUNDATION,
    "training": FOUNDATION | {"outputs", "seeds", "placement"},
    "nn": FOUNDATION | {"seeds", "transforms", "placement", "training"},
    "diffusion": FOUNDATION | {"seeds", "transforms", "placement", "training"},
}
# metrics: pure numpy scores, so a model may select its own settings by one (STOUTER's level prior, its k by CRPS)
ALLOWED["generators"] = ALLOWED["graphs"] | ALLOWED["nn"] | {"graphs", "nn", "diffusion", "metrics"}
ALLOWED["testing"] = ALLOWED["generators"] | {"generators"}
ALLOWED["generation"] = ALLOWED["generators"] | {"generators"}
ALLOWED["evaluate"] = FOUNDATION | {"outputs", "data", "metrics"}
ALLOWED["report"] = ALLOWED["evaluate"] | {"evaluate"}
ALLOWED["benchmark"] = ALLOWED["generators"] | {"generators", "metrics", "evaluate", "report"}
ALLOWED["demo"] = ALLOWED["benchmark"] | {"benchmark"}
ALLOWED["cli"] = set(ALLOWED) - {"cli"}  # everything above; nothing imports the command line
ALLOWED[ROOT] = {"errors", "generators"}  # cellsynth.load() is cellsynth.generators.load

# In docs/architecture.md's layout but not written yet.
PLANNED: set[str] = set()

THIRD_PARTY_ALLOWED = {"metrics": {"numpy", "scipy"}, "geo": {"numpy"}, "errors": set()}

MAX_LINES = 650
# Files known to be too long, to be split by whoever works in them (generators/ is being edited elsewhere);
# each entry says what it holds. An entry whose file has been split fails test_long_files_list_is_current.
LONG_FILES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    """The layer of a cellsynth module (``cellsynth.data.io`` -> ``data``); the root is :data:`ROOT`."""
    parts = module.split(".")
    if parts[0] != "cellsynth":
        return None
    return ROOT if len(parts) == 1 else parts[1]


@functools.cache
def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {
        _module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(PACKAGE.rglob("*.py"))
    }


def _imported_layers(node: ast.AST) -> set[str]:
    """The layers imported anywhere under ``node`` by an absolute ``cellsynth.<layer>...`` import."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            found |= {_layer(a.name) for a in sub.names if a.name.startswith("cellsynth.")}
        elif (
            isinstance(sub, ast.ImportFrom) and sub.level == 0 and (sub.module or "").startswith("cellsynth.")
        ):
            found.add(_layer(sub.module))
    return found


def _root_names(tree: ast.Module) -> dict[str, set[str]]:
    """What each name defined by cellsynth/__init__.py depends on: an imported name its layer, a function the
    layers imported in its body, a constant (``__version__``) nothing."""
    names: dict[str, set[str]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and statement.level == 0:
            for alias in statement.names:
                names[alias.asname or alias.name] = {_layer(statement.module)} - {None}
        elif isinstance(statement, ast.FunctionDef | ast.ClassDef):
            names[statement.name] = _imported_layers(statement)
        elif isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names.update({t.id: set() for t in targets if isinstance(t, ast.Name)})
    return names


def _dependencies(module: str, path: Path, tree: ast.Module, layers: set[str], root_names) -> list[tuple]:
    """``(layer, site)`` for every import of cellsynth in ``tree``: ``from cellsynth import X`` and
    ``cellsynth.X`` after ``import cellsynth`` resolve X to its layer (a subpackage, or what a root name
    depends on); relative imports are resolved against ``module``."""

    def resolve(name: str, site: str) -> list[tuple[str, str]]:
        if name in layers:
            return [(name, site)]
        if name not in root_names:
            raise AssertionError(
                f"{site}: cellsynth.{name} is neither a layer nor a name of cellsynth/__init__.py"
            )
        return [(layer, site) for layer in root_names[name]]

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str]] = []
    binds_root = False
    for node in ast.walk(tree):
        site = f"{module}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "cellsynth":
                    binds_root = alias.asname is None
                elif alias.name.startswith("cellsynth."):
                    found.append((_layer(alias.name), site))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "cellsynth":
                for alias in node.names:
                    found += resolve(alias.name, site)
            elif target.startswith("cellsynth."):
                found.append((_layer(target), site))
    if binds_root:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "cellsynth"
            ):
                found += resolve(node.attr, f"{module}:{node.lineno}")
    return found


@functools.cache
def _layer_graph() -> dict[tuple[str, str], list[str]]:
    """``{(importing layer, imported layer): [module:line, ...]}`` over the whole package."""
    modules = _modules()
    layers = {_layer(m) for m in modules} - {ROOT}
    root_names = _root_names(modules["cellsynth"][1])
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, (path, tree) in modules.items():
        source = _layer(module)
        for target, site in _dependencies(module, path, tree, layers, root_names):
            if target != source:
                edges[(source, target)].append(site)
    return dict(edges)


def _cycle(edges) -> list[str] | None:
    """A cycle of layers (first layer repeated at the end), or None."""
    successors = defaultdict(set)
    for a, b in edges:
        successors[a].add(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(successors[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(successors):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_layer_has_a_rule():
    layers = {_layer(m) for m in _modules()}
    assert layers - set(ALLOWED) == set(), "new top-level modules: add them to ALLOWED (and architecture.md)"
    assert set(ALLOWED) - layers - PLANNED == set(), "ALLOWED lists layers that no longer exist"


def test_no_import_cycle_between_layers():
    edges = _layer_graph()
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + "; ".join(
        f"{a} -> {b} ({', '.join(edges[(a, b)][:3])})" for a, b in itertools.pairwise(cycle)
    )


def test_imports_point_down_the_layers():
    wrong = {(a, b): sites for (a, b), sites in _layer_graph().items() if b not in ALLOWED[a]}
    assert not wrong, "\n".join(
        f"{a} must not import {b}: {', '.join(sites)}" for (a, b), sites in wrong.items()
    )


def test_nothing_imports_the_command_line():
    assert not [pair for pair in _layer_graph() if pair[1] == "cli"]


@pytest.mark.parametrize("layer", sorted(THIRD_PARTY_ALLOWED))
def test_metrics_use_numpy_and_scipy_only(layer):
    """metrics (and what it builds on) import the standard library, numpy and scipy, nothing else."""
    allowed = THIRD_PARTY_ALLOWED[layer] | set(sys.stdlib_module_names) | {"__future__", "cellsynth"}
    wrong = []
    for module, (_, tree) in _modules().items():
        if _layer(module) != layer:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            wrong += [f"{module}:{node.lineno} imports {n}" for n in names if n.split(".")[0] not in allowed]
    assert not wrong, wrong


def test_source_files_are_short():
    too_long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    unexpected = {path: n for path, n in too_long.items() if path not in LONG_FILES}
    assert not unexpected, f"split these files by concern (at most {MAX_LINES} lines): {unexpected}"


def test_long_files_list_is_current():
    for path in LONG_FILES:
        file = PACKAGE / path
        assert file.exists(), f"{path} is gone: remove it from LONG_FILES"
        n = len(file.read_text(encoding="utf-8").splitlines())
        assert n > MAX_LINES, f"{path} has {n} lines now: remove it from LONG_FILES"


# -- the checks themselves ---------------------------------------------------------------------------------------
def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert _cycle({("a", "b"): [], ("b", "c"): [], ("c", "a"): [], ("c", "d"): []}) == ["a", "b", "c", "a"]
    assert _cycle({("a", "b"): [], ("a", "c"): [], ("b", "c"): []}) is None


def test_imports_are_resolved_inside_functions_relative_and_through_the_root(tmp_path):
    source = """
import cellsynth
from cellsynth import metrics, __version__
from . import sibling
from ..report import html

def later():
    from cellsynth.cli import app
    return cellsynth.load, cellsynth.data
"""
    tree = ast.parse(source)
    root_names = {"__version__": set(), "load": {"generators"}}
    layers = {"metrics", "evaluate", "report", "cli", "data", "generators"}
    found = {
        layer
        for layer, _ in _dependencies("cellsynth.evaluate.x", tmp_path / "x.py", tree, layers, root_names)
    }
    assert found == {"metrics", "evaluate", "report", "cli", "generators", "data"}
