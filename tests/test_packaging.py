"""Packaging and architecture rules: every package is listed, imports go one way, the core stays light."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"mimicdata_schemas": 0, "mimicdata": 1, "mimicdata_trainers": 2, "mimicdata_cli": 3}
FOLDERS = {"schemas": "mimicdata_schemas", "mimicdata": "mimicdata", "trainers": "mimicdata_trainers",
           "cli": "mimicdata_cli"}


@functools.cache
def _tree(path: Path) -> ast.Module:
    """Each source file parsed once for all the checks below."""
    return ast.parse(path.read_text())


def _config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed() -> None:
    listed = set(_config()["tool"]["setuptools"]["packages"])
    for folder, name in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            package = ".".join([name, *rel.parts])
            assert package in listed, f"{package} ({init.parent}) is missing from [tool.setuptools] packages"


def test_imports_go_one_way() -> None:
    """schemas <- mimicdata <- trainers <- cli: nothing imports a layer above its own."""
    offenders = []
    for folder, name in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(_tree(path)):
                targets = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
                for target in targets:
                    top = target.split(".")[0]
                    if top in LAYERS and LAYERS[top] > LAYERS[name]:
                        offenders.append(f"{path.relative_to(REPO)} imports {target}")
    assert offenders == []


def test_package_code_never_reads_shared() -> None:
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            assert "../shared" not in text and "/work/shared" not in text, path


def test_core_import_is_light() -> None:
    code = ("import sys, mimicdata, mimicdata.arrow, mimicdata.report; "
            "heavy = [m for m in ('torch', 'jax', 'mujoco', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_heavy_dependencies_are_extras_and_torch_is_pinned() -> None:
    project = _config()["project"]
    core = " ".join(project["dependencies"])
    for heavy in ("torch", "jax", "mujoco"):
        assert heavy not in core
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["train"])
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in constraints and any(line.startswith("jax==0.9") for line in constraints)


# builtin exceptions that library code raises as a MimicDataError subclass instead (mimicdata.errors)
_BARE = {"ValueError", "IndexError", "KeyError", "TypeError", "RuntimeError", "OSError", "FileNotFoundError"}
# buffer_from_store moves onto the new data path elsewhere; its four bare ValueErrors go with it
_BARE_ALLOWED = {("trainers/snapshot.py", "buffer_from_store"), ("trainers/__init__.py", "__getattr__")}


def test_trainers_raise_the_one_error_tree() -> None:
    """Trainer errors are MimicDataError subclasses (still the builtin), so the CLI needs no wrapper of its own."""
    offenders = []
    for path in sorted((REPO / "trainers").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for func in [n for n in ast.walk(_tree(path)) if isinstance(n, ast.FunctionDef)]:
            if (rel, func.name) in _BARE_ALLOWED:
                continue
            for node in ast.walk(func):
                exc = node.exc if isinstance(node, ast.Raise) else None
                name = exc.func.id if isinstance(exc, ast.Call) and isinstance(exc.func, ast.Name) else None
                if name in _BARE:
                    offenders.append(f"{rel}:{node.lineno} {func.name} raises {name}")
    assert offenders == []


def _unit(module: str) -> str:
    """mimicdata.motion.bvh -> mimicdata.motion: cycles are looked for between subpackages and core modules."""
    return ".".join(module.split(".")[:2])


def _mimicdata_import_graph() -> dict[str, set[str]]:
    """Edges between mimicdata's subpackages / top-level modules, lazy (in-function) imports included,
    ``if TYPE_CHECKING:`` imports not."""
    edges: dict[str, set[str]] = {}
    for path in (REPO / "mimicdata").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        tree = _tree(path)
        guards = [node for node in ast.walk(tree)
                  if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
        typing_only = {id(n) for guard in guards for n in ast.walk(guard)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: no import at run time, so no cycle
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                targets = [".".join([*base, *([node.module] if node.module else [])])]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            else:
                continue
            for target in targets:
                if target.startswith("mimicdata.") and _unit(target) != _unit(module):
                    edges.setdefault(_unit(module), set()).add(_unit(target))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found




def test_no_import_cycles_between_mimicdata_packages() -> None:
    """e.g. motion <-> retarget: robot kinematics live in motion, retargeting builds on it, not the reverse."""
    graph = _mimicdata_import_graph()
    assert "mimicdata.retarget" not in graph.get("mimicdata.motion", set())
    assert _cycles(graph) == []


CORE = ("_version", "errors", "schema", "storage", "codecs", "chunkwrite", "pushdown", "migrate", "stream",
        "store", "arrow", "query")


def _runtime_imports(path: Path) -> set[str]:
    """mimicdata modules a file imports when run (function-level imports included, TYPE_CHECKING not)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mimicdata")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("mimicdata"):
            out.add(node.module or "")
            if node.module == "mimicdata":  # `from mimicdata import x` may name a submodule
                out |= {f"mimicdata.{a.name}" for a in node.names}
    return out


def test_format_core_has_no_import_cycle() -> None:
    """store, stream, arrow, migrate (and the modules under them) import in one direction: a version
    string in a leaf module, Stream -> Arrow conversion apart from the URL-level scan/sql."""
    graph = {m: {t.split(".")[1] for t in _runtime_imports(REPO / "mimicdata" / f"{m}.py")
                 if t.count(".") == 1 and t.split(".")[1] in CORE}
             for m in CORE}
    package_users = [m for m in CORE if "mimicdata" in _runtime_imports(REPO / "mimicdata" / f"{m}.py")]
    assert package_users == [], f"core modules import the package itself (a cycle through __init__): {package_users}"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in CORE:
        if module not in state:
            visit(module, [])
