"""The package's architecture, read from its source: no import cycle and the layering the loop relies on.

Every ``.py`` file of ``textdml/`` is parsed with ``ast`` (nothing is imported). Imports inside
functions count: they hide a cycle, they do not break it. Imports under ``if TYPE_CHECKING:``
do not count, since they never run. ``from pkg import name`` is an edge to ``pkg.name`` when that
is a module, else to ``pkg``; the implicit import of parent packages is not an edge.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "textdml"
LOOP = "textdml.training.loop"
LOOP_MUST_NOT_IMPORT = ("textdml.data", "textdml.mining", "textdml.diagnostics", "textdml.hub")
MAX_FIT_LINES = 120
IMAGE_ATTRIBUTES = {"embed_images", "encode_images"}
LOSS_FLAGS = {
    "input_kinds", "accepts_indices", "gathers", "symmetric", "takes_scores", "takes_teacher_scores", "teacher_role",
    "needs_twin", "needs_decoder", "tie_encoder_decoder", "deletion_ratio", "mini_batch_size",
    "accepts_embedding_regularizer",
}


# --- reading the source ---------------------------------------------------------------------------

def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file below ``package`` (a package's is its ``__init__``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: the bodies of ``if TYPE_CHECKING:`` are left out (their ``else`` stays)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and is_type_checking(node.test):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def nearest_module(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or the closest enclosing module that exists (``pkg.mod.Attr`` -> ``pkg.mod``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def absolute_base(node: ast.ImportFrom, module: str, modules: dict[str, Path]) -> str:
    """The module a ``from ... import`` reads from, with relative levels resolved."""
    if not node.level:
        return node.module or ""
    package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``module`` imports at run time, at any depth of its code."""
    tree = ast.parse(modules[module].read_text(encoding="utf-8"))
    found = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(nearest_module(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(node, module, modules)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else nearest_module(base, modules))
    found.discard(None)
    found.discard(module)
    return found  # type: ignore[return-value]


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_files(package)
    return {module: imports_of(module, modules) for module in modules}


@functools.cache
def textdml_graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


# --- cycles ------------------------------------------------------------------------------------------

def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of ``graph`` (plain Python: the test needs no graph library)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_through(start: str, members: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest import path from ``start`` back to itself inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is on no cycle of {sorted(members)}")


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle path per strongly connected component of more than one module."""
    return [cycle_through(component[0], set(component), graph)
            for component in strongly_connected(graph) if len(component) > 1]


# --- attribute tests and function sizes --------------------------------------------------------------

def attribute_tests(path: Path, names: set[str], root: Path = PACKAGE.parent) -> list[str]:
    """``file:line`` of every ``hasattr(x, "name")`` / ``getattr(x, "name", ...)`` with ``name`` in ``names``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in names):
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return sorted(found, key=lambda hit: int(hit.split(":")[1].split()[0]))


def names_a_loss(node: ast.expr) -> bool:
    """``loss``, ``x.loss``, ``loss_cls`` or ``type(loss)``: an expression that is a loss or its class."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type" and node.args:
        return names_a_loss(node.args[0])
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name in ("loss", "loss_cls", "loss_class")


def loss_flag_reads(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``file:line`` of every plain read of an old loss flag on a loss (``self.loss.symmetric``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [f"{path.relative_to(root)}:{node.lineno} .{node.attr}" for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr in LOSS_FLAGS and names_a_loss(node.value)]
    return sorted(found, key=lambda hit: int(hit.split(":")[1].split()[0]))


def files_under(*parts: str, skip: tuple[str, ...] = ()) -> list[Path]:
    """The ``.py`` files of ``textdml/<part>`` (a folder or a file), less those under ``skip``."""
    files = []
    for part in parts:
        target = PACKAGE / part
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return [f for f in files if not any(f.is_relative_to(PACKAGE / s) for s in skip)]


def function_lines(path: Path, name: str) -> int | None:
    """The length in lines of the module-level function ``name`` of ``path`` (None: there is none)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node.end_lineno - node.lineno + 1  # type: ignore[operator]
    return None


# --- textdml ---------------------------------------------------------------------------------------

def test_no_import_cycle():
    cycles = import_cycles(textdml_graph())
    assert not cycles, (
        f"{len(cycles)} import cycle(s) in textdml/ (imports inside functions count; move what both sides need "
        "into a module of its own, or register it by name):\n" + "\n".join("  " + " -> ".join(c) for c in cycles))


def test_the_loop_imports_no_data_mining_diagnostics_or_hub_module():
    imported = textdml_graph()[LOOP]
    forbidden = sorted(m for m in imported if any(m == p or m.startswith(p + ".") for p in LOOP_MUST_NOT_IMPORT))
    assert not forbidden, (
        f"{LOOP} must import no module of {', '.join(LOOP_MUST_NOT_IMPORT)} (data assembly belongs to "
        f"data/pipeline, the rest to callbacks that train() registers); it imports: {', '.join(forbidden)}")


def test_text_or_image_text_is_decided_in_models_only():
    found = [hit for path in files_under(".", skip=("models",)) for hit in attribute_tests(path, IMAGE_ATTRIBUTES)]
    assert not found, (
        "text vs image-text is decided by textdml.models.saving.model_kind(model), not by attribute tests outside "
        "textdml/models/:\n" + "\n".join("  " + hit for hit in found))


def test_no_loss_flag_is_read_outside_the_tasks():
    files = files_under("training", "diagnostics", "distributed.py", skip=("training/tasks",))
    found = [hit for path in files for hit in attribute_tests(path, LOSS_FLAGS) + loss_flag_reads(path)]
    assert not found, (
        "what a loss needs is read from its LossNeeds by textdml/training/tasks/ (and data/pipeline), not by "
        "getattr/hasattr of a loss flag:\n" + "\n".join("  " + hit for hit in found))


def test_fit_is_short():
    loop = PACKAGE / "training" / "loop.py"
    lines = function_lines(loop, "fit")
    assert lines is not None, f"{loop.relative_to(PACKAGE.parent)} has no module-level fit(parts, accelerator, callbacks)"
    assert lines <= MAX_FIT_LINES, f"fit in {loop.relative_to(PACKAGE.parent)} is {lines} lines (at most {MAX_FIT_LINES})"


# --- the checks themselves, on a package written for the test ---------------------------------------

def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "fakepkg"


@pytest.fixture
def fake_package(tmp_path: Path) -> Path:
    return write_package(tmp_path, {
        "fakepkg/__init__.py": "",
        "fakepkg/a.py": "from fakepkg import b\nfrom fakepkg.typed import Thing\n",
        # A function-level, relative import still closes the cycle a -> b -> a.
        "fakepkg/b.py": "def late():\n    from . import a\n",
        # Under TYPE_CHECKING: never runs, so typed -> a is no edge; its else branch does run.
        "fakepkg/typed.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg.a import x\n"
                             "else:\n    import fakepkg.leaf\nThing = 1\n"),
        "fakepkg/leaf.py": "import os\n",
        "fakepkg/sub/__init__.py": "",
        "fakepkg/sub/deep.py": "from ..leaf import name\nfrom fakepkg.sub import other\nimport fakepkg.typed\n",
        "fakepkg/sub/other.py": "",
    })


def test_graph_resolves_submodules_relative_imports_and_type_checking(fake_package: Path):
    graph = import_graph(fake_package)
    assert graph["fakepkg.a"] == {"fakepkg.b", "fakepkg.typed"}  # ``from fakepkg.typed import Thing``: the module
    assert graph["fakepkg.b"] == {"fakepkg.a"}
    assert graph["fakepkg.typed"] == {"fakepkg.leaf"}  # not fakepkg.a
    assert graph["fakepkg.leaf"] == set()
    # A submodule import is an edge to the submodule, not to its (implicitly imported) parent package.
    assert graph["fakepkg.sub.deep"] == {"fakepkg.leaf", "fakepkg.sub.other", "fakepkg.typed"}


def test_cycle_check_names_the_cycle(fake_package: Path):
    graph = import_graph(fake_package)
    assert import_cycles(graph) == [["fakepkg.a", "fakepkg.b", "fakepkg.a"]]
    graph["fakepkg.b"] = set()
    assert import_cycles(graph) == []


def test_cycle_path_goes_round_a_longer_cycle():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c", "p.x"}, "p.c": {"p.a"}, "p.x": set(), "p.y": {"p.y"}}
    assert import_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]


def test_attribute_and_length_checks_find_their_cases(tmp_path: Path):
    package = write_package(tmp_path, {"fakepkg/m.py": (
        "def fit(model, loss):\n"
        "    if hasattr(model, 'embed_images'):\n"
        "        return getattr(loss, 'gathers', False)\n"
        "    if self.loss.symmetric or type(loss).input_kinds or loss.needs.symmetric:\n"
        "        return plan.mini_batch_size\n"
        "    return getattr(loss, 'other', None)\n")})
    path = package / "m.py"
    assert attribute_tests(path, IMAGE_ATTRIBUTES, tmp_path) == ["fakepkg/m.py:2 hasattr(..., 'embed_images')"]
    assert attribute_tests(path, LOSS_FLAGS, tmp_path) == ["fakepkg/m.py:3 getattr(..., 'gathers')"]
    assert loss_flag_reads(path, tmp_path) == ["fakepkg/m.py:4 .symmetric", "fakepkg/m.py:4 .input_kinds"]
    assert function_lines(path, "fit") == 6
    assert function_lines(path, "train") is None
