"""Packaging and architecture rules: every package is listed, imports go one way, the core stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"mimicdata_schemas": 0, "mimicdata": 1, "mimicdata_trainers": 2, "mimicdata_cli": 3}
FOLDERS = {"schemas": "mimicdata_schemas", "mimicdata": "mimicdata", "trainers": "mimicdata_trainers",
           "cli": "mimicdata_cli"}


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
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
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
